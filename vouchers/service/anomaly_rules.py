"""The market-integrity rules' queries (DESIGN.md "Market integrity"; codes, severities, parameters and
explanations in marketplace/programmes/integrity.py).

Each rule is a set-based query over one programme's completed redemptions (or ratings) of one local month,
through SQLAlchemy Core, so SQLite and PostgreSQL run the same statement; Python loops only over what a query
found (pairs, windows, providers), never over the month's redemptions. A rule returns Findings: the subject
(the unique key's last part: "recipient:12", "login:40", "provider:3", "provider:3:HC-MEAL", …), the evidence
the explanation is made from (times as local "MM-DD HH:MM" text, shares as whole percents) and the redemptions
a confirmed flag would hold.

Time arithmetic: a service's window is [delivered_at − duration, delivered_at], the duration being the
redemption's `duration_minutes`, else its catalogue item's `default_duration_minutes`, else
FALLBACK_DURATION_MINUTES. The two backends store instants differently, so two small functions compile per
backend: `epoch_seconds` (whole seconds since 1970, for exact comparisons: the rules are exact to the second)
and `shifted` (an instant moved by whole minutes, only ever a loose bound that lets a self-join walk the
(recipient_id | scanned_by, delivered_at) indexes over a bounded time range instead of every pair).
"""

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from statistics import median
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import BigInteger, Date, Integer, and_, case, cast, func, literal, literal_column, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from marketplace.catalogue.models import ServiceItem
from marketplace.db import UTCDateTime, db
from marketplace.programmes.integrity import FALLBACK_DURATION_MINUTES, RULES, parameters_for
from marketplace.programmes.models import Programme, ProgrammeItem
from marketplace.recipients.models import Recipient
from providers.models import Complaint, Provider, Rating
from vouchers.models import Redemption
from vouchers.service.issuance import period_bounds
from vouchers.service.settlement import month_end_instant, month_start_instant

# Redemptions named one by one in a flag's evidence (all of them are linked to the flag all the same).
EVIDENCE_SAMPLE = 20
# Complaints one login files about one provider count as a burst when this many fall within this many hours;
# they are added to the evidence of the provider's rating_pattern findings (never a flag of their own: a
# confirmed flag holds the provider's payment, and a burst of complaints is evidence against the complainer
# as much as against the provider).
COMPLAINT_BURST = 3
COMPLAINT_BURST_HOURS = 24
# Presence proven without the recipient's phone showing a live code.
TYPED = ("typed_code", "voucher_card")
# The consistency constants that make MAD and the mean absolute deviation estimate a standard deviation.
MAD_SCALE = 1.4826
MEAN_AD_SCALE = 1.2533


# --- time, per backend -------------------------------------------------------------------------------

class epoch_seconds(FunctionElement):  # noqa: N801 - reads as the SQL function it renders
    """SQL: whole seconds since 1970-01-01 UTC of an instant column."""

    type = BigInteger()
    name = "epoch_seconds"
    inherit_cache = True


@compiles(epoch_seconds, "postgresql")
def _epoch_seconds_postgresql(element, compiler, **kw):
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element, compiler, **kw):
    # Instants are stored as UTC text ("YYYY-MM-DD HH:MM:SS.ffffff", marketplace.db.UTCDateTime).
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"


class shifted(FunctionElement):  # noqa: N801 - reads as the SQL function it renders
    """SQL: an instant column moved by whole minutes, comparable with the column (a bound, to the millisecond)."""

    type = UTCDateTime()
    name = "shifted"
    inherit_cache = True

    def __init__(self, instant, minutes: int):
        super().__init__(instant, literal(f"{int(minutes):+d} minutes"))


@compiles(shifted, "postgresql")
def _shifted_postgresql(element, compiler, **kw):
    instant, offset = element.clauses.clauses
    return f"({compiler.process(instant, **kw)} + CAST({compiler.process(offset, **kw)} AS INTERVAL))"


@compiles(shifted, "sqlite")
def _shifted_sqlite(element, compiler, **kw):
    instant, offset = element.clauses.clauses
    return f"strftime('%Y-%m-%d %H:%M:%f', {compiler.process(instant, **kw)}, {compiler.process(offset, **kw)})"


