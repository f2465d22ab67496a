"""Dashboards for the bureau and disclosure for the public (docs/domain.md, rule 7). Read-only.

Public answers never carry personal data: no recipient names, ID numbers or phones, and no
provider contact persons or phones.
"""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, literal_column, select

from marketplace.catalogue import service as catalogue
from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from marketplace.errors import NotFound, ValidationFailed
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from marketplace.reports.freshness import remembered
from providers.models import Provider, ProviderRegion
from providers.service import ranking, registry
from providers.service.ratings import bayesian_score
from vouchers.models import Redemption, Settlement, Voucher
from vouchers.service import switching
from vouchers.service.issuance import copay_fen

BURN_WINDOW_DAYS = 30
PUBLIC_STATUSES = ("active", "closed")
# Counting a county's vouchers reads a year of rows (millions): the disclosed counts are recounted at
# most this often per programme and worker, and say when they were counted (`vouchers_counted_at`).
VOUCHER_COUNTS_SECONDS = 300
# The staff's programme page groups every redemption of the programme, and projects the money's end from the
# last month's spending: both recomputed at most this often per programme and worker (the page says when).
BREAKDOWN_CACHE_SECONDS = 300
SPENDING_CACHE_SECONDS = 300


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


def remembered_recent_spending(programme: Programme, *, now: datetime) -> int:
    """recent_spending, recomputed at most every SPENDING_CACHE_SECONDS per programme and worker: it sums a
    month of redemptions (about 200,000 rows in a county) for a projection in days, which moves slowly."""
    # An id is never reused, but a test database may start over: the creation instant completes the key.
    recent, _computed_at = remembered(
        "recent_spending", (programme.id, programme.created_at), now=now, seconds=SPENDING_CACHE_SECONDS,
        compute=lambda: recent_spending(programme.id, now=now))
    return recent


def remembered_breakdown(programme: Programme, *, now: datetime) -> tuple[dict, datetime]:
    """(redemption_breakdown, when it was counted): at most BREAKDOWN_CACHE_SECONDS old per programme and worker
    (it groups every redemption of the programme: millions in a county's year)."""
    return remembered("redemption_breakdown", (programme.id, programme.created_at), now=now,
                      seconds=BREAKDOWN_CACHE_SECONDS, compute=lambda: redemption_breakdown(programme))


def dashboard(programme: Programme, *, now: datetime, recent_fen: int | None = None,
              breakdown: dict | None = None) -> dict:
    """The ledger, the burn rate, when the money runs out at that rate, where it goes, the reserved share.

    The ledger is always current; *recent_fen* (the last BURN_WINDOW_DAYS' spending) and *breakdown*
    (redemption_breakdown) are computed here unless the caller brings remembered ones."""
    balances = ledger.balances(programme.id)
    recent = recent_spending(programme.id, now=now) if recent_fen is None else recent_fen
    burn_rate = recent / BURN_WINDOW_DAYS
    exhaustion = projected_exhaustion(balances, recent_fen=recent, now=now)
    parts = redemption_breakdown(programme) if breakdown is None else breakdown
    return {
        "ledger": balances,
        "burn_rate_fen_per_day": round(burn_rate),
        "burn_window_days": BURN_WINDOW_DAYS,
        "projected_exhaustion_date": exhaustion,
        **parts,
    }


def redemption_breakdown(programme: Programme) -> dict:
    """Completed redemptions by item, by provider and by local day, and the reserved share's actual value."""
    completed = (Redemption.programme_id == programme.id) & (Redemption.status == "completed")

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


def _copay_tiers(programme: Programme) -> list[dict]:
    """The co-payment percents of the programme: the default first, then each tag's, highest share first."""
    tags = sorted((tag for tag in programme.copay_percent if tag != "default"),
                  key=lambda tag: (-programme.copay_percent[tag], tag))
    return [{"tag": tag, "percent": programme.copay_percent[tag]} for tag in ("default", *tags)]


