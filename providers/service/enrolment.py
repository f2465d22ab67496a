"""Enrolment: admitting an approved provider to a programme whose items and region it serves."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.db import db
from marketplace.errors import DomainError
from marketplace.programmes.models import Programme
from marketplace.programmes.service import ProgrammeClosed
from marketplace.regions import overlap
from providers.models import Enrolment, Provider
from providers.service.registry import ProviderProfile, find_own_provider, find_provider, profiles


class ProviderNotApproved(DomainError):
    status, code, message = 409, "provider_not_approved", "Only an approved provider may do this."


class NoMatchingItems(DomainError):
    status, code, message = 422, "no_matching_items", "The provider offers none of the programme's items."


class NoMatchingRegions(DomainError):
    status, code, message = 422, "no_matching_regions", "The provider serves no region inside the programme's region."


class AlreadyEnrolled(DomainError):
    status, code, message = 409, "already_enrolled", "The provider is already enrolled in this programme."


def enrol(*, programme: Programme, provider_id: int, actor, now: datetime) -> Enrolment:
    """Admit an approved provider to a programme whose items and region it serves.

    :raises NotFound: no such provider.
    :raises ProgrammeClosed: the programme is closed.
    :raises ProviderNotApproved: the provider is pending, suspended or revoked.
    :raises NoMatchingItems: it offers none of the programme's items.
    :raises NoMatchingRegions: it serves no region inside the programme's region.
    :raises AlreadyEnrolled: it is enrolled already.
    """
    provider = find_provider(provider_id, actor=actor)
    if programme.status == "closed":
        raise ProgrammeClosed()
    require_eligible(programme, provider)
    enrolment = Enrolment(programme_id=programme.id, provider_id=provider.id, enrolled_at=now,
                          enrolled_by=getattr(actor, "id", None))
    try:
        with db.session.begin_nested():
            db.session.add(enrolment)
    except IntegrityError as error:
        raise AlreadyEnrolled() from error
    audit.record(action="programme.provider_enrolled", entity="programme", entity_id=programme.id, actor=actor,
                 region_code=programme.region_code,
                 now=now, data={"provider_id": provider.id, "enrolment_id": enrolment.id})
    return enrolment


def require_eligible(programme: Programme, provider: Provider) -> None:
    """What a provider needs to join a programme (enrol, and an application to join, ask it alike).

    :raises ProviderNotApproved, NoMatchingItems, NoMatchingRegions, AlreadyEnrolled.
    """
    if provider.status != "approved":
        raise ProviderNotApproved(status=provider.status)
    programme_items = {item.item_code for item in programme.items}
    if not programme_items & set(provider.item_codes):
        raise NoMatchingItems(programme_items=sorted(programme_items), provider_items=provider.item_codes)
    if not any(overlap(programme.region_code, code) for code in provider.region_codes):
        raise NoMatchingRegions(programme_region=programme.region_code, provider_regions=provider.region_codes)
    if is_enrolled(programme_id=programme.id, provider_id=provider.id):
        raise AlreadyEnrolled()


def is_enrolled(*, programme_id: int, provider_id: int) -> bool:
    return db.session.scalar(select(Enrolment.id).where(Enrolment.programme_id == programme_id,
                                                        Enrolment.provider_id == provider_id)) is not None


def programme_providers(*, programme: Programme, actor) -> list[ProviderProfile]:
    """Providers enrolled in a programme (approved ones only, except for admins and auditors)."""
    statement = (select(Provider).join(Enrolment, Enrolment.provider_id == Provider.id)
                 .where(Enrolment.programme_id == programme.id).order_by(Provider.id))
    if actor is None or actor.role not in ("admin", "auditor"):
        statement = statement.where(Provider.status == "approved")
    return profiles(db.session.scalars(statement).all(), actor)


def enrolments_of(*, provider_id: int, actor) -> list[Enrolment]:
    """The programmes the provider is enrolled in (its own staff, admins and auditors).

    :raises NotFound: no such provider, or another provider's staff asking.
    """
    provider = find_own_provider(provider_id, actor=actor)
    return db.session.scalars(select(Enrolment).where(Enrolment.provider_id == provider.id)
                              .order_by(Enrolment.id)).all()