# --- what a rule works on and returns -----------------------------------------------------------------

@dataclass(frozen=True)
class Month:
    """One programme and one local month: the scope of one detection."""

    programme_id: int
    period: str
    anomaly_parameters: dict | None
    start: datetime  # UTC instant the month's first local day begins
    end: datetime  # UTC instant its last local day ends
    first: date
    last: date
    zone: ZoneInfo

    @classmethod
    def of(cls, programme: Programme, period: str) -> "Month":
        """:raises ValidationFailed: *period* is not a month."""
        first, last = period_bounds(period)
        return cls(programme_id=programme.id, period=period, anomaly_parameters=programme.anomaly_parameters,
                   start=month_start_instant(period), end=month_end_instant(period), first=first, last=last,
                   zone=ZoneInfo(current_app.config["LOCAL_TIMEZONE"]))

    def parameters(self, rule: str) -> dict[str, int | float]:
        return parameters_for(self.anomaly_parameters, rule)

    def local(self, instant: datetime) -> str:
        """An instant as the evidence shows it: local "MM-DD HH:MM"."""
        return instant.astimezone(self.zone).strftime("%m-%d %H:%M")

    def day_start(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self.zone).astimezone(UTC)

    def seconds(self, instant):
        """SQL: whole seconds from the month's start to an instant column, as an INTEGER (a window frame's
        RANGE offsets are INTEGERs, and PostgreSQL wants the ordering column of the same type)."""
        return cast(epoch_seconds(instant) - int(self.start.timestamp()), Integer)


@dataclass
class Finding:
    """What one rule found about one subject: becomes one flag (unless that flag exists already)."""

    rule: str
    subject: str
    evidence: dict
    redemption_ids: list[int]
    provider_id: int | None = None
    recipient_id: int | None = None
    staff_user_id: int | None = None

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity


@dataclass
class _Group:
    """Rows found for one subject, gathered before they become a Finding."""

    redemptions: dict[int, datetime] = field(default_factory=dict)
    rows: list = field(default_factory=list)


def _in_month(redemption, month: Month):
    """SQL: *redemption* is a completed service of the programme delivered in the month."""
    return and_(redemption.programme_id == month.programme_id, redemption.status == "completed",
                redemption.delivered_at >= month.start, redemption.delivered_at < month.end)


def _minutes(redemption, item):
    """SQL: the service's duration in minutes (recorded, else the item's default, else the fallback)."""
    return func.coalesce(redemption.duration_minutes, item.default_duration_minutes, FALLBACK_DURATION_MINUTES)


def _sample(month: Month, redemptions: dict[int, datetime]) -> list[dict]:
    """The first EVIDENCE_SAMPLE redemptions in time, as the evidence names them."""
    ordered = sorted(redemptions.items(), key=lambda pair: (pair[1], pair[0]))[:EVIDENCE_SAMPLE]
    return [{"id": redemption_id, "at": month.local(at)} for redemption_id, at in ordered]


def _percent(part: int, whole: int) -> int:
    """part / whole as a whole percent, rounded half up."""
    return (200 * part + whole) // (2 * whole)


# --- overlapping_service -------------------------------------------------------------------------------