def _public_item(item, catalogue_item: ServiceItem, tiers: list[dict]) -> dict:
    """One item of a programme with what a voucher of it is worth for each co-payment tier."""
    prices = []
    for tier in tiers:
        copay = copay_fen(item.unit_price_fen, tier["percent"])
        prices.append({**tier, "copay_fen": copay, "face_value_fen": item.unit_price_fen - copay})
    return {"item_code": item.item_code, "name": catalogue_item.name, "unit": catalogue_item.unit,
            "standard_price_fen": catalogue_item.standard_price_fen, "unit_price_fen": item.unit_price_fen,
            "monthly_quota": item.monthly_quota, "prices": prices}


def _voucher_counts(programme_id: int) -> tuple[int, int]:
    """(issued, redeemed) vouchers of a programme."""
    issued, redeemed = db.session.execute(
        select(func.count(), func.count().filter(Voucher.status == "redeemed"))
        .where(Voucher.programme_id == programme_id)).one()
    return int(issued), int(redeemed)


def _public_programme(programme: Programme, items: dict[str, ServiceItem], *, now: datetime) -> dict:
    """The programme as disclosed. The API dumps the documented fields (PublicProgrammeSchema); the public
    portal also shows the co-payment tiers, eligibility, pay rules and the ledger's parts. Money is as of
    now; voucher counts as of `vouchers_counted_at` (at most VOUCHER_COUNTS_SECONDS before)."""
    balances = ledger.balances(programme.id)
    (issued, redeemed), counted_at = remembered(
        "voucher_counts", (programme.id, programme.created_at), now=now, seconds=VOUCHER_COUNTS_SECONDS,
        compute=lambda: _voucher_counts(programme.id))
    tiers = _copay_tiers(programme)
    return {
        "id": programme.id, "name": programme.name, "authority": programme.authority,
        "region_code": programme.region_code, "starts_on": programme.starts_on, "ends_on": programme.ends_on,
        "status": programme.status,
        "items": [_public_item(item, items[item.item_code], tiers) for item in programme.items],
        "budget_allocated_fen": balances.allocated_fen,
        "budget_spent_fen": balances.redeemed_fen + balances.settled_fen,
        "budget_committed_fen": balances.committed_fen,
        "budget_available_fen": balances.available_fen,
        "vouchers_issued": issued, "vouchers_redeemed": redeemed, "vouchers_counted_at": counted_at,
        "copay_tiers": tiers,
        "eligibility": {"min_age": programme.eligibility.get("min_age"),
                        "tags_any": list(programme.eligibility.get("tags_any") or [])},
        "settlement_rules": sorted(programme.settlement_rules, key=lambda rule: rule["min_score"]),
        "reserved_share_percent": programme.reserved_share_percent,
        "rating_window_days": programme.rating_window_days,
    }


def public_programmes(*, now: datetime) -> list[dict]:
    items = {item.code: item for item in db.session.scalars(select(ServiceItem))}
    programmes = db.session.scalars(select(Programme).where(Programme.status.in_(PUBLIC_STATUSES))
                                    .order_by(Programme.id)).all()
    return [_public_programme(programme, items, now=now) for programme in programmes]


def public_programme(programme_id: int, *, now: datetime) -> dict:
    """:raises NotFound: no such programme, or a draft (not yet public)."""
    programme = db.session.get(Programme, programme_id)
    if programme is None or programme.status not in PUBLIC_STATUSES:
        raise NotFound("No such programme.")
    items = {item.code: item for item in db.session.scalars(select(ServiceItem))}
    return _public_programme(programme, items, now=now)


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


# --- the public portal's read models (marketplace/reports/pages.py) ----------------------------------

