"""A provider's working day, for its home page: today's and this month's services, and the latest ones.

Counts and sums filter one provider's redemptions by delivery time (`ix_redemption_provider_delivered`),
so the page stays cheap in a county with millions of redemptions.
"""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from vouchers.models import Redemption

RECENT_SHOWN = 20


def _local_midnight(day) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).astimezone(UTC)


def _totals(provider_id: int, since: datetime, until: datetime) -> dict:
    count, face, copay = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Redemption.face_value_fen), 0),
               func.coalesce(func.sum(Redemption.copay_fen), 0))
        .where(Redemption.provider_id == provider_id, Redemption.status == "completed",
               Redemption.delivered_at >= since, Redemption.delivered_at < until)).one()
    return {"count": int(count), "face_value_fen": int(face), "copay_fen": int(copay)}


def provider_workday(*, actor, now: datetime) -> dict:
    """{today, month: {count, face_value_fen, copay_fen}, recent: [Redemption], item_names} for provider staff."""
    today = local_date(now)
    tomorrow = _local_midnight(today + timedelta(days=1))
    recent = db.session.scalars(
        select(Redemption).where(Redemption.provider_id == actor.provider_id)
        .order_by(Redemption.delivered_at.desc(), Redemption.id.desc()).limit(RECENT_SHOWN)).all()
    codes = {row.item_code for row in recent}
    named = select(ServiceItem.code, ServiceItem.name).where(ServiceItem.code.in_(codes))
    names = dict(db.session.execute(named).all())
    return {
        "today": _totals(actor.provider_id, _local_midnight(today), tomorrow),
        "month": _totals(actor.provider_id, _local_midnight(today.replace(day=1)), tomorrow),
        "recent": recent,
        "item_names": names,
    }
