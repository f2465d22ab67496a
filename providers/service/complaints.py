"""Complaints against providers: filed by a recipient or by an admin for them, optionally about one
redemption (which then waits outside settlement until the complaint is resolved), and resolved as
upheld or not by an admin. Upheld complaints lower the provider's performance score. While it is
open, the provider's manager may answer it once; staff read the answer before resolving it.

Region scope (marketplace.scope): a complaint lies where its recipient lives or, when it names
no recipient, wherever its provider serves.

A complaint cannot be used as a weapon: a recipient holds at most MAX_OPEN_COMPLAINTS open complaints about
one provider (a fourth waits until one is resolved), and the public rankings count only the upheld ones.
"""

from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select, true, update

from marketplace import audit, scope, transitions
from marketplace.auth.access import require_provider_manager
from marketplace.db import db, paginate
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound
from marketplace.recipients.models import Recipient
from marketplace.regions import common_region
from providers.models import Complaint, Provider, ProviderRegion

MAX_OPEN_COMPLAINTS = 3  # a recipient's open complaints about one provider


class TooManyOpenComplaints(DomainError):
    status, code = 409, "too_many_open_complaints"
    message = (f"This recipient already has {MAX_OPEN_COMPLAINTS} open complaints about this provider: a new one "
               "can be filed once one of them is resolved.")


def file_complaint(*, provider: Provider, text: str, recipient_id: int | None, redemption_id: int | None, actor,
                   now: datetime) -> Complaint:
    """Record a complaint. About a redemption, it puts that redemption on hold until resolved.

    The caller has checked that a recipient complains only about their own redemption.

    :raises Forbidden: a region-scoped admin filing for a recipient outside their region, or (naming no
        recipient) about a provider serving no part of it.
    :raises TooManyOpenComplaints: the recipient has MAX_OPEN_COMPLAINTS open complaints about the provider
        (whoever filed them).
    """
    _require_in_scope(actor, provider=provider, recipient_id=recipient_id)
    if recipient_id is not None:
        _require_room_for_complaint(recipient_id=recipient_id, provider_id=provider.id)
    complaint = Complaint(provider_id=provider.id, recipient_id=recipient_id, redemption_id=redemption_id, text=text,
                          status="open", created_at=now, created_by=actor.id)
    db.session.add(complaint)
    db.session.flush()
    audit.record(action="complaint.filed", entity="provider", entity_id=provider.id, actor=actor, now=now,
                 region_code=_region_of(provider, recipient_id), on_behalf_of=audit.acting_for(actor, recipient_id),
                 data={"complaint_id": complaint.id, "redemption_id": redemption_id})
    return complaint


def _require_room_for_complaint(*, recipient_id: int, provider_id: int) -> None:
    """:raises TooManyOpenComplaints: the recipient holds MAX_OPEN_COMPLAINTS open complaints about the provider.

    Complaints for one recipient are filed one at a time: the no-op UPDATE of the recipient's row takes its lock
    on PostgreSQL (a racing filing waits for this transaction to end, and its count, a new statement under READ
    COMMITTED, then sees this complaint) and the write lock on SQLite, before the open ones are counted.
    """
    db.session.execute(update(Recipient).where(Recipient.id == recipient_id).values(status=Recipient.status)
                       .execution_options(synchronize_session=False))
    still_open = db.session.scalar(select(func.count()).select_from(Complaint).where(
        Complaint.recipient_id == recipient_id, Complaint.provider_id == provider_id, Complaint.status == "open"))
    if still_open >= MAX_OPEN_COMPLAINTS:
        raise TooManyOpenComplaints(open_complaints=int(still_open), limit=MAX_OPEN_COMPLAINTS)


def _region_of(provider: Provider, recipient_id: int | None) -> str | None:
    """The region a complaint concerns: its recipient's, else the region common to its provider's."""
    if recipient_id is not None:
        return db.session.scalar(select(Recipient.region_code).where(Recipient.id == recipient_id))
    return common_region(provider.region_codes)


def _require_in_scope(actor, *, provider: Provider, recipient_id: int | None) -> None:
    """:raises Forbidden: the complaint lies outside a region-limited admin's region."""
    if not scope.is_limited(actor):
        return
    if recipient_id is not None:
        recipient = db.session.get(Recipient, recipient_id)
        if recipient is None or not scope.may_act_on(actor, recipient.region_code):
            raise Forbidden("This complaint is outside your region.")
    elif not scope.may_act_on_any(actor, provider.region_codes):
        raise Forbidden("This complaint is outside your region.")


def in_scope(actor):
    """SQL condition on Complaint: what _require_in_scope lets through."""
    if not scope.is_limited(actor):
        return true()
    recipient_inside = exists().where(Recipient.id == Complaint.recipient_id,
                                      scope.within(actor, Recipient.region_code))
    provider_overlaps = exists().where(ProviderRegion.provider_id == Complaint.provider_id,
                                       scope.overlaps_within(actor, ProviderRegion.prefix))
    return or_(recipient_inside, and_(Complaint.recipient_id.is_(None), provider_overlaps))