def public_programme_report(programme_id: int, *, now: datetime) -> dict:
    """One programme as the public portal shows it: its disclosure (public_programme), its approved and
    paid settlements month by month, newest first, each provider with its performance score, and how often
    recipients switched provider — per item and for the whole programme only, each figure hidden when fewer
    than switching.MIN_PUBLIC_GROUP recipients make it up (vouchers.service.switching.public_switching).

    :raises NotFound: no such programme, or a draft (not yet public).
    """
    programme = public_programme(programme_id, now=now)
    months: dict[str, list[dict]] = {}
    for row in public_settlements(programme_id=programme_id):
        months.setdefault(row["period"], []).append(row)
    settlements = [{"period": period, "rows": rows, "gross_fen": sum(row["gross_fen"] for row in rows),
                    "net_fen": sum(row["net_fen"] for row in rows)}
                   for period, rows in sorted(months.items(), reverse=True)]
    return {"programme": programme, "settlements": settlements,
            "switching": switching.public_switching(db.session.get(Programme, programme_id)),
            "switching_min_group": switching.MIN_PUBLIC_GROUP}


def public_provider_directory(*, page: int, per_page: int) -> dict:
    """One page of the approved providers as the public sees them (registry.list_providers without an
    actor: no contact person, no phone), with the names of the items they offer and the number of pages."""
    listed = registry.list_providers(actor=None, page=page, per_page=per_page)
    codes = sorted({code for profile in listed["items"] for code in profile.provider.item_codes})
    names = {code: item.name for code, item in catalogue.items_by_code(codes).items()}
    return {**listed, "item_names": names, "pages": max(1, -(-listed["total"] // per_page))}


# Illustrations of the prior in the rankings' explanation: a newcomer with three 5-star ratings
# against an established provider with 300 ratings averaging 4.8.
FEW_RATINGS = (3, 15)
MANY_RATINGS = (300, 1440)


def public_rankings(*, item_code: str | None = None, region_code: str | None = None) -> dict:
    """The ranking of one item's providers (serving *region_code*, or anywhere) with the numbers behind
    its formula, and the choices of the portal's form.

    `prior_mean` is the m the ranking used: every rating of the item in that scope, Σ scores ÷ Σ n over
    the ranked providers; `prior_weight` is C (RANKING_PRIOR_WEIGHT). `example` runs the same formula
    for 3 ratings of 5 and for 300 ratings averaging 4.8 (None while nobody in the scope is rated).
    Without *item_code* the first catalogue item is ranked (`item` is None when the catalogue is empty).

    :raises ValidationFailed: *item_code* is not a catalogue item.
    """
    items = catalogue.list_items()
    served = db.session.scalars(select(ProviderRegion.region_code).distinct()
                                .join(Provider, Provider.id == ProviderRegion.provider_id)
                                .where(Provider.status == "approved"))
    regions = sorted(set(served) | ({region_code} if region_code else set()))
    if item_code is None:
        chosen = items[0] if items else None  # an empty catalogue ranks nothing
    else:
        chosen = next((item for item in items if item.code == item_code), None)
        if chosen is None:
            raise ValidationFailed({"item_code": "Not a catalogue item."})
    rows = ranking.rankings(item_code=chosen.code, region_code=region_code) if chosen else []
    rated = sum(row["ratings_count"] for row in rows)
    prior_mean = (sum(row["mean_score"] * row["ratings_count"] for row in rows if row["ratings_count"]) / rated
                  if rated else None)
    weight = current_app.config["RANKING_PRIOR_WEIGHT"]
    example = None
    if prior_mean is not None:
        example = {"few": {"count": FEW_RATINGS[0], "mean": FEW_RATINGS[1] / FEW_RATINGS[0],
                           "score": bayesian_score(prior_mean=prior_mean, ratings_count=FEW_RATINGS[0],
                                                   score_sum=FEW_RATINGS[1])},
                   "many": {"count": MANY_RATINGS[0], "mean": MANY_RATINGS[1] / MANY_RATINGS[0],
                            "score": bayesian_score(prior_mean=prior_mean, ratings_count=MANY_RATINGS[0],
                                                    score_sum=MANY_RATINGS[1])}}
    return {"items": items, "regions": regions, "item": chosen, "region_code": region_code, "rows": rows,
            "ratings_count": rated, "prior_mean": prior_mean, "prior_weight": weight, "example": example}
