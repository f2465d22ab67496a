"""What civil-affairs staff read about anomaly flags (`/staff/anomalies`): the queue with the names behind the
ids, and one flag with the services it is about. Reads only; who may see what is the flags service's
(`anomalies.list_flags`, `anomalies.get_flag`), so the console and GET /api/v1/anomalies cannot disagree.
"""

from dataclasses import dataclass

from sqlalchemy import select

from marketplace.auth.models import User
from marketplace.catalogue.models import ServiceItem
from marketplace.db import db
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from providers.models import Provider
from vouchers.models import AnomalyFlag, Redemption
from vouchers.service import anomalies
from vouchers.service.anomalies import FlagView

QUEUE_PER_PAGE = 25
EXPORT_BATCH = 500
SERVICES_SHOWN = 200


@dataclass(frozen=True)
class QueueLine:
    flag: FlagView
    provider_name: str
    programme_name: str


@dataclass(frozen=True)
class ServiceLine:
    redemption: Redemption
    item_name: str
    provider_name: str
    recipient_id: int
    recipient_name: str
    recipient_id_masked: str
    settled: bool


@dataclass(frozen=True)
class FlagDetail:
    line: QueueLine
    services: list[ServiceLine]
    services_total: int
    held_fen: int  # the face value of its services not yet in a settlement: what a confirmation holds
    decided_by: str | None
    staff_login: str | None


def _names(model, ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    return dict(db.session.execute(select(model.id, model.name).where(model.id.in_(ids))).all()) if ids else {}


def _lines(flags: list[FlagView]) -> list[QueueLine]:
    providers = _names(Provider, [flag.provider_id for flag in flags])
    programmes = _names(Programme, [flag.programme_id for flag in flags])
    return [QueueLine(flag=flag, provider_name=providers.get(flag.provider_id, ""),
                      programme_name=programmes.get(flag.programme_id, "")) for flag in flags]


def queue(*, actor, page: int, **filters) -> dict:
    """A page of the flags *actor* may see, most severe first, in the list envelope with "pages"."""
    found = anomalies.list_flags(actor=actor, page=page, per_page=QUEUE_PER_PAGE, **filters)
    found["items"] = _lines(found["items"])
    found["pages"] = max(1, -(-found["total"] // QUEUE_PER_PAGE))
    return found


def queue_export(*, actor, **filters):
    """Every flag the queue shows with these filters (all its pages), in batches."""
    page = 1
    while True:
        found = anomalies.list_flags(actor=actor, page=page, per_page=EXPORT_BATCH, **filters)
        yield from _lines(found["items"])
        if page * EXPORT_BATCH >= found["total"]:
            return
        page += 1


def flag_detail(flag_id: int, *, actor) -> FlagDetail:
    """One flag with its services (the first SERVICES_SHOWN), for staff.

    :raises NotFound, Forbidden: as anomalies.get_flag.
    """
    flag = anomalies.get_flag(flag_id, actor=actor)
    shown = anomalies.view(flag, actor=actor)
    ids = shown.redemption_ids
    rows = db.session.execute(
        select(Redemption, ServiceItem.name, Provider.name, Recipient.name, Recipient.id_number_masked)
        .join(ServiceItem, ServiceItem.code == Redemption.item_code)
        .join(Provider, Provider.id == Redemption.provider_id)
        .join(Recipient, Recipient.id == Redemption.recipient_id)
        .where(Redemption.id.in_(ids[:SERVICES_SHOWN]))
        .order_by(Redemption.delivered_at, Redemption.id)).all() if ids else []
    services = [ServiceLine(redemption=r, item_name=item, provider_name=provider, recipient_id=r.recipient_id,
                            recipient_name=name, recipient_id_masked=masked, settled=r.settlement_id is not None)
                for r, item, provider, name, masked in rows]
    held = sum(db.session.scalars(select(Redemption.face_value_fen).where(
        Redemption.id.in_(ids), Redemption.status == "completed", Redemption.settlement_id.is_(None))).all()) \
        if ids else 0
    users = dict(db.session.execute(select(User.id, User.username).where(
        User.id.in_({flag.decided_by, flag.staff_user_id} - {None}))).all())
    return FlagDetail(line=_lines([shown])[0], services=services, services_total=len(ids), held_fen=int(held),
                      decided_by=users.get(flag.decided_by), staff_login=users.get(flag.staff_user_id))


def open_counts(*, actor, programme_id: int | None = None) -> dict[str, int]:
    """Open flags *actor* may see by severity (high, medium, low), for the staff home and a dashboard."""
    counts = {"high": 0, "medium": 0, "low": 0}
    statement = (select(AnomalyFlag.severity, db.func.count()).where(*anomalies.visible(actor))
                 .where(AnomalyFlag.status == "open").group_by(AnomalyFlag.severity))
    if programme_id is not None:
        statement = statement.where(AnomalyFlag.programme_id == programme_id)
    for severity, count in db.session.execute(statement):
        counts[severity] = count
    return counts


