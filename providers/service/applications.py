"""Applications to join a programme (申请加入项目): a provider's manager asks, an admin accepts or refuses.

An application is `pending` until an admin in the programme's region decides it, with a reason when
refused. Accepting it enrols the provider through `enrolment.enrol`, in the same transaction, so an
accepted application always has its enrolment and every rule of enrolment holds. At most one
application per programme and provider is pending (a partial unique index keeps it so under races);
decisions are guarded status changes (marketplace.transitions), so of two racing decisions one wins.
An application is a thing of its programme: admins see and decide those of programmes in their region.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from marketplace import audit, transitions
from marketplace.auth.access import require_provider_manager
from marketplace.catalogue import service as catalogue
from marketplace.db import db, paginate
from marketplace.errors import DomainError, NotFound
from marketplace.programmes.models import Programme
from marketplace.programmes.service import ProgrammeNotActive, get_programme, of_programmes_in_scope
from marketplace.regions import overlap
from providers.models import Enrolment, ProgrammeApplication, Provider
from providers.service import enrolment


class ApplicationPending(DomainError):
    status, code = 409, "application_pending"
    message = "The provider has applied to this programme already; the bureau has not decided yet."


def _require_eligible(programme: Programme, provider: Provider) -> None:
    """What enrolment will ask, asked before the bureau is troubled with the application (and only of an
    active programme: a draft one takes no applications yet).

    :raises ProgrammeNotActive, ProviderNotApproved, NoMatchingItems, NoMatchingRegions, AlreadyEnrolled.
    """
    if programme.status != "active":
        raise ProgrammeNotActive(status=programme.status)
    enrolment.require_eligible(programme, provider)


def apply(*, programme_id: int, note: str | None, actor, now: datetime) -> ProgrammeApplication:
    """Ask, as a provider's manager, for the provider to join an active programme it could serve.

    :raises Forbidden: not a provider's manager.
    :raises NotFound: no such programme.
    :raises ProgrammeNotActive: the programme is a draft or closed.
    :raises ProviderNotApproved: the provider is pending, suspended or revoked.
    :raises NoMatchingItems: it offers none of the programme's items.
    :raises NoMatchingRegions: it serves no region inside the programme's region.
    :raises AlreadyEnrolled: it is enrolled already.
    :raises ApplicationPending: an application of it to this programme awaits a decision.
    """
    require_provider_manager(actor, actor.provider_id)
    programme = db.session.get(Programme, programme_id)
    if programme is None:
        raise NotFound("No such programme.")
    provider = db.session.get(Provider, actor.provider_id)
    _require_eligible(programme, provider)
    application = ProgrammeApplication(programme_id=programme.id, provider_id=provider.id, note=note or None,
                                       status="pending", created_at=now, created_by=actor.id)
    try:
        with db.session.begin_nested():
            db.session.add(application)
    except IntegrityError as error:  # the partial unique index: one pending application (a racing one won)
        raise ApplicationPending() from error
    audit.record(action="programme_application.created", entity="programme_application", entity_id=application.id,
                 actor=actor, now=now, region_code=programme.region_code,
                 data={"programme_id": programme.id, "provider_id": provider.id})
    return application


def list_applications(*, actor, page: int, per_page: int, programme_id: int | None = None,
                      status: str | None = None, provider_id: int | None = None) -> dict:
    """Applications, newest first: a provider's staff see their own provider's; admins those of programmes
    in their region; auditors all."""
    statement = select(ProgrammeApplication).order_by(ProgrammeApplication.id.desc())
    if actor.role == "provider":
        statement = statement.where(ProgrammeApplication.provider_id == actor.provider_id)
    else:
        statement = statement.where(of_programmes_in_scope(actor, ProgrammeApplication.programme_id))
    if programme_id is not None:
        statement = statement.where(ProgrammeApplication.programme_id == programme_id)
    if status is not None:
        statement = statement.where(ProgrammeApplication.status == status)
    if provider_id is not None:
        statement = statement.where(ProgrammeApplication.provider_id == provider_id)
    return paginate(statement, page=page, per_page=per_page)


def _decidable(application_id: int, actor) -> tuple[ProgrammeApplication, Programme]:
    """:raises NotFound: no such application. :raises Forbidden: its programme is outside the admin's region."""
    application = db.session.get(ProgrammeApplication, application_id)
    if application is None:
        raise NotFound("No such application.")
    return application, get_programme(application.programme_id, actor=actor)


def accept(*, application_id: int, reason: str | None, actor, now: datetime) -> ProgrammeApplication:
    """Accept a pending application: the provider is enrolled in the programme in the same transaction.

    :raises NotFound: no such application.
    :raises Forbidden: its programme is outside the admin's region.
    :raises InvalidTransition: it is decided already (or a racing decision won).
    :raises ProgrammeClosed, ProviderNotApproved, NoMatchingItems, NoMatchingRegions, AlreadyEnrolled: as
        enrolment.enrol; the application then stays pending, for the admin to refuse with the reason.
    """
    application, programme = _decidable(application_id, actor)
    # The guarded change first: it takes the row's lock, so a racing decision waits, then finds it decided.
    transitions.move(application, to="accepted", allowed_from={"pending"}, what="The application",
                     values={"decided_at": now, "decided_by": actor.id, "reason": reason or None})
    enrolled = enrolment.enrol(programme=programme, provider_id=application.provider_id, actor=actor, now=now)
    audit.record(action="programme_application.accepted", entity="programme_application", entity_id=application.id,
                 actor=actor, now=now, region_code=programme.region_code,
                 data={"programme_id": programme.id, "provider_id": application.provider_id,
                       "enrolment_id": enrolled.id, "reason": reason or None})
    return application