def overlapping_service(month: Month) -> list[Finding]:
    """One recipient served by two redemptions at different providers whose windows overlap (by more than
    grace_minutes); one scanning login serving two different recipients in overlapping windows.

    A self-join of the month's services in time: each service is paired only with those of the same recipient
    (or login) delivered within the longest window of the month, walked along the (recipient_id, delivered_at)
    and (scanned_by, delivered_at) indexes.
    """
    grace = month.parameters("overlapping_service")["grace_minutes"] * 60
    a, b = aliased(Redemption), aliased(Redemption)
    item_a, item_b = aliased(ServiceItem), aliased(ServiceItem)
    longest = db.session.scalar(select(func.max(_minutes(a, item_a))).select_from(a)
                                .join(item_a, item_a.code == a.item_code).where(_in_month(a, month)))
    if longest is None:
        return []
    bound = int(longest) + 1  # minutes; one more than any window, so that the bound never cuts a pair
    seconds_a, seconds_b = _minutes(a, item_a) * 60, _minutes(b, item_b) * 60
    at_a, at_b = epoch_seconds(a.delivered_at), epoch_seconds(b.delivered_at)
    overlap = and_(at_a - seconds_a + grace < at_b, at_b - seconds_b + grace < at_a,
                   seconds_a > grace, seconds_b > grace)
    near = and_(b.delivered_at >= shifted(a.delivered_at, -bound), b.delivered_at <= shifted(a.delivered_at, bound))
    findings = []
    for kind, same, different, key in (("recipient", b.recipient_id == a.recipient_id,
                                        b.provider_id != a.provider_id, a.recipient_id),
                                       ("login", b.scanned_by == a.scanned_by, b.recipient_id != a.recipient_id,
                                        a.scanned_by)):
        pairs = db.session.execute(
            select(key.label("key"), a.id, a.delivered_at, a.provider_id, b.id, b.delivered_at, b.provider_id)
            .select_from(a).join(item_a, item_a.code == a.item_code)
            .join(b, and_(same, near, b.id > a.id, different, _in_month(b, month)))
            .join(item_b, item_b.code == b.item_code)
            .where(_in_month(a, month), overlap)).all()
        groups: dict[int, _Group] = defaultdict(_Group)
        for subject, id_a, at_a_, provider_a, id_b, at_b_, provider_b in pairs:
            group = groups[subject]
            group.redemptions[id_a], group.redemptions[id_b] = at_a_, at_b_
            group.rows.append((min(at_a_, at_b_), provider_a, provider_b))
        for subject, group in groups.items():
            providers = sorted({p for _at, pa, pb in group.rows for p in (pa, pb)})
            evidence = {"kind": kind, "at": month.local(min(at for at, _pa, _pb in group.rows)),
                        "pairs": len(group.rows), "count": len(group.redemptions),
                        "redemptions": _sample(month, group.redemptions)}
            if kind == "recipient":
                evidence["provider_ids"] = providers
            findings.append(Finding(
                rule="overlapping_service", subject=f"{kind}:{subject}", evidence=evidence,
                redemption_ids=sorted(group.redemptions),
                provider_id=providers[0] if len(providers) == 1 else None,
                recipient_id=subject if kind == "recipient" else None,
                staff_user_id=subject if kind == "login" else None))
    return findings


# --- served_after_exit -----------------------------------------------------------------------------------

def _calendar(month: Month):
    """SQL: the month's local days, one row each (day, starts_at, ends_at), to tell a service's local date."""
    days = [month.first + timedelta(days=n) for n in range((month.last - month.first).days + 1)]
    return union_all(*[select(literal(day, Date()).label("day"),
                              literal(month.day_start(day), UTCDateTime()).label("starts_at"),
                              literal(month.day_start(day + timedelta(days=1)), UTCDateTime()).label("ends_at"))
                       for day in days]).subquery("calendar")


def served_after_exit(month: Month) -> list[Finding]:
    """Services delivered on a local date after the recipient's recorded death or move
    (`recipient.status_effective_on`): one finding per recipient and provider."""
    calendar = _calendar(month)
    exited = and_(Recipient.status.in_(("moved", "deceased")), Recipient.status_effective_on.is_not(None))
    rows = db.session.execute(
        select(Redemption.recipient_id, Redemption.provider_id, Redemption.id, Redemption.delivered_at,
               Recipient.status, Recipient.status_effective_on)
        .join(Recipient, Recipient.id == Redemption.recipient_id)
        .join(calendar, and_(calendar.c.starts_at <= Redemption.delivered_at,
                             Redemption.delivered_at < calendar.c.ends_at))
        # The few recipients who left first, then their services along (recipient_id, delivered_at).
        .where(Redemption.recipient_id.in_(select(Recipient.id).where(exited)), _in_month(Redemption, month),
               exited, calendar.c.day > Recipient.status_effective_on)).all()
    groups: dict[tuple[int, int], _Group] = defaultdict(_Group)
    for recipient_id, provider_id, redemption_id, delivered_at, status, effective_on in rows:
        group = groups[recipient_id, provider_id]
        group.redemptions[redemption_id] = delivered_at
        group.rows = [status, effective_on]
    findings = []
    for (recipient_id, provider_id), group in groups.items():
        status, effective_on = group.rows
        times = sorted(group.redemptions.values())
        findings.append(Finding(
            rule="served_after_exit", subject=f"recipient:{recipient_id}:provider:{provider_id}",
            evidence={"kind": status, "effective_on": effective_on.isoformat(), "count": len(times),
                      "first_at": month.local(times[0]), "last_at": month.local(times[-1]),
                      "redemptions": _sample(month, group.redemptions)},
            redemption_ids=sorted(group.redemptions), provider_id=provider_id, recipient_id=recipient_id))
    return findings


