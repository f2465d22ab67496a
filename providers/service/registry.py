"""The provider registry: registering providers (承接主体) and reading them as each viewer may see them.

No minimum founding age is asked for (policy: 不再就成立年限做硬性规定). Approved providers are
public; pending, suspended and revoked ones are seen by admins, auditors and their own staff. The
public never sees a provider's contact person or phone.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, literal, or_, select
from sqlalchemy.exc import IntegrityError

from marketplace import audit, scope
from marketplace.auth import service as auth_service
from marketplace.catalogue import service as catalogue
from marketplace.db import db, paginate
from marketplace.errors import DomainError, Forbidden, NotFound, ValidationFailed
from marketplace.regions import common_region, covers, is_region_code, region_prefix
from providers.creditcode import InvalidCreditCodeError, parse_credit_code
from providers.models import Provider, ProviderItem, ProviderRegion, ProviderStatusChange
from providers.service.ratings import RatingSummary, rating_summaries


class InvalidCreditCode(DomainError):
    status, code, message = 422, "invalid_credit_code", "The unified social credit code is not valid."


class DuplicateProvider(DomainError):
    status, code, message = 409, "duplicate_provider", "A provider with this credit code is registered."


@dataclass(frozen=True)
class ProviderProfile:
    """A provider as one viewer sees it: its row, its rating summary, and whether its contacts show."""

    provider: Provider
    rating: RatingSummary
    contacts_visible: bool


def profiles(providers: list[Provider], actor) -> list[ProviderProfile]:
    """The providers as *actor* sees them: anonymous viewers get no contact person or phone."""
    summaries = rating_summaries([provider.id for provider in providers])
    return [ProviderProfile(provider=provider, rating=summaries[provider.id], contacts_visible=actor is not None)
            for provider in providers]


def register_provider(*, name: str, kind: str, credit_code: str, legal_representative: str, phone: str,
                      address: str, region_codes: list[str], item_codes: list[str], capacity: int,
                      account: dict | None, actor, now: datetime) -> ProviderProfile:
    """Register a provider as `pending`; self-registration (no actor) also creates its first login.

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
    scope.require_any(actor, region_codes, "The provider")
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
    record_status(provider, None, "pending", "registered", actor, now)
    if account:
        auth_service.create_user(username=account["username"], password=account["password"], role="provider",
                                 provider_id=provider.id, actor=actor, now=now, scope_checked=True,
                                 home_region=common_region(region_codes))
    audit.record(action="provider.registered", entity="provider", entity_id=provider.id, actor=actor, now=now,
                 region_code=common_region(region_codes),
                 data={"name": name, "kind": kind, "credit_code": parsed.code, "region_codes": region_codes,
                       "item_codes": item_codes, "self_registered": actor is None})
    # The registrant has just typed the contacts in: they see them back, logged in or not.
    return ProviderProfile(provider=provider, rating=rating_summaries([provider.id])[provider.id],
                           contacts_visible=True)


def record_status(provider: Provider, from_status: str | None, to_status: str, reason: str, actor,
                  now: datetime) -> None:
    """Add a row to the provider's history of qualification decisions."""
    db.session.add(ProviderStatusChange(provider_id=provider.id, from_status=from_status, to_status=to_status,
                                        reason=reason, actor_id=getattr(actor, "id", None), at=now))


def can_see(actor, provider: Provider) -> bool:
    """Approved providers are public; others only for admins, auditors and the provider's own staff."""
    if provider.status == "approved":
        return True
    if actor is None:
        return False
    return actor.role in ("admin", "auditor") or (actor.role == "provider" and actor.provider_id == provider.id)


def find_provider(provider_id: int, *, actor) -> Provider:
    """The provider row, if *actor* may see it.

    :raises NotFound: no such provider, or not visible.
    :raises Forbidden: a provider that is not public and serves no part of a region-limited admin's region.
    """
    provider = db.session.get(Provider, provider_id)
    if provider is None or not can_see(actor, provider):
        raise NotFound("No such provider.")
    if provider.status != "approved":
        scope.require_any(actor, provider.region_codes, "The provider")
    return provider


def get_provider(provider_id: int, *, actor) -> ProviderProfile:
    """The provider as *actor* may see it. :raises NotFound: no such provider, or not visible to the actor."""
    return profiles([find_provider(provider_id, actor=actor)], actor)[0]


def serves(provider: Provider, region_code: str) -> bool:
    """Whether one of the provider's regions covers *region_code*."""
    return any(covers(code, region_code) for code in provider.region_codes)


def serves_region(region_code: str):
    """SQL condition: the provider serves *region_code* (one of its regions covers it)."""
    return Provider.region_rows.any(literal(region_code).startswith(ProviderRegion.prefix))


def list_providers(*, actor, page: int, per_page: int, status: str | None = None, kind: str | None = None,
                   item_code: str | None = None, region_code: str | None = None) -> dict:
    """Approved providers for the public; every provider, filterable by status, for admins and auditors."""
    statement = select(Provider).order_by(Provider.id)
    if actor is None or actor.role not in ("admin", "auditor"):
        statement = statement.where(Provider.status == "approved")
    else:
        if status is not None:
            statement = statement.where(Provider.status == status)
        if scope.is_limited(actor):  # approved providers are public; the others only in the admin's region
            in_region = Provider.region_rows.any(scope.overlaps_within(actor, ProviderRegion.prefix))
            statement = statement.where(or_(Provider.status == "approved", in_region))
    if kind is not None:
        statement = statement.where(Provider.kind == kind)
    if item_code is not None:
        statement = statement.where(exists().where(ProviderItem.provider_id == Provider.id,
                                                   ProviderItem.item_code == item_code))
    if region_code is not None:
        statement = statement.where(serves_region(region_code))
    page_ = paginate(statement, page=page, per_page=per_page)
    return {**page_, "items": profiles(page_["items"], actor)}


def status_history(*, provider_id: int, actor) -> list[ProviderStatusChange]:
    """Every qualification decision about the provider, oldest first (its own staff, admins, auditors).

    :raises NotFound: no such provider, or another provider's staff asking.
    """
    provider = find_own_provider(provider_id, actor=actor)
    return db.session.scalars(select(ProviderStatusChange).where(ProviderStatusChange.provider_id == provider.id)
                              .order_by(ProviderStatusChange.id)).all()


def find_own_provider(provider_id: int, *, actor) -> Provider:
    """The provider row for its own staff, admins (in scope, whatever its status) and auditors.

    :raises NotFound: no such provider, not visible, or another provider's staff asking.
    :raises Forbidden: the provider serves no part of a region-limited admin's region.
    """
    if actor.role == "provider" and actor.provider_id != provider_id:
        raise NotFound("No such provider.")
    provider = find_provider(provider_id, actor=actor)
    scope.require_any(actor, provider.region_codes, "The provider")
    return provider
