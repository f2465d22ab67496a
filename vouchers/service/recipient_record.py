"""What the staff see of one recipient (`/staff/recipients/<id>`): read models over their vouchers, choices,
services with ratings, and complaints; and what recording their death or move would end.

The kernel's recipient page asks for these through `marketplace.signals` (it may not import this domain);
`vouchers.receivers` answers. Everything here reads; nothing writes.
"""

from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import func, select

from marketplace.catalogue.service import items_by_code
from marketplace.db import db, local_date
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from providers.models import Complaint, Provider, Rating
from vouchers.models import Choice, ChoiceEvent, Redemption, Voucher

PAST_PERIODS_SHOWN = 24  # voucher batches (programme × item × validity) before this month
HISTORY_SHOWN = 50
SERVICES_SHOWN = 60
COMPLAINTS_SHOWN = 50
OPEN = "issued"


@dataclass
class VoucherBatch:
    """The recipient's vouchers of one programme, one item and one validity, counted by status."""

    programme_id: int
    programme_name: str
    item_code: str
    item_name: str
    valid_from: date
    valid_until: date
    face_value_fen: int
    counts: dict[str, int] = field(default_factory=dict)  # status → vouchers

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class ChoiceLine:
    programme_name: str
    item_name: str
    provider_name: str
    chosen_at: datetime


@dataclass
class ChoiceChange:
    programme_name: str
    item_name: str
    from_provider: str | None
    to_provider: str
    chosen_at: datetime
    acted_as: str
    switch_reason: str | None
    switch_note: str | None


@dataclass
class ServiceLine:
    redemption_id: int
    delivered_at: datetime
    item_name: str
    provider_name: str
    status: str
    face_value_fen: int
    copay_fen: int
    rating_score: int | None
    rating_source: str | None
    rating_comment: str | None


@dataclass
class RecipientRecord:
    today: date
    this_month: list[VoucherBatch]
    past: list[VoucherBatch]
    choices: list[ChoiceLine]
    history: list[ChoiceChange]
    services: list[ServiceLine]
    complaints: list[Complaint]
    provider_names: dict[int, str]
    open_vouchers: int
    open_fen: int


