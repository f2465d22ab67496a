"""What a provider reads about its settlements (`/provider/settlements`): the list, newest period first;
one settlement's lines a page at a time, the services of its month left out of it and why; and its
performance score explained with the numbers the settlement holds.

Reads only. The rules are vouchers.service.settlement's: this module redoes its arithmetic to show it,
from the stored parts (S, K, E), and says no more than the stored figures confirm — a rating given
after drafting, or a programme's rules amended since, leaves the settlement as it was drafted.
"""

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from sqlalchemy import func, select

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, paginate
from marketplace.errors import NotFound
from marketplace.programmes.models import Programme
from providers.models import Rating
from vouchers.models import Redemption, Settlement
from vouchers.service.settlement import (
    COMPLAINT_PENALTY,
    NO_EVIDENCE_SATISFACTION,
    WEIGHTS_WITH_EVALUATION,
    WEIGHTS_WITHOUT_EVALUATION,
    get_settlement,
    half_up,
    held_by_complaint,
    held_by_flag,
    lines_of,
    month_end_instant,
    month_start_instant,
)

SETTLEMENTS_PER_PAGE = 20
LINES_PER_PAGE = 100
HELD_SHOWN = 50
def pages_of(total: int, per_page: int) -> int:
    return max(1, -(-total // per_page))


def provider_settlements(*, actor, page: int) -> dict:
    """The provider's own settlements, newest period first, with their programmes' names.

    :raises NotFound: a page past the last.
    """
    statement = (select(Settlement).where(Settlement.provider_id == actor.provider_id)
                 .order_by(Settlement.period.desc(), Settlement.id.desc()))
    found = paginate(statement, page=page, per_page=SETTLEMENTS_PER_PAGE)
    found["pages"] = pages_of(found["total"], SETTLEMENTS_PER_PAGE)
    if page > found["pages"]:
        raise NotFound("No such page.")
    ids = {settlement.programme_id for settlement in found["items"]}
    found["programme_names"] = dict(db.session.execute(
        select(Programme.id, Programme.name).where(Programme.id.in_(ids))).all()) if ids else {}
    return found


@dataclass(frozen=True)
class Band:
    """One rule of the programme: a score from `low` to `high` (None: 100) pays `pay_percent`."""

    low: int
    high: int | None
    pay_percent: int
    applies: bool


@dataclass(frozen=True)
class ScoreExplanation:
    """The settlement's score worked out in the open.

    `satisfaction_source`: "ratings" (S recomputed from the ratings of its services matches the stored
    S), "no_ratings" (none of its services is rated: S came from the provider's score in the programme,
    or 75 with no rating anywhere) or "as_drafted" (ratings given since drafting: S is the stored one).
    `satisfaction` and `complaint` are exact when known; `weighted` is the sum before rounding, and
    `confirmed` says whether rounding it gives the stored score (then the sum is shown as it is).
    """

    satisfaction_source: str
    rated: int
    mean_rating: Fraction | None
    satisfaction: Fraction
    services: int
    upheld: int
    complaint_raw: Fraction  # before the floor of 0
    complaint: Fraction
    evaluation: int | None
    weights: tuple
    weighted: Fraction
    confirmed: bool
    score: int
    bands: list[Band]
    bands_confirmed: bool
    pay_percent: int
    gross_fen: int
    net_fen: int
    deduction_fen: int
    no_evidence_satisfaction: int = NO_EVIDENCE_SATISFACTION
    complaint_penalty: int = COMPLAINT_PENALTY


def explain_score(settlement: Settlement, programme: Programme) -> ScoreExplanation:
    """Work the stored score out again from its parts, for the provider to follow."""
    rated, total = db.session.execute(
        select(func.count(Rating.id), func.coalesce(func.sum(Rating.score), 0))
        .join(Redemption, Redemption.id == Rating.redemption_id)
        .where(Redemption.settlement_id == settlement.id)).one()
    rated, total = int(rated), int(total)
    mean = Fraction(total, rated) if rated else None
    satisfaction = Fraction(settlement.satisfaction_score)
    if mean is None:
        source = "no_ratings"
    elif half_up((mean - 1) / 4 * 100) == settlement.satisfaction_score:
        source, satisfaction = "ratings", (mean - 1) / 4 * 100
    else:
        source = "as_drafted"
    services = settlement.redemptions_count
    complaint_raw = (100 - Fraction(COMPLAINT_PENALTY * settlement.upheld_complaints * 100, services)
                     if services else Fraction(settlement.complaint_score))
    complaint = max(Fraction(0), complaint_raw)
    evaluation = settlement.evaluation_score
    if evaluation is None:
        weights = WEIGHTS_WITHOUT_EVALUATION
        weighted = weights[0] * satisfaction + weights[1] * complaint
    else:
        weights = WEIGHTS_WITH_EVALUATION
        weighted = weights[0] * satisfaction + weights[1] * complaint + weights[2] * evaluation
    bands = _bands(programme.settlement_rules, settlement.performance_score)
    applying = [band for band in bands if band.applies]
    return ScoreExplanation(
        satisfaction_source=source, rated=rated, mean_rating=mean, satisfaction=satisfaction, services=services,
        upheld=settlement.upheld_complaints, complaint_raw=complaint_raw, complaint=complaint, evaluation=evaluation,
        weights=weights,
        weighted=weighted, confirmed=min(100, half_up(weighted)) == settlement.performance_score,
        score=settlement.performance_score, bands=bands,
        bands_confirmed=bool(applying) and applying[0].pay_percent == settlement.pay_percent,
        pay_percent=settlement.pay_percent, gross_fen=settlement.gross_fen, net_fen=settlement.net_fen,
        deduction_fen=settlement.gross_fen - settlement.net_fen)


def _bands(rules: list[dict], score: int) -> list[Band]:
    ordered = sorted(rules, key=lambda rule: rule["min_score"])
    applicable = [rule for rule in ordered if rule["min_score"] <= score]
    chosen = applicable[-1] if applicable else None
    return [Band(low=rule["min_score"],
                 high=ordered[index + 1]["min_score"] - 1 if index + 1 < len(ordered) else None,
                 pay_percent=rule["pay_percent"], applies=rule is chosen)
            for index, rule in enumerate(ordered)]


@dataclass(frozen=True)
class HeldLine:
    """A service of the settlement's month that is in no settlement: `complaint_open` (held until the
    complaint is resolved), `flag_confirmed` (held by a confirmed anomaly flag until it is dismissed) or
    `later` (recorded after drafting, or released since: the next settlement)."""

    redemption: Redemption
    reason: str


@dataclass(frozen=True)
class SettlementPage:
    settlement: Settlement
    programme: Programme
    lines: dict  # the list envelope of this page of lines, with "pages"
    item_names: dict[str, str]
    held: list[HeldLine]
    held_total: int
    explanation: ScoreExplanation
    history: list[tuple[str, datetime, str | None]]  # (status, at, payment reference)


def settlement_page(settlement_id: int, *, actor, page: int) -> SettlementPage:
    """One settlement as its provider reads it, LINES_PER_PAGE lines at a time.

    :raises NotFound: no such settlement, another provider's, or a page of lines past the last.
    """
    settlement = get_settlement(settlement_id, actor=actor)
    programme = db.session.get(Programme, settlement.programme_id)
    lines = paginate(lines_of(settlement), page=page, per_page=LINES_PER_PAGE)
    lines["pages"] = pages_of(lines["total"], LINES_PER_PAGE)
    if page > lines["pages"]:
        raise NotFound("No such page.")
    held, held_total = _held(settlement)
    codes = {line.item_code for line in lines["items"]} | {row.redemption.item_code for row in held}
    names = dict(db.session.execute(
        select(ServiceItem.code, ServiceItem.name).where(ServiceItem.code.in_(codes))).all()) if codes else {}
    history = [("draft", settlement.created_at, None)]
    if settlement.approved_at is not None:
        history.append(("approved", settlement.approved_at, None))
    if settlement.paid_at is not None:
        history.append(("paid", settlement.paid_at, settlement.payment_reference))
    return SettlementPage(settlement=settlement, programme=programme, lines=lines, item_names=names, held=held,
                          held_total=held_total, explanation=explain_score(settlement, programme), history=history)


def _held(settlement: Settlement) -> tuple[list[HeldLine], int]:
    """The provider's completed services of the settlement's month, in this programme, in no settlement."""
    outside = (select(Redemption, held_by_complaint().label("complaint_open"), held_by_flag().label("flagged"))
               .where(Redemption.provider_id == settlement.provider_id,
                      Redemption.programme_id == settlement.programme_id, Redemption.status == "completed",
                      Redemption.settlement_id.is_(None),
                      Redemption.delivered_at >= month_start_instant(settlement.period),
                      Redemption.delivered_at < month_end_instant(settlement.period)))
    total = db.session.scalar(select(func.count()).select_from(outside.subquery()))
    rows = db.session.execute(outside.order_by(Redemption.delivered_at, Redemption.id).limit(HELD_SHOWN)).all()
    reasons = [("complaint_open" if complained else "flag_confirmed" if flagged else "later")
               for _row, complained, flagged in rows]
    return [HeldLine(redemption=row[0], reason=reason) for row, reason in zip(rows, reasons, strict=True)], total