# --- staff_velocity ------------------------------------------------------------------------------------

def staff_velocity(month: Month) -> list[Finding]:
    """One scanning login's services in an hour need more minutes than the hour has: for each of the login's
    services at t, the durations of its services in [t, t + 60 min) add up to more than minutes_per_hour, and
    there are at least min_services of them. One finding per login, showing its fullest hour; every service
    of every such hour is linked.

    No self-join: two passes of window functions over the login's services in time order, whatever their
    number — a sliding frame of the next 3,599 seconds sums each hour, and one of the previous 3,599 seconds
    tells every service whether an hour that counts holds it.
    """
    parameters = month.parameters("staff_velocity")
    at = month.seconds(Redemption.delivered_at)
    hour = {"partition_by": Redemption.scanned_by, "order_by": at, "range_": (0, 3599)}
    hours = (select(Redemption.id, Redemption.scanned_by, Redemption.provider_id, Redemption.delivered_at,
                    at.label("at"), func.sum(_minutes(Redemption, ServiceItem)).over(**hour).label("hour_minutes"),
                    func.count().over(**hour).label("hour_count"))
             .join(ServiceItem, ServiceItem.code == Redemption.item_code).where(_in_month(Redemption, month))
             .subquery())
    counts = and_(hours.c.hour_minutes > parameters["minutes_per_hour"],
                  hours.c.hour_count >= parameters["min_services"])
    marked = select(hours, case((counts, 1), else_=0).label("starts")).subquery()
    held = (select(marked, func.max(marked.c.starts).over(partition_by=marked.c.scanned_by, order_by=marked.c.at,
                                                         range_=(-3599, 0)).label("held"))
            .subquery())
    rows = db.session.execute(select(held).where(held.c.held == 1)).all()
    groups: dict[int, _Group] = defaultdict(_Group)
    for row in rows:
        group = groups[row.scanned_by]
        group.redemptions[row.id] = row.delivered_at
        if row.starts:
            group.rows.append((row.delivered_at, row.id, int(row.hour_minutes), row.hour_count, row.provider_id))
    findings = []
    for login, group in groups.items():
        start, _start_id, hour_minutes, count, provider_id = min(group.rows, key=lambda hour: (-hour[2], hour[:2]))
        findings.append(Finding(
            rule="staff_velocity", subject=f"login:{login}",
            evidence={"hour_start": month.local(start), "count": count, "minutes": hour_minutes,
                      "minutes_per_hour": parameters["minutes_per_hour"], "hours": len(group.rows),
                      "redemptions": _sample(month, group.redemptions)},
            redemption_ids=sorted(group.redemptions), provider_id=provider_id, staff_user_id=login))
    return findings


# --- over_capacity -------------------------------------------------------------------------------------

