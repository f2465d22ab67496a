"""The staff's complaints queue (`/staff/complaints`): open complaints first, oldest first, each with its
age and the provider's answer; then the resolved ones, latest first. Filters by status, provider and
whether the provider has answered; the same rows, unpaged, for the exports. And one complaint with
everything staff read before resolving it: the recipient, the provider, the redemption it holds, the answer.

Scope as the API's list (providers.service.complaints): admins in their region, auditors everywhere.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import aliased

from marketplace.auth.models import User
from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from marketplace.recipients.models import Recipient
from providers.models import Complaint, Provider
from providers.service.complaints import get_complaint, in_scope

EXPORT_BATCH = 2000


@dataclass(frozen=True)
class QueueLine:
    """One complaint as the queue shows it."""

    id: int
    provider_id: int
    provider_name: str
    recipient_id: int | None
    recipient_name: str | None
    recipient_id_masked: str | None
    redemption_id: int | None
    text: str
    status: str
    upheld: bool | None
    resolution: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    answer: str | None
    answered_at: datetime | None
    answered_by: str | None
    age_days: int  # local calendar days from filing to now (open) or to its resolution (resolved)


@dataclass(frozen=True)
class HeldRedemption:
    """The redemption a complaint is about (read by table name: redemptions belong to the vouchers domain)."""

    id: int
    item_code: str
    item_name: str | None
    delivered_at: datetime
    face_value_fen: int
    status: str
    settled: bool


def _statement(*, actor, status: str | None, provider_id: int | None, answered: bool | None):
    answerer, resolver = aliased(User), aliased(User)
    # Aliased: the scope condition's EXISTS on the recipient must not correlate with this join.
    recipient = aliased(Recipient)
    statement = (
        select(Complaint, Provider.name, recipient.name, recipient.id_number_masked, answerer.username,
               resolver.username)
        .join(Provider, Provider.id == Complaint.provider_id)
        .outerjoin(recipient, recipient.id == Complaint.recipient_id)
        .outerjoin(answerer, answerer.id == Complaint.answered_by)
        .outerjoin(resolver, resolver.id == Complaint.resolved_by)
        .where(in_scope(actor))
        # Open first, oldest first (the longest wait is the first to deal with); then resolved, latest first.
        .order_by(case((Complaint.status == "open", 0), else_=1),
                  case((Complaint.status == "open", Complaint.created_at), else_=None).asc(),
                  Complaint.resolved_at.desc(), Complaint.id))
    if status is not None:
        statement = statement.where(Complaint.status == status)
    if provider_id is not None:
        statement = statement.where(Complaint.provider_id == provider_id)
    if answered is True:
        statement = statement.where(Complaint.answer.is_not(None))
    elif answered is False:
        statement = statement.where(Complaint.answer.is_(None))
    return statement


def _line(row, today) -> QueueLine:
    complaint, provider_name, recipient_name, masked, answered_by, resolved_by = row
    until = local_date(complaint.resolved_at) if complaint.resolved_at is not None else today
    return QueueLine(
        id=complaint.id, provider_id=complaint.provider_id, provider_name=provider_name,
        recipient_id=complaint.recipient_id, recipient_name=recipient_name, recipient_id_masked=masked,
        redemption_id=complaint.redemption_id, text=complaint.text, status=complaint.status, upheld=complaint.upheld,
        resolution=complaint.resolution, created_at=complaint.created_at, resolved_at=complaint.resolved_at,
        resolved_by=resolved_by, answer=complaint.answer, answered_at=complaint.answered_at, answered_by=answered_by,
        age_days=(until - local_date(complaint.created_at)).days)


def complaint_queue(*, actor, page: int, per_page: int, now: datetime, status: str | None = None,
                    provider_id: int | None = None, answered: bool | None = None) -> dict:
    """One page of the queue in the list envelope `{items: [QueueLine], page, per_page, total}`."""
    statement = _statement(actor=actor, status=status, provider_id=provider_id, answered=answered)
    total = db.session.scalar(select(func.count()).select_from(
        statement.order_by(None).with_only_columns(Complaint.id).subquery()))
    rows = db.session.execute(statement.limit(per_page).offset((page - 1) * per_page)).all()
    today = local_date(now)
    return {"items": [_line(row, today) for row in rows], "page": page, "per_page": per_page, "total": total}


def queue_lines(*, actor, now: datetime, status: str | None = None, provider_id: int | None = None,
                answered: bool | None = None) -> Iterator[QueueLine]:
    """Every complaint the queue shows with these filters, in its order, read in batches (for the exports)."""
    statement = _statement(actor=actor, status=status, provider_id=provider_id, answered=answered)
    today = local_date(now)
    with db.session.execute(statement.execution_options(yield_per=EXPORT_BATCH)) as rows:
        for row in rows:
            yield _line(row, today)


def queue_providers(*, actor) -> list[tuple[int, str]]:
    """(id, name) of the providers with complaints the actor may see, for the filter's choices."""
    statement = (select(Provider.id, Provider.name).join(Complaint, Complaint.provider_id == Provider.id)
                 .where(in_scope(actor)).distinct().order_by(Provider.name, Provider.id))
    return [(provider_id, name) for provider_id, name in db.session.execute(statement)]


def complaint_detail(complaint_id: int, *, actor, now: datetime) -> tuple[QueueLine, HeldRedemption | None]:
    """One complaint as staff read it before resolving, and the redemption it is about (if any).

    :raises NotFound, Forbidden: as get_complaint (outside a region-scoped admin's region).
    """
    get_complaint(complaint_id, actor=actor)
    statement = _statement(actor=actor, status=None, provider_id=None, answered=None).where(
        Complaint.id == complaint_id)
    line = _line(db.session.execute(statement).one(), local_date(now))
    return line, _held_redemption(line.redemption_id)


def _held_redemption(redemption_id: int | None) -> HeldRedemption | None:
    if redemption_id is None:
        return None
    # Named, not imported (as the models' foreign keys): redemptions belong to the vouchers domain above this one.
    redemption = db.metadata.tables["redemption"]
    row = db.session.execute(
        select(redemption.c.id, redemption.c.item_code, ServiceItem.name, redemption.c.delivered_at,
               redemption.c.face_value_fen, redemption.c.status, redemption.c.settlement_id)
        .outerjoin(ServiceItem, ServiceItem.code == redemption.c.item_code)
        .where(redemption.c.id == redemption_id)).one_or_none()
    if row is None:
        return None
    return HeldRedemption(id=row[0], item_code=row[1], item_name=row[2], delivered_at=row[3],
                          face_value_fen=row[4], status=row[5], settled=row[6] is not None)