def refuse(*, application_id: int, reason: str, actor, now: datetime) -> ProgrammeApplication:
    """Refuse a pending application, with the reason the provider will read.

    :raises NotFound: no such application.
    :raises Forbidden: its programme is outside the admin's region.
    :raises InvalidTransition: it is decided already (or a racing decision won).
    """
    application, programme = _decidable(application_id, actor)
    transitions.move(application, to="refused", allowed_from={"pending"}, what="The application",
                     values={"decided_at": now, "decided_by": actor.id, "reason": reason})
    audit.record(action="programme_application.refused", entity="programme_application", entity_id=application.id,
                 actor=actor, now=now, region_code=programme.region_code,
                 data={"programme_id": programme.id, "provider_id": application.provider_id, "reason": reason})
    return application


# --- the provider's own view: /provider/programmes ------------------------------------------------------

APPLICATIONS_SHOWN = 50


@dataclass(frozen=True)
class OfferedItem:
    """A programme's item the provider offers, at the programme's unit price."""

    code: str
    name: str
    unit: str
    unit_price_fen: int
    monthly_quota: int


@dataclass(frozen=True)
class ProgrammeLine:
    """A programme as a provider sees it: the programme's items the provider offers (at the programme's unit
    prices), and its pending application to join, if any."""

    programme: Programme
    items: list[OfferedItem]
    pending: ProgrammeApplication | None = None


@dataclass(frozen=True)
class ProviderProgrammes:
    provider: Provider
    served: list[ProgrammeLine]        # enrolled in: active ones first, then drafts and closed ones
    joinable: list[ProgrammeLine]      # active, in its regions, an item in common, not enrolled yet
    applications: list[ProgrammeApplication]  # newest first
    programme_names: dict[int, str]


def _offered(programme: Programme, provider: Provider) -> list[OfferedItem]:
    offered = set(provider.item_codes)
    lines = [item for item in programme.items if item.item_code in offered]
    catalogue_items = catalogue.items_by_code([line.item_code for line in lines])
    return [OfferedItem(code=line.item_code, name=catalogue_items[line.item_code].name,
                        unit=catalogue_items[line.item_code].unit, unit_price_fen=line.unit_price_fen,
                        monthly_quota=line.monthly_quota) for line in lines]


def provider_programmes(*, actor) -> ProviderProgrammes:
    """What the provider of *actor* (its manager or scanning staff) serves, could join, and has asked for."""
    provider = db.session.get(Provider, actor.provider_id)
    enrolled_ids = set(db.session.scalars(select(Enrolment.programme_id).where(Enrolment.provider_id == provider.id)))
    served = db.session.scalars(select(Programme).where(Programme.id.in_(enrolled_ids))).all() if enrolled_ids else []
    order = {"active": 0, "draft": 1, "closed": 2}
    served = sorted(served, key=lambda programme: (order[programme.status], programme.id))
    pending = {row.programme_id: row for row in db.session.scalars(
        select(ProgrammeApplication).where(ProgrammeApplication.provider_id == provider.id,
                                           ProgrammeApplication.status == "pending"))}
    joinable = []
    for programme in db.session.scalars(select(Programme).where(Programme.status == "active")
                                        .order_by(Programme.id)):
        if programme.id in enrolled_ids:
            continue
        if not any(overlap(programme.region_code, code) for code in provider.region_codes):
            continue
        offered = _offered(programme, provider)
        if offered:
            joinable.append(ProgrammeLine(programme=programme, items=offered, pending=pending.get(programme.id)))
    applications = db.session.scalars(
        select(ProgrammeApplication).where(ProgrammeApplication.provider_id == provider.id)
        .order_by(ProgrammeApplication.id.desc()).limit(APPLICATIONS_SHOWN)).all()
    named = {application.programme_id for application in applications} - {p.id for p in served} - {
        line.programme.id for line in joinable}
    names = {programme.id: programme.name for programme in served}
    names |= {line.programme.id: line.programme.name for line in joinable}
    if named:
        names |= dict(db.session.execute(select(Programme.id, Programme.name).where(Programme.id.in_(named))).all())
    served_lines = [ProgrammeLine(programme=programme, items=_offered(programme, provider)) for programme in served]
    return ProviderProgrammes(provider=provider, served=served_lines, joinable=joinable, applications=applications,
                              programme_names=names)


def application_form(*, programme_id: int, actor) -> ProgrammeLine:
    """The programme the manager is about to apply to, if the application would be taken.

    :raises: as `apply`, before anything is written.
    """
    require_provider_manager(actor, actor.provider_id)
    programme = db.session.get(Programme, programme_id)
    if programme is None:
        raise NotFound("No such programme.")
    provider = db.session.get(Provider, actor.provider_id)
    _require_eligible(programme, provider)
    if db.session.scalar(select(ProgrammeApplication.id).where(
            ProgrammeApplication.programme_id == programme.id, ProgrammeApplication.provider_id == provider.id,
            ProgrammeApplication.status == "pending")) is not None:
        raise ApplicationPending()
    return ProgrammeLine(programme=programme, items=_offered(programme, provider))
