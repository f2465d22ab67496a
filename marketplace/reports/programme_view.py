"""The staff programme page's read model (`/staff/programmes/<id>`): the API's dashboard, then what the
page adds around it — past budget amendments, enrolled providers, pending applications, how many
recipients chose each provider per item, last month's switching per provider, and what closing would revoke and
release. Read-only.

Every query is set-based (no query per row): a county's dashboard stays within the console's budget.
The choice counts group a county's choices (about 100,000 rows) and move slowly, so they are recounted
at most every CHOICE_COUNTS_SECONDS per programme and worker and say when they were counted.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue
from marketplace.db import db, local_date
from marketplace.programmes import ledger
from marketplace.programmes.models import BudgetAmendment, Programme
from marketplace.reports import service as report_service
from marketplace.reports.freshness import remembered
from providers.models import ProgrammeApplication, Provider
from providers.service import applications, enrolment
from vouchers.models import Choice, Voucher
from vouchers.service import anomaly_view, switching

AMENDMENTS_SHOWN = 50
APPLICATIONS_SHOWN = 50
RECENT_DAYS_SHOWN = 60  # the "by day" chart and table: the last two months of service
CHOICE_COUNTS_SECONDS = 300


@dataclass(frozen=True)
class Amendment:
    amount_fen: int
    reason: str
    created_at: datetime
    created_by: str | None  # the admin's username (None: made by a script or the demo)


@dataclass(frozen=True)
class PendingApplication:
    application: ProgrammeApplication
    provider_name: str
    provider_kind: str


@dataclass(frozen=True)
class ChoiceCount:
    provider_id: int
    provider_name: str
    recipients: int
    percent: float  # of the recipients who chose someone for the item


@dataclass(frozen=True)
class ItemChoices:
    item_code: str
    item_name: str
    recipients: int
    providers: list[ChoiceCount]


@dataclass(frozen=True)
class SwitchingLine:
    """One provider's switching last month, as the dashboard's table shows it."""

    provider_id: int
    provider_name: str
    month: switching.ProviderMonth
    top_reasons: list[tuple[str, int]]  # (reason, switches away), most given first


@dataclass(frozen=True)
class Burn:
    """Spending so far and the straight line of the recent rate: the burn chart and its table."""

    spent_fen: int               # face value of every completed redemption
    unspent_fen: int             # available + committed
    rate_fen_per_day: int
    window_days: int
    exhaustion_date: date | None
    today: date


@dataclass(frozen=True)
class ClosePreview:
    """What closing does now: the open (issued) vouchers revoked, their face value released to the budget."""

    vouchers: int
    released_fen: int


def amendments(programme_id: int) -> list[Amendment]:
    """The programme's budget amendments, newest first, with who made them."""
    rows = db.session.execute(
        select(BudgetAmendment, User.username).outerjoin(User, User.id == BudgetAmendment.created_by)
        .where(BudgetAmendment.programme_id == programme_id)
        .order_by(BudgetAmendment.id.desc()).limit(AMENDMENTS_SHOWN)).all()
    return [Amendment(amount_fen=row.amount_fen, reason=row.reason, created_at=row.created_at, created_by=username)
            for row, username in rows]


def pending_applications(programme: Programme, *, actor) -> list[PendingApplication]:
    """The programme's applications awaiting a decision, oldest first (the queue's order), with the providers."""
    listed = applications.list_applications(actor=actor, page=1, per_page=APPLICATIONS_SHOWN,
                                            programme_id=programme.id, status="pending")["items"]
    providers = _providers({row.provider_id for row in listed})
    return [PendingApplication(application=row, provider_name=providers[row.provider_id].name,
                               provider_kind=providers[row.provider_id].kind) for row in reversed(listed)]


def _providers(ids: set[int]) -> dict[int, Provider]:
    if not ids:
        return {}
    return {row.id: row for row in db.session.scalars(select(Provider).where(Provider.id.in_(ids)))}


def _count_choices(programme_id: int) -> list[tuple[str, int, int]]:
    return [(code, pid, int(n)) for code, pid, n in db.session.execute(
        select(Choice.item_code, Choice.provider_id, func.count()).where(Choice.programme_id == programme_id)
        .group_by(Choice.item_code, Choice.provider_id))]


def choice_counts(programme: Programme, *, now: datetime) -> tuple[list[ItemChoices], datetime]:
    """Per item of the programme: how many recipients chose each provider (most chosen first), as of when."""
    counted, counted_at = remembered("choice_counts", (programme.id, programme.created_at), now=now,
                                     seconds=CHOICE_COUNTS_SECONDS, compute=lambda: _count_choices(programme.id))
    providers = _providers({pid for _code, pid, _n in counted})
    names = {code: item.name for code, item in
             catalogue.items_by_code([item.item_code for item in programme.items]).items()}
    result = []
    for item in programme.items:
        rows = sorted(((pid, n) for code, pid, n in counted if code == item.item_code),
                      key=lambda row: (-row[1], providers[row[0]].name))
        total = sum(n for _pid, n in rows)
        result.append(ItemChoices(
            item_code=item.item_code, item_name=names.get(item.item_code, item.item_code), recipients=total,
            providers=[ChoiceCount(provider_id=pid, provider_name=providers[pid].name, recipients=n,
                                   percent=round(100 * n / total, 1)) for pid, n in rows]))
    return result, counted_at


