"""Dashboards for the bureau and disclosure for the public (docs/domain.md, rule 7). Read-only.

Public answers never carry personal data: no recipient names, ID numbers or phones, and no
provider contact persons or phones.
"""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, literal_column, select

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from marketplace.errors import NotFound
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from providers.models import Provider
from vouchers.models import Redemption, Settlement, Voucher

BURN_WINDOW_DAYS = 30
PUBLIC_STATUSES = ("active", "closed")


def local_day(column):
    """SQL for the local calendar day of a UTC instant column (PostgreSQL and SQLite)."""
    timezone = current_app.config["LOCAL_TIMEZONE"]
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone(timezone, column))
    # SQLite keeps instants as UTC text: shift by the zone's current offset (China has no DST).
    offset = datetime.now(ZoneInfo(timezone)).utcoffset()
    return func.date(column, literal_column(f"'{int(offset.total_seconds()):+d} seconds'"))


def _exhaustion_date(today: date, *, unspent_fen: int, recent_fen: int) -> date | None:
    """The day *unspent_fen* runs out at *recent_fen* per BURN_WINDOW_DAYS (None when nothing is spent).

    Whole days in integer arithmetic (a float quotient loses a day when the money lasts exactly N days);
    a budget that outlasts the calendar ends on its last day rather than overflowing.
    """
    if recent_fen <= 0:
        return None
    days = unspent_fen * BURN_WINDOW_DAYS // recent_fen
    return today + timedelta(days=days) if days <= (date.max - today).days else date.max


def recent_spending(programme_id: int, *, now: datetime) -> int:
    """Face value of the programme's completed redemptions over the last BURN_WINDOW_DAYS, in fen."""
    since = now - timedelta(days=BURN_WINDOW_DAYS)
    return int(db.session.scalar(
        select(func.coalesce(func.sum(Redemption.face_value_fen), 0))
        .where(Redemption.programme_id == programme_id, Redemption.status == "completed",
               Redemption.delivered_at >= since, Redemption.delivered_at <= now)))


def projected_exhaustion(balances: ledger.Ledger, *, recent_fen: int, now: datetime) -> date | None:
    """The day the unspent budget (available and committed) runs out at the recent rate of spending."""
    unspent = balances.available_fen + balances.committed_fen
    return _exhaustion_date(local_date(now), unspent_fen=unspent, recent_fen=recent_fen)


def dashboard(programme: Programme, *, now: datetime) -> dict:
    """The ledger, the burn rate, when the money runs out at that rate, where it goes, the reserved share."""
    balances = ledger.balances(programme.id)
    completed = (Redemption.programme_id == programme.id) & (Redemption.status == "completed")
    recent = recent_spending(programme.id, now=now)
    burn_rate = recent / BURN_WINDOW_DAYS
    exhaustion = projected_exhaustion(balances, recent_fen=recent, now=now)

    def grouped(*columns):
        return db.session.execute(
            select(*columns, func.count(), func.coalesce(func.sum(Redemption.face_value_fen), 0))
            .where(completed).group_by(*columns).order_by(*columns)).all()

    by_item = [{"item_code": code, "count": n, "face_value_fen": int(total)}
               for code, n, total in grouped(Redemption.item_code)]
    names = {p.id: (p.name, p.kind) for p in db.session.scalars(select(Provider))}
    by_provider = [{"provider_id": pid, "name": names[pid][0], "kind": names[pid][1], "count": n,
                    "face_value_fen": int(total)} for pid, n, total in grouped(Redemption.provider_id)]
    day = local_day(Redemption.delivered_at).label("day")
    by_day = [{"date": str(d), "count": n, "face_value_fen": int(total)} for d, n, total in grouped(day)]
    total_value = sum(row["face_value_fen"] for row in by_provider)
    social = sum(row["face_value_fen"] for row in by_provider if row["kind"] == "social_organisation")
    return {
        "ledger": balances,
        "burn_rate_fen_per_day": round(burn_rate),
        "burn_window_days": BURN_WINDOW_DAYS,
        "projected_exhaustion_date": exhaustion,
        "redemptions_by_item": by_item,
        "redemptions_by_provider": by_provider,
        "redemptions_by_day": by_day,
        "reserved_share": {
            "target_percent": programme.reserved_share_percent,
            "actual_percent": round(100 * social / total_value, 2) if total_value else None,
            "social_organisation_fen": social,
            "redeemed_fen": total_value,
        },
    }


def _public_programme(programme: Programme, items: dict[str, ServiceItem]) -> dict:
    balances = ledger.balances(programme.id)
    issued, redeemed = db.session.execute(
        select(func.count(), func.count().filter(Voucher.status == "redeemed"))
        .where(Voucher.programme_id == programme.id)).one()
    return {
        "id": programme.id, "name": programme.name, "authority": programme.authority,
        "region_code": programme.region_code, "starts_on": programme.starts_on, "ends_on": programme.ends_on,
        "status": programme.status,
        "items": [{"item_code": item.item_code, "name": items[item.item_code].name, "unit": items[item.item_code].unit,
                   "standard_price_fen": items[item.item_code].standard_price_fen,
                   "unit_price_fen": item.unit_price_fen, "monthly_quota": item.monthly_quota}
                  for item in programme.items],
        "budget_allocated_fen": balances.allocated_fen,
        "budget_spent_fen": balances.redeemed_fen + balances.settled_fen,
        "vouchers_issued": issued, "vouchers_redeemed": redeemed,
    }


def public_programmes() -> list[dict]:
    items = {item.code: item for item in db.session.scalars(select(ServiceItem))}
    programmes = db.session.scalars(select(Programme).where(Programme.status.in_(PUBLIC_STATUSES))
                                    .order_by(Programme.id)).all()
    return [_public_programme(programme, items) for programme in programmes]


def public_programme(programme_id: int) -> dict:
    """:raises NotFound: no such programme, or a draft (not yet public)."""
    programme = db.session.get(Programme, programme_id)
    if programme is None or programme.status not in PUBLIC_STATUSES:
        raise NotFound("No such programme.")
    items = {item.code: item for item in db.session.scalars(select(ServiceItem))}
    return _public_programme(programme, items)


def public_settlements(*, programme_id: int | None = None, period: str | None = None) -> list[dict]:
    """What each provider was paid and how it performed (approved and paid settlements only)."""
    statement = (select(Settlement, Provider.name, Provider.kind).join(Provider, Provider.id == Settlement.provider_id)
                 .join(Programme, Programme.id == Settlement.programme_id)
                 .where(Settlement.status.in_(("approved", "paid")), Programme.status.in_(PUBLIC_STATUSES))
                 .order_by(Settlement.period, Settlement.programme_id, Settlement.provider_id))
    if programme_id is not None:
        statement = statement.where(Settlement.programme_id == programme_id)
    if period is not None:
        statement = statement.where(Settlement.period == period)
    return [{"programme_id": s.programme_id, "period": s.period, "provider_id": s.provider_id, "provider_name": name,
             "provider_kind": kind, "redemptions_count": s.redemptions_count, "gross_fen": s.gross_fen,
             "performance_score": s.performance_score, "pay_percent": s.pay_percent, "net_fen": s.net_fen,
             "status": s.status, "flagged_for_termination": s.flagged_for_termination}
            for s, name, kind in db.session.execute(statement)]
