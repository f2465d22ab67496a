"""Providers: registration, qualification (资质) decisions, programme enrolment, what each role sees."""

from datetime import datetime

from sqlalchemy import exists, literal, select
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.auth import service as auth_service
from marketplace.catalogue import service as catalogue
from marketplace.db import db, paginate
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound, ValidationFailed
from marketplace.programmes.models import Programme
from marketplace.programmes.service import ProgrammeClosed
from marketplace.regions import covers, is_region_code, region_prefix
from providers.creditcode import InvalidCreditCodeError, parse_credit_code
from providers.models import Enrolment, Provider, ProviderItem, ProviderRegion, ProviderStatusChange

# Qualification decisions: action → (statuses it applies to, resulting status, what the audit calls it).
TRANSITIONS = {
    "approve": ({"pending"}, "approved", "provider.approved"),
    "suspend": ({"approved"}, "suspended", "provider.suspended"),
    "reinstate": ({"suspended"}, "approved", "provider.reinstated"),
    "revoke": ({"pending", "approved", "suspended"}, "revoked", "provider.revoked"),
}


class InvalidCreditCode(DomainError):
    status, code, message = 422, "invalid_credit_code", "The unified social credit code is not valid."


class DuplicateProvider(DomainError):
    status, code, message = 409, "duplicate_provider", "A provider with this credit code is registered."


class ProviderNotApproved(DomainError):
    status, code, message = 409, "provider_not_approved", "Only an approved provider may do this."


class NoMatchingItems(DomainError):
    status, code, message = 422, "no_matching_items", "The provider offers none of the programme's items."


class NoMatchingRegions(DomainError):
    status, code, message = 422, "no_matching_regions", "The provider serves no region inside the programme's region."


class AlreadyEnrolled(DomainError):
    status, code, message = 409, "already_enrolled", "The provider is already enrolled in this programme."


def register_provider(*, name: str, kind: str, credit_code: str, legal_representative: str, phone: str,
                      address: str, region_codes: list[str], item_codes: list[str], capacity: int,
                      account: dict | None, actor, now: datetime) -> Provider:
    """Register a provider as `pending`; self-registration (no actor) also creates its first login.

    No minimum founding age is asked for (policy: 不再就成立年限做硬性规定).

    :raises InvalidCreditCode: the code fails GB 32100 (details.part says which part).
    :raises ValidationFailed: unknown regions or items, or a self-registration without an account.
    :raises Forbidden: a logged-in non-admin, or a scoped admin registering a provider outside their region.
    :raises DuplicateProvider: the credit code is registered already.
    """
    if actor is not None and actor.role != "admin":
        raise Forbidden("Providers register themselves without logging in, or are registered by an admin.")
    try:
        parsed = parse_credit_code(credit_code)
    except InvalidCreditCodeError as error:
        raise InvalidCreditCode(error.message, part=error.part, fields={"credit_code": [error.message]}) from error
    problems = {}
    region_codes = sorted(set(region_codes))
    bad_regions = [code for code in region_codes if not is_region_code(code)]
    if bad_regions:
        problems["region_codes"] = f"Not GB/T 2260 region codes: {', '.join(bad_regions)}."
    item_codes = sorted(set(item_codes))
    missing = [code for code in item_codes if code not in catalogue.items_by_code(item_codes)]
    if missing:
        problems["item_codes"] = f"Not catalogue services: {', '.join(missing)}."
    if actor is None and not account:
        problems["account"] = "Self-registration creates the provider's first login: give a username and password."
    if problems:
        raise ValidationFailed(problems)
    if actor is not None and actor.region_code is not None and not any(
            covers(actor.region_code, code) or covers(code, actor.region_code) for code in region_codes):
        raise Forbidden("The provider serves no region inside your scope.")
    if db.session.scalar(select(Provider.id).where(Provider.credit_code == parsed.code)) is not None:
        raise DuplicateProvider()

    provider = Provider(
        name=name, kind=kind, credit_code=parsed.code, legal_representative=legal_representative, phone=phone,
        address=address, capacity=capacity, status="pending", created_at=now, status_changed_at=now,
        region_rows=[ProviderRegion(region_code=code, prefix=region_prefix(code)) for code in region_codes],
        item_rows=[ProviderItem(item_code=code) for code in item_codes],
    )
    try:
        with db.session.begin_nested():
            db.session.add(provider)
    except IntegrityError as error:
        raise DuplicateProvider() from error
    _record_status(provider, None, "pending", "registered", actor, now)
    if account:
        auth_service.create_user(username=account["username"], password=account["password"], role="provider",
                                 provider_id=provider.id, actor=actor, now=now, scope_checked=True)
    audit.record(action="provider.registered", entity="provider", entity_id=provider.id, actor=actor, now=now,
                 data={"name": name, "kind": kind, "credit_code": parsed.code, "region_codes": region_codes,
                       "item_codes": item_codes, "self_registered": actor is None})
    return provider


def _record_status(provider: Provider, from_status: str | None, to_status: str, reason: str, actor,
                   now: datetime) -> None:
    db.session.add(ProviderStatusChange(provider_id=provider.id, from_status=from_status, to_status=to_status,
                                        reason=reason, actor_id=getattr(actor, "id", None), at=now))