def recipient_record(*, recipient: Recipient, now: datetime) -> RecipientRecord:
    """The recipient's vouchers (this month's, then earlier batches), current choices and their history with
    switch reasons, services delivered with their ratings, and complaints; newest first where it matters."""
    today = local_date(now)
    batches = _voucher_batches(recipient.id)
    this_month = [b for b in batches if b.valid_from <= today <= b.valid_until]
    past = [b for b in batches if b not in this_month][:PAST_PERIODS_SHOWN]
    names: dict[int, str] = {}
    programmes: dict[int, str] = {}

    choices = db.session.scalars(select(Choice).where(Choice.recipient_id == recipient.id)
                                 .order_by(Choice.programme_id, Choice.item_code)).all()
    history = db.session.scalars(select(ChoiceEvent).where(ChoiceEvent.recipient_id == recipient.id)
                                 .order_by(ChoiceEvent.chosen_at.desc(), ChoiceEvent.id.desc())
                                 .limit(HISTORY_SHOWN)).all()
    services = db.session.execute(
        select(Redemption, Rating.score, Rating.source, Rating.comment)
        .join(Voucher, Voucher.id == Redemption.voucher_id)  # through the recipient's vouchers (indexed)
        .outerjoin(Rating, Rating.redemption_id == Redemption.id)
        .where(Voucher.recipient_id == recipient.id)
        .order_by(Redemption.delivered_at.desc(), Redemption.id.desc()).limit(SERVICES_SHOWN)).all()
    complaints = db.session.scalars(select(Complaint).where(Complaint.recipient_id == recipient.id)
                                    .order_by(Complaint.id.desc()).limit(COMPLAINTS_SHOWN)).all()

    provider_ids = ({c.provider_id for c in choices} | {e.to_provider_id for e in history}
                    | {e.from_provider_id for e in history if e.from_provider_id is not None}
                    | {row[0].provider_id for row in services} | {c.provider_id for c in complaints})
    if provider_ids:
        names.update(db.session.execute(select(Provider.id, Provider.name)
                                        .where(Provider.id.in_(provider_ids))).all())
    programme_ids = {c.programme_id for c in choices} | {e.programme_id for e in history}
    if programme_ids:
        programmes.update(db.session.execute(select(Programme.id, Programme.name)
                                             .where(Programme.id.in_(programme_ids))).all())
    items = {code: item.name for code, item in items_by_code(sorted(
        {c.item_code for c in choices} | {e.item_code for e in history} | {row[0].item_code for row in services}
    )).items()}

    open_vouchers, open_fen = departure_preview(recipient_id=recipient.id)
    return RecipientRecord(
        today=today, this_month=this_month, past=past,
        choices=[ChoiceLine(programme_name=programmes.get(c.programme_id, str(c.programme_id)),
                            item_name=items.get(c.item_code, c.item_code),
                            provider_name=names.get(c.provider_id, str(c.provider_id)), chosen_at=c.chosen_at)
                 for c in choices],
        history=[ChoiceChange(programme_name=programmes.get(e.programme_id, str(e.programme_id)),
                              item_name=items.get(e.item_code, e.item_code),
                              from_provider=names.get(e.from_provider_id) if e.from_provider_id else None,
                              to_provider=names.get(e.to_provider_id, str(e.to_provider_id)),
                              chosen_at=e.chosen_at, acted_as=e.acted_as, switch_reason=e.switch_reason,
                              switch_note=e.switch_note) for e in history],
        services=[ServiceLine(redemption_id=r.id, delivered_at=r.delivered_at,
                              item_name=items.get(r.item_code, r.item_code),
                              provider_name=names.get(r.provider_id, str(r.provider_id)), status=r.status,
                              face_value_fen=r.face_value_fen, copay_fen=r.copay_fen, rating_score=score,
                              rating_source=source, rating_comment=comment)
                  for r, score, source, comment in services],
        complaints=list(complaints), provider_names=names, open_vouchers=open_vouchers, open_fen=open_fen)


def _voucher_batches(recipient_id: int) -> list[VoucherBatch]:
    rows = db.session.execute(
        select(Voucher.programme_id, Programme.name, Voucher.item_code, Voucher.valid_from, Voucher.valid_until,
               Voucher.face_value_fen, Voucher.status, func.count())
        .join(Programme, Programme.id == Voucher.programme_id)
        .where(Voucher.recipient_id == recipient_id)
        .group_by(Voucher.programme_id, Programme.name, Voucher.item_code, Voucher.valid_from, Voucher.valid_until,
                  Voucher.face_value_fen, Voucher.status)).all()
    items = {code: item.name for code, item in items_by_code(sorted({row[2] for row in rows})).items()}
    batches: dict[tuple, VoucherBatch] = {}
    for programme_id, programme_name, item_code, valid_from, valid_until, face, status, count in rows:
        key = (programme_id, item_code, valid_from, valid_until, face)
        batch = batches.setdefault(key, VoucherBatch(
            programme_id=programme_id, programme_name=programme_name, item_code=item_code,
            item_name=items.get(item_code, item_code), valid_from=valid_from, valid_until=valid_until,
            face_value_fen=face))
        batch.counts[status] = batch.counts.get(status, 0) + count
    return sorted(batches.values(), key=lambda b: (b.valid_from, b.programme_id, b.item_code), reverse=True)


def departure_preview(*, recipient_id: int) -> tuple[int, int]:
    """How many of the recipient's vouchers are still open and their face value: what a recorded death or move
    revokes and releases back to the programmes' budgets (`revocation.revoke_open_vouchers`)."""
    count, total = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Voucher.face_value_fen), 0))
        .where(Voucher.recipient_id == recipient_id, Voucher.status == OPEN)).one()
    return int(count), int(total)
