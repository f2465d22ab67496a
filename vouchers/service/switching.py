"""Switching, the market's signal (DESIGN.md "Market integrity"): who recipients leave and join, read from the
choice history (`choice_event`: every first choice and every switch, with the reason the recipient gave).

Per provider and month (a `YYYY-MM` local month, from its first local midnight S to the next month's E):

- `recipients_start`: distinct recipients for whom the provider was the chosen one of some (programme,) item at S,
  i.e. the latest choice event of that recipient, programme and item before S went to the provider. A recipient
  who chose it for two items counts once.
- `gained`: distinct recipients who switched to the provider from another provider in [S, E) (a first choice is
  not a switch, nor is choosing the same provider again).
- `lost`: distinct recipients who switched away from the provider to another one in [S, E).
- `churn_rate = lost / recipients_start` (4 decimals), null when recipients_start is 0. A recipient gained and
  lost within the same month counts as lost without being at the start, so the rate can (rarely) exceed 1.
- `reasons`: the switches away in [S, E) counted by the reason given (`SWITCH_REASONS`); a switch without a
  reason is counted in `switches_away` only.

`switch_away_rate` (rankings): of the distinct recipients who ever chose the provider for the item (in the
programme, when the ranking names one), the share who later switched away from it, over the whole history,
like the ratings and complaints beside it; null below MIN_PUBLIC_GROUP recipients, because the rankings are
public.

Public figures (the portal) are aggregates per item and for the whole programme, never per provider or
person, and any group of fewer than MIN_PUBLIC_GROUP distinct recipients is hidden (k-anonymity).

Every figure is a handful of set-based statements over `choice_event` and `choice`, the same SQL on SQLite
and PostgreSQL (no loop over events), remembered per worker until the next choice is made (`remembered`: the
history only grows, so that is exact). Read-only.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

from flask import current_app
from sqlalchemy import (
    and_,
    bindparam,
    case,
    distinct,
    func,
    literal,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import aliased

from marketplace.db import db, local_date
from marketplace.programmes.models import Programme
from providers.models import Enrolment, Provider
from vouchers.models import SWITCH_REASONS, Choice, ChoiceEvent
from vouchers.service.issuance import period_bounds
from vouchers.service.settlement import month_end_instant, month_start_instant

# k-anonymity of every public switching figure: a group of fewer distinct recipients is not shown.
MIN_PUBLIC_GROUP = 5
TOP_REASONS = 3  # the public page names this many reasons per item, most given first


@dataclass(frozen=True)
class ProviderMonth:
    """One provider's switching in one month (see the module's definitions)."""

    provider_id: int
    period: str
    recipients_start: int = 0
    gained: int = 0
    lost: int = 0
    switches_away: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # only the reasons given, each at least once

    @property
    def churn_rate(self) -> float | None:
        return round(self.lost / self.recipients_start, 4) if self.recipients_start else None

    def as_dict(self) -> dict:
        return {"provider_id": self.provider_id, "period": self.period, "recipients_start": self.recipients_start,
                "gained": self.gained, "lost": self.lost, "churn_rate": self.churn_rate,
                "switches_away": self.switches_away, "reasons": dict(self.reasons)}


def remembered(name: str, key, compute):
    """*compute()*, remembered per worker until the next choice is made anywhere.

    The choice history only grows (an event is never changed or deleted), so a figure read from it stays true
    until a new event arrives: the value is kept with the newest event (its id and instant) and recomputed when
    that changes. Exact, never stale, and a page read often (a ranking, a dashboard) groups the history once
    per change rather than on every call.
    """
    newest = db.session.execute(select(ChoiceEvent.id, ChoiceEvent.chosen_at)
                                .order_by(ChoiceEvent.id.desc()).limit(1)).first()
    newest = tuple(newest) if newest is not None else None
    kept = current_app.extensions.setdefault(f"switching:{name}", {})
    found = kept.get(key)
    if found is not None and found[0] == newest:
        return found[1]
    value = compute()
    kept[key] = (newest, value)
    return value


def _switch():
    """SQL: the ChoiceEvent row replaced one provider by another (not a first choice, not the same again)."""
    return and_(ChoiceEvent.from_provider_id.is_not(None), ChoiceEvent.from_provider_id != ChoiceEvent.to_provider_id)


def monthly_switching(*, periods: Sequence[str], programme_id: int | None = None,
                      provider_id: int | None = None) -> dict[tuple[str, int], ProviderMonth]:
    """Each provider's switching in each of *periods*, keyed (period, provider_id); only providers with a
    figure other than zero appear. Scoped to one programme and one provider when given (else every
    programme: a recipient is then counted once across them).

    :raises ValidationFailed: a period that is not a month.
    """
    periods = sorted(set(periods))
    if not periods:
        return {}
    for period in periods:
        period_bounds(period)
    bounds = {period: (month_start_instant(period), month_end_instant(period)) for period in periods}
    scope, held_now = [], []
    if programme_id is not None:
        scope.append(ChoiceEvent.programme_id == programme_id)
        held_now.append(Choice.programme_id == programme_id)
    if provider_id is not None:  # only the history of the recipients who ever chose it (the recipient index)
        scope.append(ChoiceEvent.recipient_id.in_(
            select(ChoiceEvent.recipient_id).where(*scope, ChoiceEvent.to_provider_id == provider_id)))
        held_now.append(Choice.provider_id == provider_id)
    figures: dict[tuple[str, int], dict] = {}

    def add(period: str, pid: int, **values) -> None:
        figures.setdefault((period, pid), {}).update(values)

    for period, (start, _end) in bounds.items():
        for pid, count in _recipients_at(start, scope, held_now, provider_id):
            add(period, pid, recipients_start=int(count))

    bucket = case(*((and_(ChoiceEvent.chosen_at >= start, ChoiceEvent.chosen_at < end), literal(period))
                    for period, (start, end) in bounds.items()), else_=None).label("period")
    in_window = [*scope, _switch(), ChoiceEvent.chosen_at >= bounds[periods[0]][0],
                 ChoiceEvent.chosen_at < bounds[periods[-1]][1]]
    gained = select(bucket, ChoiceEvent.to_provider_id, func.count(distinct(ChoiceEvent.recipient_id))).where(
        *in_window, *([ChoiceEvent.to_provider_id == provider_id] if provider_id is not None else []))
    for period, pid, count in db.session.execute(gained.group_by(bucket, ChoiceEvent.to_provider_id)):
        if period is not None:
            add(period, pid, gained=int(count))
    lost = select(bucket, ChoiceEvent.from_provider_id, func.count(distinct(ChoiceEvent.recipient_id)), func.count(),
                  *(func.count().filter(ChoiceEvent.switch_reason == reason) for reason in SWITCH_REASONS)).where(
        *in_window, *([ChoiceEvent.from_provider_id == provider_id] if provider_id is not None else []))
    for period, pid, count, switches, *by_reason in db.session.execute(
            lost.group_by(bucket, ChoiceEvent.from_provider_id)):
        if period is not None:
            add(period, pid, lost=int(count), switches_away=int(switches),
                reasons={reason: int(n) for reason, n in zip(SWITCH_REASONS, by_reason, strict=True) if n})
    return {(period, pid): ProviderMonth(provider_id=pid, period=period, **values)
            for (period, pid), values in sorted(figures.items())}


def _recipients_at(start: datetime, scope: list, held_now: list, provider_id: int | None) -> list[tuple[int, int]]:
    """(provider_id, distinct recipients) holding the provider's choice for some item at the instant *start* (S).

    Read backwards from now, which touches only the history since S: a service (recipient, programme, item)
    chosen last before S still has the choice it has now (`choice`); one chosen again since S had, at S, the
    provider its first event since S replaced (`from_provider_id`; none when that was its first choice).
    Events of one service are made one at a time (set_choice holds the choice's row), each later than the last.
    """
    service = (ChoiceEvent.recipient_id, ChoiceEvent.programme_id, ChoiceEvent.item_code)
    first_since = select(func.min(ChoiceEvent.id)).where(*scope, ChoiceEvent.chosen_at >= start).group_by(*service)
    replaced = aliased(ChoiceEvent)
    then = select(replaced.recipient_id, replaced.from_provider_id.label("provider_id")).where(
        replaced.id.in_(first_since), replaced.from_provider_id.is_not(None))
    if provider_id is not None:
        then = then.where(replaced.from_provider_id == provider_id)
    unchanged = select(Choice.recipient_id, Choice.provider_id.label("provider_id")).where(
        *held_now, Choice.chosen_at < start)
    held = union_all(then, unchanged).subquery()
    return db.session.execute(
        select(held.c.provider_id, func.count(distinct(held.c.recipient_id))).group_by(held.c.provider_id)).all()


def programme_switching(programme: Programme, *, period: str) -> list[ProviderMonth]:
    """GET /programmes/{id}/switching: every provider enrolled in the programme, and any other with a figure
    in *period* (one that has left it, say), by provider id. :raises ValidationFailed: not a month."""
    found = remembered("programme", (programme.id, programme.created_at, period),
                       lambda: monthly_switching(periods=[period], programme_id=programme.id))
    enrolled = db.session.scalars(select(Enrolment.provider_id).where(Enrolment.programme_id == programme.id))
    providers = sorted(set(enrolled) | {pid for _period, pid in found})
    return [found.get((period, pid)) or ProviderMonth(provider_id=pid, period=period) for pid in providers]


def switching_report(programme: Programme, *, period: str | None, now: datetime) -> dict:
    """The answer of GET /programmes/{id}/switching: *period* (default: last month) per provider.

    :raises ValidationFailed: not a month.
    """
    period = period or months_before(now, 1)[0]
    return {"programme_id": programme.id, "period": period,
            "items": [month.as_dict() for month in programme_switching(programme, period=period)]}


def provider_history(*, provider_id: int, periods: Sequence[str]) -> list[ProviderMonth]:
    """One provider's switching across all its programmes, month by month (oldest first)."""
    registered = db.session.scalar(select(Provider.created_at).where(Provider.id == provider_id))
    found = remembered("provider", (provider_id, registered, tuple(sorted(set(periods)))),
                       lambda: monthly_switching(periods=periods, provider_id=provider_id))
    return [found.get((period, provider_id)) or ProviderMonth(provider_id=provider_id, period=period)
            for period in sorted(set(periods))]


def months_before(now: datetime, count: int) -> list[str]:
    """The *count* whole local months before the one *now* falls in, oldest first (`YYYY-MM`)."""
    first = local_date(now).replace(day=1)
    periods = []
    for _ in range(count):
        first = (first - timedelta(days=1)).replace(day=1)
        periods.append(f"{first:%Y-%m}")
    return periods[::-1]


# --- rankings ------------------------------------------------------------------------------------------

def switch_away_rates(*, item_code: str, programme_id: int | None = None) -> dict[int, float | None]:
    """{provider_id: switch_away_rate} for the item (see the module's definition); remembered until the next
    choice (a ranking is a public page, and every recipient's choosing page)."""
    parameters = {"item_code": item_code, **({"programme_id": programme_id} if programme_id is not None else {})}

    def compute() -> dict[int, float | None]:
        return {pid: round(int(gone) / int(chosen), 4) if chosen >= MIN_PUBLIC_GROUP else None
                for pid, chosen, gone in db.session.execute(_rates_statement(programme_id is not None), parameters)}

    return remembered("switch_away_rates", (item_code, programme_id), compute)


@cache
def _rates_statement(in_programme: bool):
    """The rates' statement, built once per shape: per provider, distinct recipients who chose it for the item and
    distinct recipients who switched away from it (bound: item_code, and programme_id when *in_programme*)."""
    scope = [ChoiceEvent.item_code == bindparam("item_code")]
    if in_programme:
        scope.append(ChoiceEvent.programme_id == bindparam("programme_id"))
    chose = select(ChoiceEvent.to_provider_id.label("provider_id"), ChoiceEvent.recipient_id,
                   literal_column("0").label("left_it")).where(*scope)
    left = select(ChoiceEvent.from_provider_id.label("provider_id"), ChoiceEvent.recipient_id,
                  literal_column("1").label("left_it")).where(*scope, _switch())
    both = union_all(chose, left).subquery()
    return (select(both.c.provider_id,
                   func.count(distinct(case((both.c.left_it == 0, both.c.recipient_id)))),
                   func.count(distinct(case((both.c.left_it == 1, both.c.recipient_id)))))
            .group_by(both.c.provider_id))


# --- the public portal ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class PublicSwitching:
    """Switches in a programme as the public sees them: per item and for the whole programme, each figure
    None when fewer than MIN_PUBLIC_GROUP distinct recipients make it up."""

    item_code: str | None  # None: the whole programme
    recipients: int | None  # distinct recipients who switched provider at least once
    switches: int | None
    top_reasons: list[tuple[str, int]]  # (reason, switches) given by at least MIN_PUBLIC_GROUP recipients
    # The programme's row hidden although it has enough recipients: it would give away a hidden item's figures.
    shields_items: bool = False


def public_switching(programme: Programme) -> list[PublicSwitching]:
    """The programme's switches to date per item (in the programme's item order), then for the programme;
    remembered until the next choice."""
    return remembered("public", (programme.id, programme.created_at), lambda: _public_switching(programme))


def _public_switching(programme: Programme) -> list[PublicSwitching]:
    where = [ChoiceEvent.programme_id == programme.id, _switch()]
    per_item = {code: (int(people), int(switches)) for code, people, switches in db.session.execute(
        select(ChoiceEvent.item_code, func.count(distinct(ChoiceEvent.recipient_id)), func.count())
        .where(*where).group_by(ChoiceEvent.item_code))}
    whole = db.session.execute(select(func.count(distinct(ChoiceEvent.recipient_id)), func.count())
                               .where(*where)).one()
    reasons: dict[str | None, list[tuple[str, int, int]]] = {}
    for code, reason, people, switches in db.session.execute(
            select(ChoiceEvent.item_code, ChoiceEvent.switch_reason, func.count(distinct(ChoiceEvent.recipient_id)),
                   func.count()).where(*where, ChoiceEvent.switch_reason.is_not(None))
            .group_by(ChoiceEvent.item_code, ChoiceEvent.switch_reason)):
        reasons.setdefault(code, []).append((reason, int(people), int(switches)))
    for reason, people, switches in db.session.execute(
            select(ChoiceEvent.switch_reason, func.count(distinct(ChoiceEvent.recipient_id)), func.count())
            .where(*where, ChoiceEvent.switch_reason.is_not(None)).group_by(ChoiceEvent.switch_reason)):
        reasons.setdefault(None, []).append((reason, int(people), int(switches)))
    items = [_public_group(item.item_code, *per_item.get(item.item_code, (0, 0)), reasons.get(item.item_code, []))
             for item in programme.items]
    # The programme's row must not give away what the item rows hide (the whole less the items shown): it
    # hides a figure when the item groups hidden for it hold between 1 and MIN_PUBLIC_GROUP - 1 recipients.
    hidden = sum(per_item.get(group.item_code, (0, 0))[0] for group in items if group.recipients is None)
    withheld: dict[str, int] = {}
    for group in items:
        for reason, people, _switches in reasons.get(group.item_code, []):
            if group.recipients is None or people < MIN_PUBLIC_GROUP:
                withheld[reason] = withheld.get(reason, 0) + people
    whole_reasons = [row for row in reasons.get(None, []) if not 0 < withheld.get(row[0], 0) < MIN_PUBLIC_GROUP]
    if 0 < hidden < MIN_PUBLIC_GROUP and int(whole[0]) >= MIN_PUBLIC_GROUP:
        return [*items, PublicSwitching(item_code=None, recipients=None, switches=None, top_reasons=[],
                                        shields_items=True)]
    return [*items, _public_group(None, int(whole[0]), int(whole[1]), whole_reasons)]


def _public_group(item_code: str | None, people: int, switches: int,
                  reasons: list[tuple[str, int, int]]) -> PublicSwitching:
    if people < MIN_PUBLIC_GROUP:
        return PublicSwitching(item_code=item_code, recipients=None, switches=None, top_reasons=[])
    shown = sorted(((reason, count) for reason, reason_people, count in reasons if reason_people >= MIN_PUBLIC_GROUP),
                   key=lambda row: (-row[1], SWITCH_REASONS.index(row[0])))
    return PublicSwitching(item_code=item_code, recipients=people, switches=switches, top_reasons=shown[:TOP_REASONS])