def over_capacity(month: Month) -> list[Finding]:
    """A provider's services in the month (in this programme) above its declared monthly capacity plus
    tolerance_percent. The flag holds the services past the allowed number, in delivery order."""
    tolerance = month.parameters("over_capacity")["tolerance_percent"]
    counts = (select(Redemption.provider_id, func.count().label("services"))
              .where(_in_month(Redemption, month)).group_by(Redemption.provider_id).subquery())
    over = db.session.execute(
        select(counts.c.provider_id, counts.c.services, Provider.capacity)
        .join(Provider, Provider.id == counts.c.provider_id)
        .where(counts.c.services * 100 > Provider.capacity * (100 + tolerance))).all()
    if not over:
        return []
    ranked = (select(Redemption.id, Redemption.provider_id, Redemption.delivered_at,
                     func.row_number().over(partition_by=Redemption.provider_id,
                                            order_by=(Redemption.delivered_at, Redemption.id)).label("nth"))
              .where(_in_month(Redemption, month), Redemption.provider_id.in_([row.provider_id for row in over]))
              .subquery())
    excess = db.session.execute(
        select(ranked.c.provider_id, ranked.c.id, ranked.c.delivered_at)
        .join(Provider, Provider.id == ranked.c.provider_id)
        .where(ranked.c.nth * 100 > Provider.capacity * (100 + tolerance))).all()
    held: dict[int, dict[int, datetime]] = defaultdict(dict)
    for provider_id, redemption_id, delivered_at in excess:
        held[provider_id][redemption_id] = delivered_at
    findings = []
    for provider_id, services, capacity in over:
        allowed = math.floor(Fraction(capacity) * (100 + Fraction(tolerance)) / 100)
        findings.append(Finding(
            rule="over_capacity", subject=f"provider:{provider_id}",
            evidence={"count": services, "capacity": capacity, "tolerance_percent": tolerance, "allowed": allowed,
                      "excess": services - allowed, "redemptions": _sample(month, held[provider_id])},
            redemption_ids=sorted(held[provider_id]), provider_id=provider_id))
    return findings


# --- month_end_burst -----------------------------------------------------------------------------------

def robust_z(value: float, others: list[float]) -> float | None:
    """(value − median) / scale over *others*: scale = 1.4826 × MAD; when MAD is 0 (more than half of the
    others share one value), 1.2533 × the mean absolute deviation from the median; when that is 0 too (all
    the others equal), None: there is no spread to measure against, and the provider is not judged."""
    if not others:
        return None
    middle = median(others)
    deviations = [abs(other - middle) for other in others]
    scale = MAD_SCALE * median(deviations) or MEAN_AD_SCALE * sum(deviations) / len(deviations)
    return None if scale == 0 else (value - middle) / scale


def month_end_burst(month: Month) -> list[Finding]:
    """The share of a provider's month delivered in its last `last_days` local days, far above the other
    providers of the programme: robust_z of the share against the shares of the others (each with at least
    min_services services in the month, as this one) above z_threshold. The flag holds the burst's services."""
    parameters = month.parameters("month_end_burst")
    last_days = max(1, int(parameters["last_days"]))
    burst_start = month.day_start(max(month.first, month.last - timedelta(days=last_days - 1)))
    in_burst = Redemption.delivered_at >= burst_start
    shares = db.session.execute(
        select(Redemption.provider_id, func.count().label("services"),
               func.sum(case((in_burst, 1), else_=0)).label("burst"))
        .where(_in_month(Redemption, month)).group_by(Redemption.provider_id)
        .having(func.count() >= parameters["min_services"])).all()
    share_of = {row.provider_id: (int(row.burst or 0), row.services) for row in shares}
    flagged = {}
    for provider_id, (burst, services) in share_of.items():
        others = [b / n for other, (b, n) in share_of.items() if other != provider_id]
        z = robust_z(burst / services, others)
        if z is not None and z > parameters["z_threshold"]:
            flagged[provider_id] = (burst, services, z, median(others))
    if not flagged:
        return []
    held: dict[int, dict[int, datetime]] = defaultdict(dict)
    for provider_id, redemption_id, delivered_at in db.session.execute(
            select(Redemption.provider_id, Redemption.id, Redemption.delivered_at)
            .where(_in_month(Redemption, month), in_burst, Redemption.provider_id.in_(list(flagged)))):
        held[provider_id][redemption_id] = delivered_at
    return [Finding(
        rule="month_end_burst", subject=f"provider:{provider_id}",
        evidence={"last_days": last_days, "share_percent": _percent(burst, services),
                  "median_percent": round(100 * middle), "z": round(z, 1), "z_threshold": parameters["z_threshold"],
                  "count": services, "burst_count": burst, "providers_compared": len(share_of) - 1,
                  "redemptions": _sample(month, held[provider_id])},
        redemption_ids=sorted(held[provider_id]), provider_id=provider_id)
        for provider_id, (burst, services, z, middle) in flagged.items()]