def check_admin_scope(actor, provider: Provider) -> None:
    """:raises Forbidden: a scoped admin acting on a provider serving no part of their region.

    A provider serving the whole city (510100) serves the county admin's 510131 too.
    """
    if actor.region_code is not None and not any(
            covers(actor.region_code, code) or covers(code, actor.region_code) for code in provider.region_codes):
        raise Forbidden("The provider serves no region inside your scope.")


def change_status(*, provider: Provider, action: str, reason: str, actor, now: datetime) -> Provider:
    """Approve, suspend, reinstate or revoke a provider, with a reason.

    :raises InvalidTransition: the action does not apply to the provider's current status.
    """
    allowed_from, to_status, audit_action = TRANSITIONS[action]
    check_admin_scope(actor, provider)
    if provider.status not in allowed_from:
        raise InvalidTransition(f"Cannot {action} a provider that is {provider.status}.",
                                status=provider.status, action=action)
    from_status = provider.status
    provider.status, provider.status_reason, provider.status_changed_at = to_status, reason, now
    _record_status(provider, from_status, to_status, reason, actor, now)
    db.session.flush()
    audit.record(action=audit_action, entity="provider", entity_id=provider.id, actor=actor, now=now,
                 data={"from": from_status, "to": to_status, "reason": reason})
    return provider


def get_provider(provider_id: int, *, actor) -> Provider:
    """The provider as *actor* may see it: approved ones for everyone, any for admins and its own staff.

    :raises NotFound: no such provider, or not visible to the actor.
    """
    provider = db.session.get(Provider, provider_id)
    if provider is None or not can_see(actor, provider):
        raise NotFound("No such provider.")
    return provider


def can_see(actor, provider: Provider) -> bool:
    if provider.status == "approved":
        return True
    if actor is None:
        return False
    return actor.role in ("admin", "auditor") or (actor.role == "provider" and actor.provider_id == provider.id)


def serves_region(region_code: str):
    """SQL condition: the provider serves *region_code* (one of its regions covers it)."""
    return Provider.region_rows.any(literal(region_code).startswith(ProviderRegion.prefix))


def list_providers(*, actor, page: int, per_page: int, status: str | None = None, kind: str | None = None,
                   item_code: str | None = None, region_code: str | None = None) -> dict:
    """Approved providers for the public; every provider, filterable by status, for admins and auditors."""
    statement = select(Provider).order_by(Provider.id)
    if actor is None or actor.role not in ("admin", "auditor"):
        statement = statement.where(Provider.status == "approved")
    elif status is not None:
        statement = statement.where(Provider.status == status)
    if kind is not None:
        statement = statement.where(Provider.kind == kind)
    if item_code is not None:
        statement = statement.where(exists().where(ProviderItem.provider_id == Provider.id,
                                                   ProviderItem.item_code == item_code))
    if region_code is not None:
        statement = statement.where(serves_region(region_code))
    return paginate(statement, page=page, per_page=per_page)


def status_history(provider: Provider) -> list[ProviderStatusChange]:
    return db.session.scalars(select(ProviderStatusChange).where(ProviderStatusChange.provider_id == provider.id)
                              .order_by(ProviderStatusChange.id)).all()


def enrol(*, programme: Programme, provider: Provider, actor, now: datetime) -> Enrolment:
    """Admit an approved provider to a programme whose items and region it serves.

    :raises ProgrammeClosed: the programme is closed.
    :raises ProviderNotApproved: the provider is pending, suspended or revoked.
    :raises NoMatchingItems: it offers none of the programme's items.
    :raises NoMatchingRegions: it serves no region inside the programme's region.
    :raises AlreadyEnrolled: it is enrolled already.
    """
    if programme.status == "closed":
        raise ProgrammeClosed()
    if provider.status != "approved":
        raise ProviderNotApproved(status=provider.status)
    programme_items = {item.item_code for item in programme.items}
    if not programme_items & set(provider.item_codes):
        raise NoMatchingItems(programme_items=sorted(programme_items), provider_items=provider.item_codes)
    if not any(covers(programme.region_code, code) or covers(code, programme.region_code)
               for code in provider.region_codes):
        raise NoMatchingRegions(programme_region=programme.region_code, provider_regions=provider.region_codes)
    if db.session.scalar(select(Enrolment.id).where(Enrolment.programme_id == programme.id,
                                                    Enrolment.provider_id == provider.id)) is not None:
        raise AlreadyEnrolled()
    enrolment = Enrolment(programme_id=programme.id, provider_id=provider.id, enrolled_at=now,
                          enrolled_by=getattr(actor, "id", None))
    try:
        with db.session.begin_nested():
            db.session.add(enrolment)
    except IntegrityError as error:
        raise AlreadyEnrolled() from error
    audit.record(action="programme.provider_enrolled", entity="programme", entity_id=programme.id, actor=actor,
                 now=now, data={"provider_id": provider.id, "enrolment_id": enrolment.id})
    return enrolment


def programme_providers(*, programme: Programme, actor) -> list[Provider]:
    """Providers enrolled in a programme (approved ones only, except for admins and auditors)."""
    statement = (select(Provider).join(Enrolment, Enrolment.provider_id == Provider.id)
                 .where(Enrolment.programme_id == programme.id).order_by(Provider.id))
    if actor is None or actor.role not in ("admin", "auditor"):
        statement = statement.where(Provider.status == "approved")
    return db.session.scalars(statement).all()


def enrolments_of(provider: Provider) -> list[Enrolment]:
    return db.session.scalars(select(Enrolment).where(Enrolment.provider_id == provider.id)
                              .order_by(Enrolment.id)).all()