def switching_lines(programme: Programme, *, now: datetime) -> tuple[str, list[SwitchingLine]]:
    """Last month's switching per provider of the programme (vouchers.service.switching: exact, remembered until
    the next choice), the providers that lost the most first; and the month."""
    period = switching.months_before(now, 1)[0]
    months = switching.programme_switching(programme, period=period)
    providers = _providers({month.provider_id for month in months})
    lines = [SwitchingLine(provider_id=month.provider_id, provider_name=providers[month.provider_id].name, month=month,
                           top_reasons=sorted(month.reasons.items(), key=lambda pair: (-pair[1], pair[0]))[
                               :switching.TOP_REASONS]) for month in months]
    lines.sort(key=lambda line: (-line.month.lost, -(line.month.churn_rate or 0), -line.month.gained,
                                 line.provider_name))
    return period, lines


def close_preview(programme_id: int) -> ClosePreview:
    """What closing would do now (programmes.service.close, then the vouchers domain's receiver).

    The count reads only the voucher index (programme, status); the money is the ledger's `committed`, which
    reconciliation holds equal to the face value of the issued vouchers (committed_matches_issued_vouchers),
    so a county's half a million vouchers are not summed row by row.
    """
    count = db.session.scalar(select(func.count()).select_from(Voucher)
                              .where(Voucher.programme_id == programme_id, Voucher.status == "issued"))
    return ClosePreview(vouchers=int(count), released_fen=ledger.balances(programme_id).committed_fen)


def programme_page(programme: Programme, *, actor, now: datetime) -> dict:
    """Everything the programme page shows, for an admin in scope or an auditor (the caller checked scope)."""
    breakdown, counted_at = report_service.remembered_breakdown(programme, now=now)
    board = report_service.dashboard(programme, now=now, breakdown=breakdown,
                                     recent_fen=report_service.remembered_recent_spending(programme, now=now))
    balances = board["ledger"]
    by_day = board["redemptions_by_day"]
    spent = sum(row["face_value_fen"] for row in by_day)
    burn = Burn(spent_fen=spent, unspent_fen=balances.available_fen + balances.committed_fen,
                rate_fen_per_day=board["burn_rate_fen_per_day"], window_days=board["burn_window_days"],
                exhaustion_date=board["projected_exhaustion_date"], today=local_date(now))
    since = burn.today - timedelta(days=RECENT_DAYS_SHOWN - 1)
    recent_days = [{**row, "day": date.fromisoformat(row["date"])} for row in by_day
                   if date.fromisoformat(row["date"]) >= since]
    items = {code: item.name for code, item in
             catalogue.items_by_code([row["item_code"] for row in board["redemptions_by_item"]]).items()}
    choices, choices_counted_at = choice_counts(programme, now=now)
    switching_period, switching_rows = switching_lines(programme, now=now)
    return {
        "programme": programme,
        "board": board,
        "burn": burn,
        "runs_out_early": burn.exhaustion_date is not None and burn.exhaustion_date < programme.ends_on,
        "cumulative": _cumulative(by_day),
        "recent_days": recent_days,
        "recent_since": since,
        "recent_days_shown": RECENT_DAYS_SHOWN,
        "item_names": items,
        "amendments": amendments(programme.id),
        "enrolled": enrolment.programme_providers(programme=programme, actor=actor),
        "applications": pending_applications(programme, actor=actor),
        "choices": choices,
        "anomalies_open": anomaly_view.open_counts(actor=actor, programme_id=programme.id),
        "choices_counted_at": choices_counted_at,
        "breakdown_counted_at": counted_at,
        "switching_period": switching_period,
        "switching": switching_rows,
        "switching_any": any(line.month.gained or line.month.lost for line in switching_rows),
    }


def _cumulative(by_day: list[dict]) -> list[tuple[date, int]]:
    """Face value spent up to the end of each day with services (the burn chart's solid line)."""
    total, points = 0, []
    for row in by_day:
        total += row["face_value_fen"]
        points.append((date.fromisoformat(row["date"]), total))
    return points


@dataclass(frozen=True)
class ApplicationDetail:
    application: ProgrammeApplication
    provider: Provider
    item_names: list[str]  # the provider's items that the programme buys
    decided_by: str | None


def application_detail(application: ProgrammeApplication) -> ApplicationDetail:
    """An application with its provider and what of the programme the provider would serve."""
    provider = db.session.get(Provider, application.provider_id)
    programme = db.session.get(Programme, application.programme_id)
    common = [item.item_code for item in programme.items if item.item_code in set(provider.item_codes)]
    names = catalogue.items_by_code(common)
    decided_by = (db.session.scalar(select(User.username).where(User.id == application.decided_by))
                  if application.decided_by else None)
    return ApplicationDetail(application=application, provider=provider,
                             item_names=[names[code].name for code in common if code in names], decided_by=decided_by)