# --- typed_code_share ----------------------------------------------------------------------------------

def typed_code_share(month: Month) -> list[Finding]:
    """The share of a provider's services proven by a typed short code or a voucher card instead of a live
    presence QR above max_share_percent, with at least min_services services. The flag holds those services."""
    parameters = month.parameters("typed_code_share")
    typed = Redemption.presence.in_(TYPED)
    counted = (select(Redemption.provider_id, func.count().label("services"),
                      func.sum(case((typed, 1), else_=0)).label("typed"),
                      func.sum(case((Redemption.presence == "voucher_card", 1), else_=0)).label("cards"))
               .where(_in_month(Redemption, month)).group_by(Redemption.provider_id)
               .having(func.count() >= parameters["min_services"]).subquery())
    over = db.session.execute(select(counted).where(
        counted.c.typed * 100 > counted.c.services * parameters["max_share_percent"])).all()
    if not over:
        return []
    held: dict[int, dict[int, datetime]] = defaultdict(dict)
    for provider_id, redemption_id, delivered_at in db.session.execute(
            select(Redemption.provider_id, Redemption.id, Redemption.delivered_at)
            .where(_in_month(Redemption, month), typed, Redemption.provider_id.in_([row.provider_id for row in over]))):
        held[provider_id][redemption_id] = delivered_at
    return [Finding(
        rule="typed_code_share", subject=f"provider:{row.provider_id}",
        evidence={"share_percent": _percent(int(row.typed), row.services), "count": row.services,
                  "typed": int(row.typed), "voucher_card": int(row.cards),
                  "max_share_percent": parameters["max_share_percent"],
                  "redemptions": _sample(month, held[row.provider_id])},
        redemption_ids=sorted(held[row.provider_id]), provider_id=row.provider_id) for row in over]


# --- short_duration ------------------------------------------------------------------------------------

def short_duration(month: Month) -> list[Finding]:
    """Services recorded as shorter than the programme item's min_duration_minutes: one finding per provider
    and item, holding those services."""
    rows = db.session.execute(
        select(Redemption.provider_id, Redemption.item_code, Redemption.id, Redemption.delivered_at,
               Redemption.duration_minutes, ProgrammeItem.min_duration_minutes)
        .join(ProgrammeItem, and_(ProgrammeItem.programme_id == Redemption.programme_id,
                                  ProgrammeItem.item_code == Redemption.item_code))
        .where(_in_month(Redemption, month), ProgrammeItem.min_duration_minutes.is_not(None),
               Redemption.duration_minutes < ProgrammeItem.min_duration_minutes)).all()
    groups: dict[tuple[int, str], _Group] = defaultdict(_Group)
    for provider_id, item_code, redemption_id, delivered_at, minutes, minimum in rows:
        group = groups[provider_id, item_code]
        group.redemptions[redemption_id] = delivered_at
        group.rows.append((minutes, minimum))
    return [Finding(
        rule="short_duration", subject=f"provider:{provider_id}:{item_code}",
        evidence={"item_code": item_code, "count": len(group.redemptions), "min_minutes": group.rows[0][1],
                  "shortest": min(minutes for minutes, _minimum in group.rows),
                  "redemptions": _sample(month, group.redemptions)},
        redemption_ids=sorted(group.redemptions), provider_id=provider_id)
        for (provider_id, item_code), group in groups.items()]


# --- rating_pattern ------------------------------------------------------------------------------------

def _ratings_in_month(month: Month):
    return and_(Rating.programme_id == month.programme_id, Rating.created_at >= month.start,
                Rating.created_at < month.end)