def get_complaint(complaint_id: int, *, actor) -> Complaint:
    """:raises NotFound: no such complaint, or not about the asking provider or by the asking recipient.
    :raises Forbidden: outside a region-scoped admin's region.
    """
    complaint = db.session.get(Complaint, complaint_id)
    if complaint is None or (actor.role == "provider" and complaint.provider_id != actor.provider_id) or (
            actor.role == "recipient" and complaint.recipient_id != actor.recipient_id):
        raise NotFound("No such complaint.")
    _require_in_scope(actor, provider=db.session.get(Provider, complaint.provider_id),
                      recipient_id=complaint.recipient_id)
    return complaint


def list_complaints(*, actor, page: int, per_page: int, provider_id: int | None = None,
                    status: str | None = None) -> dict:
    """Complaints, newest first: admins in scope and auditors see all, a provider those against it, a
    recipient their own."""
    statement = select(Complaint).where(in_scope(actor)).order_by(Complaint.id.desc())
    if actor.role == "provider":
        statement = statement.where(Complaint.provider_id == actor.provider_id)
    elif actor.role == "recipient":
        statement = statement.where(Complaint.recipient_id == actor.recipient_id)
    if provider_id is not None:
        statement = statement.where(Complaint.provider_id == provider_id)
    if status is not None:
        statement = statement.where(Complaint.status == status)
    return paginate(statement, page=page, per_page=per_page)


def complaint_counts(*, provider_ids, actor) -> dict[int, dict[str, int]]:
    """{provider_id: {"open", "upheld", "not_upheld", "all"}}: the complaints against each provider that *actor*
    may read (staff: every state, where the public rankings count the upheld ones only)."""
    ids = set(provider_ids)
    if not ids:
        return {}
    rows = db.session.execute(
        select(Complaint.provider_id, func.count().filter(Complaint.status == "open"),
               func.count().filter(Complaint.upheld.is_(True)), func.count().filter(Complaint.upheld.is_(False)),
               func.count())
        .where(Complaint.provider_id.in_(ids), in_scope(actor)).group_by(Complaint.provider_id)).all()
    counts = {pid: {"open": 0, "upheld": 0, "not_upheld": 0, "all": 0} for pid in ids}
    for pid, still_open, upheld, not_upheld, total in rows:
        counts[pid] = {"open": int(still_open), "upheld": int(upheld), "not_upheld": int(not_upheld),
                       "all": int(total)}
    return counts


def resolve_complaint(*, complaint_id: int, upheld: bool, resolution: str, actor, now: datetime) -> Complaint:
    """Close a complaint as upheld or not; a redemption it held is released for settlement.

    :raises NotFound, Forbidden: as get_complaint.
    :raises InvalidTransition: it is resolved already (also by a racing resolution).
    """
    complaint = get_complaint(complaint_id, actor=actor)
    # Of two admins resolving at once exactly one wins: no resolution silently overwrites another.
    transitions.move(complaint, to="resolved", allowed_from={"open"}, what="The complaint",
                     values={"upheld": upheld, "resolution": resolution, "resolved_at": now, "resolved_by": actor.id})
    audit.record(action="complaint.resolved", entity="provider", entity_id=complaint.provider_id, actor=actor,
                 region_code=_region_of(db.session.get(Provider, complaint.provider_id), complaint.recipient_id),
                 now=now, data={"complaint_id": complaint.id, "upheld": upheld})
    return complaint


# --- the provider's answer ------------------------------------------------------------------------

class ComplaintAlreadyAnswered(DomainError):
    status, code, message = 409, "complaint_already_answered", "The provider has answered this complaint already."


def answer_complaint(*, complaint_id: int, answer: str, actor, now: datetime) -> Complaint:
    """Record the provider's one answer to an open complaint about it, given by its manager.

    :raises NotFound: as get_complaint (another provider's complaint).
    :raises Forbidden: *actor* is not the manager of the complaint's provider.
    :raises ComplaintAlreadyAnswered: it has an answer (also one given by a racing request).
    :raises InvalidTransition: it is resolved already.
    """
    complaint = get_complaint(complaint_id, actor=actor)
    require_provider_manager(actor, complaint.provider_id)
    _require_answerable(complaint)
    # Of two answers at once exactly one matches: no answer ever replaces another, none lands after resolution.
    answered = db.session.execute(
        update(Complaint).where(Complaint.id == complaint.id, Complaint.answer.is_(None), Complaint.status == "open")
        .values(answer=answer, answered_at=now, answered_by=actor.id)
        .execution_options(synchronize_session=False)).rowcount
    if answered != 1:
        db.session.refresh(complaint)  # the racing change that won, to say which one
        _require_answerable(complaint)
        raise InvalidTransition("The complaint changed meanwhile; reload it.")
    db.session.refresh(complaint)
    audit.record(action="complaint.answered", entity="provider", entity_id=complaint.provider_id, actor=actor,
                 region_code=_region_of(db.session.get(Provider, complaint.provider_id), complaint.recipient_id),
                 now=now, data={"complaint_id": complaint.id})
    return complaint


def _require_answerable(complaint: Complaint) -> None:
    """:raises ComplaintAlreadyAnswered, InvalidTransition: it has an answer, or it is resolved."""
    if complaint.answer is not None:
        raise ComplaintAlreadyAnswered()
    if complaint.status != "open":
        raise InvalidTransition("The complaint is resolved: it can no longer be answered.", status=complaint.status)