def rating_pattern(month: Month) -> list[Finding]:
    """A provider's ratings of the month (recorded in it, in this programme) follow a pattern:

    - `phone`: the phone follow-ups one admin recorded are more than max_phone_share_percent of the provider's
      ratings (at least min_ratings of them); the flag holds the redemptions that admin rated;
    - `run`: run_length or more consecutive ratings of the provider (in the order recorded) give the same
      score within run_minutes; the flag holds the redemptions of every such run.

    Bursts of complaints by one login about the provider (COMPLAINT_BURST within COMPLAINT_BURST_HOURS in
    the month) are added to the evidence of both.
    """
    parameters = month.parameters("rating_pattern")
    findings = _phone_followups(month, parameters) + _identical_runs(month, parameters)
    bursts = _complaint_bursts(month, {finding.provider_id for finding in findings})
    for finding in findings:
        if bursts.get(finding.provider_id):
            finding.evidence["complaint_bursts"] = bursts[finding.provider_id]
    return findings


def _phone_followups(month: Month, parameters: dict) -> list[Finding]:
    totals = (select(Rating.provider_id, func.count().label("ratings")).where(_ratings_in_month(month))
              .group_by(Rating.provider_id).having(func.count() >= parameters["min_ratings"]).subquery())
    by_admin = (select(Rating.provider_id, Rating.rated_by, func.count().label("phone"))
                .where(_ratings_in_month(month), Rating.source == "phone_followup")
                .group_by(Rating.provider_id, Rating.rated_by).subquery())
    over = db.session.execute(
        select(by_admin.c.provider_id, by_admin.c.rated_by, by_admin.c.phone, totals.c.ratings)
        .join(totals, totals.c.provider_id == by_admin.c.provider_id)
        .where(by_admin.c.phone * 100 > totals.c.ratings * parameters["max_phone_share_percent"])
        .order_by(by_admin.c.provider_id, by_admin.c.phone.desc(), by_admin.c.rated_by)).all()
    if not over:
        return []
    admins: dict[int, list] = defaultdict(list)
    for row in over:
        admins[row.provider_id].append(row)
    held: dict[int, dict[int, datetime]] = defaultdict(dict)
    pairs = {(row.provider_id, row.rated_by) for row in over}
    for provider_id, rated_by, redemption_id, created_at in db.session.execute(
            select(Rating.provider_id, Rating.rated_by, Rating.redemption_id, Rating.created_at)
            .where(_ratings_in_month(month), Rating.source == "phone_followup",
                   Rating.provider_id.in_(list(admins)), Rating.rated_by.in_(sorted({admin for _p, admin in pairs})))):
        if (provider_id, rated_by) in pairs:
            held[provider_id][redemption_id] = created_at
    findings = []
    for provider_id, rows in admins.items():
        top = rows[0]
        findings.append(Finding(
            rule="rating_pattern", subject=f"provider:{provider_id}:phone",
            evidence={"kind": "phone", "share_percent": _percent(top.phone, top.ratings), "ratings": top.ratings,
                      "phone": top.phone, "max_phone_share_percent": parameters["max_phone_share_percent"],
                      "admins": [{"login_id": row.rated_by, "phone": row.phone} for row in rows],
                      "redemptions": _sample(month, held[provider_id])},
            redemption_ids=sorted(held[provider_id]), provider_id=provider_id, staff_user_id=top.rated_by))
    return findings


def _identical_runs(month: Month, parameters: dict) -> list[Finding]:
    run_length = max(2, int(parameters["run_length"]))
    in_order = (Rating.created_at, Rating.id)
    position = func.row_number().over(partition_by=Rating.provider_id, order_by=in_order)
    rated = (select(Rating.provider_id, Rating.redemption_id, Rating.score, Rating.created_at,
                    epoch_seconds(Rating.created_at).label("at"), position.label("position"),
                    # Gaps and islands: consecutive ratings with one score share (score, island).
                    (position - func.row_number().over(partition_by=(Rating.provider_id, Rating.score),
                                                       order_by=in_order)).label("island"))
             .where(_ratings_in_month(month)).cte("rated"))
    ahead = (select(rated.c.provider_id, rated.c.position, rated.c.at,
                    func.lead(rated.c.at, literal_column(str(run_length - 1))).over(
                        partition_by=(rated.c.provider_id, rated.c.score, rated.c.island),
                        order_by=rated.c.position).label("last_at"))
             .subquery())
    starts = (select(ahead.c.provider_id, ahead.c.position)
              .where(ahead.c.last_at.is_not(None), ahead.c.last_at - ahead.c.at <= parameters["run_minutes"] * 60)
              .subquery())
    members = db.session.execute(
        select(rated.c.provider_id, rated.c.position, rated.c.redemption_id, rated.c.score, rated.c.created_at)
        .join(starts, and_(starts.c.provider_id == rated.c.provider_id, rated.c.position >= starts.c.position,
                           rated.c.position < starts.c.position + run_length))
        .distinct().order_by(rated.c.provider_id, rated.c.position)).all()
    by_provider: dict[int, list] = defaultdict(list)
    for row in members:
        by_provider[row.provider_id].append(row)
    findings = []
    for provider_id, rows in by_provider.items():
        runs = [[rows[0]]]
        for row in rows[1:]:
            if row.position == runs[-1][-1].position + 1 and row.score == runs[-1][-1].score:
                runs[-1].append(row)
            else:
                runs.append([row])
        first = runs[0]
        span = (first[-1].created_at - first[0].created_at).total_seconds()
        findings.append(Finding(
            rule="rating_pattern", subject=f"provider:{provider_id}:run",
            evidence={"kind": "run", "run_length": len(first), "minutes": max(1, math.ceil(span / 60)),
                      "score": first[0].score, "at": month.local(first[0].created_at), "runs": len(runs),
                      "run_minutes": parameters["run_minutes"],
                      "redemptions": _sample(month, {row.redemption_id: row.created_at for row in rows})},
            redemption_ids=sorted({row.redemption_id for row in rows}), provider_id=provider_id))
    return findings


def _complaint_bursts(month: Month, provider_ids: set[int]) -> dict[int, list[dict]]:
    """Per provider: the logins that filed COMPLAINT_BURST complaints about it within COMPLAINT_BURST_HOURS
    in the month, with how many they filed in the month and when their first burst began."""
    if not provider_ids:
        return {}
    about = and_(Complaint.provider_id.in_(list(provider_ids)), Complaint.created_at >= month.start,
                 Complaint.created_at < month.end)
    filed = (select(Complaint.provider_id, Complaint.created_by, Complaint.created_at,
                    epoch_seconds(Complaint.created_at).label("at"),
                    func.lead(epoch_seconds(Complaint.created_at), literal_column(str(COMPLAINT_BURST - 1))).over(
                        partition_by=(Complaint.provider_id, Complaint.created_by),
                        order_by=(Complaint.created_at, Complaint.id)).label("later_at"),
                    func.count().over(partition_by=(Complaint.provider_id, Complaint.created_by)).label("filed"))
             .where(about).subquery())
    rows = db.session.execute(
        select(filed.c.provider_id, filed.c.created_by, func.min(filed.c.created_at), func.max(filed.c.filed))
        .where(filed.c.later_at.is_not(None), filed.c.later_at - filed.c.at <= COMPLAINT_BURST_HOURS * 3600)
        .group_by(filed.c.provider_id, filed.c.created_by)
        .order_by(filed.c.provider_id, filed.c.created_by)).all()
    bursts: dict[int, list[dict]] = defaultdict(list)
    for provider_id, login, first_at, complaints in rows:
        bursts[provider_id].append({"login_id": login, "complaints": complaints, "from": month.local(first_at)})
    return bursts


# Each rule's query, in the order of the rule table (tests/test_anomaly_rules.py checks that none is missing).
QUERIES: dict[str, Callable[[Month], list[Finding]]] = {
    "overlapping_service": overlapping_service,
    "served_after_exit": served_after_exit,
    "staff_velocity": staff_velocity,
    "over_capacity": over_capacity,
    "month_end_burst": month_end_burst,
    "typed_code_share": typed_code_share,
    "short_duration": short_duration,
    "rating_pattern": rating_pattern,
}
