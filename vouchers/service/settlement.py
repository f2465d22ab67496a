"""Monthly settlement (结算) with pay by performance (docs/domain.md, rule 6: 根据考核结果支付资金).

For each provider with completed, unsettled redemptions delivered up to the end of the month (and
not on hold behind an open complaint), one draft settlement claims those redemptions with a guarded
UPDATE (`... WHERE settlement_id IS NULL`), so a redemption is in at most one settlement however
many runs race. Its performance score (0–100) is

    satisfaction  S = (mean rating − 1) / 4 × 100 over the settlement's rated redemptions; with none,
                      the provider's Bayesian score in the programme; with no ratings anywhere, 75
    complaints    K = max(0, 100 − 10 × upheld complaints per 100 services)
    evaluation    E = the third-party evaluation (第三方绩效评价), when given
    score         = 0.5·S + 0.2·K + 0.3·E   with an evaluation
                  = 0.7·S + 0.3·K           without             (rounded half up)

`pay_percent` is that of the programme's rule with the highest `min_score` not above the score,
`net_fen = gross_fen × pay_percent // 100` (the bureau never pays a fraction more), and a score in the
lowest band (of two or more) flags the provider for contract termination.

Approval needs a second admin (four eyes); it moves the net from redeemed to settled and releases the
deduction (gross − net) to available, in one transaction. Approved and paid settlements never change.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Integer, and_, bindparam, delete, exists, func, literal, select, update

from marketplace import audit, transitions
from marketplace.db import UTCDateTime, db, insert_from_select, insert_ignoring_conflicts, paginate
from marketplace.errors import DomainError, InvalidTransition, NotFound
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from marketplace.programmes.service import of_programmes_in_scope, programme_region, require_programme_in_scope
from providers.models import Complaint, Provider, Rating
from providers.service.ratings import programme_bayesian_scores
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption, Redemption, Settlement
from vouchers.service.issuance import period_bounds

NO_EVIDENCE_SATISFACTION = 75  # a mean rating of 4 ("satisfied") when nobody has rated anything yet
COMPLAINT_PENALTY = 10  # points per upheld complaint per 100 services
BAYESIAN_DENOMINATOR = 10**6  # largest denominator recovered exactly from the float Bayesian score


class FourEyesRequired(DomainError):
    status, code = 403, "four_eyes_required"
    message = "A settlement is approved by a second admin: neither its drafter nor an account the drafter created."


class NotApproved(DomainError):
    status, code, message = 409, "not_approved", "Only an approved settlement can be paid."


def month_end_instant(period: str) -> datetime:
    """The UTC instant at which the period's last local day ends."""
    _first, last = period_bounds(period)
    local = ZoneInfo(current_app.config["LOCAL_TIMEZONE"])
    return datetime.combine(last + timedelta(days=1), time(0), tzinfo=local).astimezone(UTC)


def month_start_instant(period: str) -> datetime:
    first, _last = period_bounds(period)
    return datetime.combine(first, time(0), tzinfo=ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).astimezone(UTC)


def held_by_complaint():
    """SQL: the current Redemption row has an open complaint about it (held until the complaint is resolved)."""
    return exists().where(Complaint.redemption_id == Redemption.id, Complaint.status == "open")


def held_by_flag():
    """SQL: the current Redemption row is in a confirmed anomaly flag (held until the flag is dismissed)."""
    return exists().where(AnomalyFlagRedemption.redemption_id == Redemption.id,
                          AnomalyFlag.id == AnomalyFlagRedemption.flag_id, AnomalyFlag.status == "confirmed")


def _settleable(programme_id: int, end: datetime):
    return and_(Redemption.programme_id == programme_id, Redemption.status == "completed",
                Redemption.settlement_id.is_(None), Redemption.delivered_at < end, ~held_by_complaint(),
                ~held_by_flag())


@dataclass(frozen=True)
class DraftLine:
    """One provider's settleable services for a period: how many and what they are worth."""

    provider_id: int
    provider_name: str
    services: int
    gross_fen: int


@dataclass(frozen=True)
class SettledProvider:
    """A provider already settled for the period; `waiting` of its services there are in no settlement yet."""

    provider_id: int
    provider_name: str
    settlement_id: int
    status: str
    waiting: int
    waiting_fen: int


@dataclass(frozen=True)
class DraftPreview:
    """What `create_settlements` would draft now: one settlement per line, and who it leaves out."""

    lines: list[DraftLine]
    settled: list[SettledProvider]

    @property
    def services(self) -> int:
        return sum(line.services for line in self.lines)

    @property
    def gross_fen(self) -> int:
        return sum(line.gross_fen for line in self.lines)


def draft_preview(*, programme: Programme, period: str) -> DraftPreview:
    """The settlements drafting *period* would create now, by provider, with the very selection it uses.

    Reads only. A provider already settled for this programme and period gets no new draft (as in
    `create_settlements`): it is listed apart, with the settleable services that wait for a later period.
    """
    waiting = {provider_id: (name, count, int(gross)) for provider_id, name, count, gross in db.session.execute(
        select(Redemption.provider_id, Provider.name, func.count(), func.sum(Redemption.face_value_fen))
        .join(Provider, Provider.id == Redemption.provider_id)
        .where(_settleable(programme.id, month_end_instant(period)))
        .group_by(Redemption.provider_id, Provider.name))}
    settled = []
    for provider_id, name, settlement_id, status in db.session.execute(
            select(Settlement.provider_id, Provider.name, Settlement.id, Settlement.status)
            .join(Provider, Provider.id == Settlement.provider_id)
            .where(Settlement.programme_id == programme.id, Settlement.period == period)
            .order_by(Provider.name, Settlement.provider_id)):
        _name, count, gross = waiting.get(provider_id, (name, 0, 0))
        settled.append(SettledProvider(provider_id=provider_id, provider_name=name, settlement_id=settlement_id,
                                       status=status, waiting=count, waiting_fen=gross))
    already = {row.provider_id for row in settled}
    lines = [DraftLine(provider_id=provider_id, provider_name=name, services=count, gross_fen=gross)
             for provider_id, (name, count, gross) in waiting.items() if provider_id not in already]
    return DraftPreview(lines=sorted(lines, key=lambda line: (line.provider_name, line.provider_id)), settled=settled)


def create_settlements(*, programme: Programme, period: str, evaluations: dict[int, int], actor,
                       now: datetime, detect: bool = True) -> list[Settlement]:
    """Create one draft per provider with settleable redemptions up to the end of *period*.

    A provider already settled for this programme and period gets nothing new. Set-based, whatever
    the number of providers: one INSERT … SELECT … GROUP BY drafts the settlements (ON CONFLICT skips a
    provider that a concurrent run drafted first), one guarded UPDATE (`… WHERE settlement_id IS NULL`)
    gives each draft its redemptions, grouped queries count what each draft really got and gather
    its ratings and upheld complaints, and one executemany UPDATE writes the scores.

    When there is something to draft, the market-integrity rules run over *period* first
    (anomaly_detection.detect_anomalies: new findings become open flags, which hold nothing until an admin
    confirms them), so every draft comes after a detection, and a run that drafts nothing writes nothing.
    `detect=False` is for the benchmarks alone, which measure drafting and detection apart.
    """
    end = month_end_instant(period)
    settleable = _settleable(programme.id, end)
    settled_already = exists().where(Settlement.programme_id == programme.id, Settlement.period == period,
                                     Settlement.provider_id == Redemption.provider_id)
    if detect and db.session.scalar(select(Redemption.id).where(settleable, ~settled_already).limit(1)) is not None:
        # Imported here: detection reads this module's month bounds.
        from vouchers.service.anomaly_detection import detect_anomalies

        detect_anomalies(programme=programme, period=period, actor=actor, now=now)
    zero = literal(0)
    drafts = (select(literal(programme.id).label("programme_id"), Redemption.provider_id.label("provider_id"),
                     literal(period).label("period"), literal("draft").label("status"),
                     zero.label("redemptions_count"), zero.label("gross_fen"), zero.label("satisfaction_score"),
                     zero.label("complaint_score"), zero.label("upheld_complaints"), zero.label("performance_score"),
                     zero.label("pay_percent"), zero.label("net_fen"),
                     literal(False).label("flagged_for_termination"),
                     literal(now, UTCDateTime()).label("created_at"),
                     literal(getattr(actor, "id", None), Integer()).label("created_by"))
              .where(settleable, ~settled_already).group_by(Redemption.provider_id))
    inserted = db.session.execute(insert_from_select(
        insert_ignoring_conflicts(Settlement.__table__, Settlement.id, Settlement.provider_id), drafts)).all()
    provider_of = dict(inserted)  # settlement id → provider id
    if not provider_of:
        return []
    # Bounded by the programme's providers. The unique (programme, provider, period) makes each of
    # these providers' settlement for the period one of ours.
    ours = and_(Settlement.programme_id == programme.id, Settlement.period == period,
                Settlement.provider_id == Redemption.provider_id, Settlement.id.in_(list(provider_of)))
    db.session.execute(update(Redemption.__table__).where(settleable, ours).values(settlement_id=Settlement.id))
    # Count what each draft really got: a concurrent run for another period may have claimed some.
    claimed = {settlement_id: (count, int(gross)) for settlement_id, count, gross in db.session.execute(
        select(Redemption.settlement_id, func.count(), func.sum(Redemption.face_value_fen))
        .where(Redemption.settlement_id.in_(list(provider_of))).group_by(Redemption.settlement_id))}
    empty = [settlement_id for settlement_id in provider_of if settlement_id not in claimed]
    if empty:
        db.session.execute(delete(Settlement.__table__).where(Settlement.id.in_(empty)))
    if not claimed:
        return []
    scores = _scores(programme, period, end, {sid: provider_of[sid] for sid in claimed}, claimed, evaluations)
    db.session.execute(_WRITE_SCORES, [{"settlement_id": sid, **values} for sid, values in scores.items()])
    for settlement_id, values in scores.items():
        count, gross = claimed[settlement_id]
        audit.record(action="settlement.drafted", entity="settlement", entity_id=settlement_id, actor=actor, now=now,
                     region_code=programme.region_code,
                     data={"programme_id": programme.id, "provider_id": provider_of[settlement_id], "period": period,
                           "redemptions": count, "gross_fen": gross, "performance_score": values["performance_score"],
                           "pay_percent": values["pay_percent"], "net_fen": values["net_fen"]})
    return db.session.scalars(select(Settlement).where(Settlement.id.in_(list(claimed)))
                              .order_by(Settlement.provider_id)).all()


_WRITE_SCORES = (update(Settlement.__table__).where(Settlement.id == bindparam("settlement_id"))
                 .values(redemptions_count=bindparam("redemptions_count"), gross_fen=bindparam("gross_fen"),
                         satisfaction_score=bindparam("satisfaction_score"),
                         complaint_score=bindparam("complaint_score"),
                         upheld_complaints=bindparam("upheld_complaints"),
                         evaluation_score=bindparam("evaluation_score"),
                         performance_score=bindparam("performance_score"), pay_percent=bindparam("pay_percent"),
                         net_fen=bindparam("net_fen"), flagged_for_termination=bindparam("flagged_for_termination")))


# The weights of S, K and E in the score (the README's formula); E is absent without an evaluation.
WEIGHTS_WITH_EVALUATION = (Fraction(1, 2), Fraction(1, 5), Fraction(3, 10))
WEIGHTS_WITHOUT_EVALUATION = (Fraction(7, 10), Fraction(3, 10), None)


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _scores(programme: Programme, period: str, end: datetime, provider_of: dict[int, int],
            claimed: dict[int, tuple[int, int]], evaluations: dict[int, int]) -> dict[int, dict]:
    """The score columns of each draft (settlement id → values), from three grouped queries."""
    ids = list(provider_of)
    ratings = {settlement_id: (rated, int(total)) for settlement_id, rated, total in db.session.execute(
        select(Redemption.settlement_id, func.count(Rating.id), func.sum(Rating.score))
        .join(Redemption, Redemption.id == Rating.redemption_id)
        .where(Redemption.settlement_id.in_(ids)).group_by(Redemption.settlement_id))}
    upheld = and_(Complaint.status == "resolved", Complaint.upheld.is_(True))
    about_lines = dict(db.session.execute(
        select(Redemption.settlement_id, func.count()).select_from(Complaint)
        .join(Redemption, Redemption.id == Complaint.redemption_id)
        .where(upheld, Redemption.settlement_id.in_(ids)).group_by(Redemption.settlement_id)).all())
    general = dict(db.session.execute(
        select(Complaint.provider_id, func.count()).where(
            upheld, Complaint.redemption_id.is_(None), Complaint.created_at >= month_start_instant(period),
            Complaint.created_at < end, Complaint.provider_id.in_(list(provider_of.values())))
        .group_by(Complaint.provider_id)).all())
    unrated = [provider_of[sid] for sid in ids if sid not in ratings]
    bayesian = programme_bayesian_scores(programme_id=programme.id, provider_ids=unrated)
    rules = sorted(programme.settlement_rules, key=lambda rule: rule["min_score"])
    scores = {}
    for settlement_id, provider_id in provider_of.items():
        count, gross = claimed[settlement_id]
        rated, total = ratings.get(settlement_id, (0, 0))
        scores[settlement_id] = _performance(
            rules, count=count, gross=gross, mean_rating=Fraction(total, rated) if rated else _exact(
                bayesian.get(provider_id)),
            upheld=about_lines.get(settlement_id, 0) + general.get(provider_id, 0),
            evaluation=evaluations.get(provider_id))
    return scores


def _exact(bayesian: float | None) -> Fraction | None:
    # (C·m + Σ) / (C + n) is rational: recover it from the float so that exact ties round up.
    return None if bayesian is None else Fraction(bayesian).limit_denominator(BAYESIAN_DENOMINATOR)


def _performance(rules: list[dict], *, count: int, gross: int, mean_rating: Fraction | None, upheld: int,
                 evaluation: int | None) -> dict:
    """The README's formula, in exact arithmetic: "rounded half up" must not turn 62.5 into 62.4999…"""
    satisfaction = Fraction(NO_EVIDENCE_SATISFACTION) if mean_rating is None else (mean_rating - 1) / 4 * 100
    complaint_score = max(Fraction(0), 100 - Fraction(COMPLAINT_PENALTY * upheld * 100, count))
    if evaluation is not None:
        s_weight, k_weight, e_weight = WEIGHTS_WITH_EVALUATION
        score = s_weight * satisfaction + k_weight * complaint_score + e_weight * evaluation
    else:
        s_weight, k_weight, _none = WEIGHTS_WITHOUT_EVALUATION
        score = s_weight * satisfaction + k_weight * complaint_score
    performance_score = min(100, half_up(score))
    applicable = [rule for rule in rules if rule["min_score"] <= performance_score][-1]
    return {"redemptions_count": count, "gross_fen": gross, "satisfaction_score": half_up(satisfaction),
            "complaint_score": half_up(complaint_score), "upheld_complaints": upheld,
            "evaluation_score": evaluation, "performance_score": performance_score,
            "pay_percent": applicable["pay_percent"], "net_fen": gross * applicable["pay_percent"] // 100,
            "flagged_for_termination": len(rules) > 1 and applicable is rules[0]}


def get_settlement(settlement_id: int, *, actor) -> Settlement:
    """:raises NotFound: no such settlement, or another provider's. :raises Forbidden: out of region."""
    settlement = db.session.get(Settlement, settlement_id)
    if settlement is None or (actor.role == "provider" and settlement.provider_id != actor.provider_id):
        raise NotFound("No such settlement.")
    require_programme_in_scope(actor, settlement.programme_id, "This settlement")
    return settlement


@dataclass(frozen=True)
class SettlementDetail:
    """A settlement with its lines (the redemptions it pays), as one reader may see it."""

    settlement: Settlement
    lines: list[Redemption]


def settlement_detail(settlement_id: int, *, actor) -> SettlementDetail:
    """The settlement with its lines in delivery order. :raises NotFound, Forbidden: as get_settlement."""
    settlement = get_settlement(settlement_id, actor=actor)
    return SettlementDetail(settlement=settlement, lines=db.session.scalars(lines_of(settlement)).all())


def list_settlements(*, actor, page: int, per_page: int, programme_id: int | None = None, period: str | None = None,
                     status: str | None = None, provider_id: int | None = None) -> dict:
    """Settlements (a provider's own, or those of programmes in the admin's region), filtered."""
    statement = (select(Settlement).where(of_programmes_in_scope(actor, Settlement.programme_id))
                 .order_by(Settlement.id))
    if actor.role == "provider":
        statement = statement.where(Settlement.provider_id == actor.provider_id)
    for column, value in ((Settlement.programme_id, programme_id), (Settlement.period, period),
                          (Settlement.status, status), (Settlement.provider_id, provider_id)):
        if value is not None:
            statement = statement.where(column == value)
    return paginate(statement, page=page, per_page=per_page)


def lines_of(settlement: Settlement):
    """The settlement's redemptions in delivery order (a query: statements stream it)."""
    return (select(Redemption).where(Redemption.settlement_id == settlement.id)
            .order_by(Redemption.delivered_at, Redemption.id))


def may_approve(settlement: Settlement, actor) -> bool:
    """Four eyes: the approver is neither the drafter nor a login the drafter created."""
    drafter = settlement.created_by
    return drafter is None or drafter not in (actor.id, actor.created_by)


def approve(*, settlement: Settlement, actor, now: datetime) -> Settlement:
    """Approve a draft (four eyes) and move its money: net to settled, the deduction back to available.

    Four eyes that one person cannot fake: the approver is neither the drafter nor a login the drafter
    created (a second account of one's own making is still one person).

    :raises FourEyesRequired: the approver drafted it, or the drafter created the approver's login.
    :raises InvalidTransition: it is not a draft (or a racing approval won).
    """
    if not may_approve(settlement, actor):
        raise FourEyesRequired()
    transitions.move(settlement, to="approved", allowed_from={"draft"}, what="The settlement",
                     values={"approved_at": now, "approved_by": actor.id})
    deduction = settlement.gross_fen - settlement.net_fen
    if settlement.net_fen:
        ledger.post_entry(programme_id=settlement.programme_id, kind="settlement",
                          lines={"redeemed": -settlement.net_fen, "settled": settlement.net_fen}, now=now,
                          actor_id=actor.id, reference_type="settlement", reference_id=settlement.id)
    if deduction:
        ledger.post_entry(programme_id=settlement.programme_id, kind="deduction",
                          lines={"redeemed": -deduction, "available": deduction}, now=now, actor_id=actor.id,
                          reference_type="settlement", reference_id=settlement.id,
                          memo=f"performance score {settlement.performance_score}: paid {settlement.pay_percent}%")
    db.session.refresh(settlement)
    audit.record(action="settlement.approved", entity="settlement", entity_id=settlement.id, actor=actor, now=now,
                 region_code=programme_region(settlement.programme_id),
                 data={"net_fen": settlement.net_fen, "deducted_fen": deduction})
    return settlement


def pay(*, settlement: Settlement, payment_reference: str, actor, now: datetime) -> Settlement:
    """Record the payment of an approved settlement.

    :raises NotApproved: it is a draft or already paid (also when a racing payment won).
    """
    try:
        transitions.move(settlement, to="paid", allowed_from={"approved"}, what="The settlement",
                         values={"paid_at": now, "paid_by": actor.id, "payment_reference": payment_reference})
    except InvalidTransition as refused:
        raise NotApproved(status=refused.details["status"]) from refused
    audit.record(action="settlement.paid", entity="settlement", entity_id=settlement.id, actor=actor, now=now,
                 region_code=programme_region(settlement.programme_id),
                 data={"payment_reference": payment_reference, "net_fen": settlement.net_fen})
    return settlement


def discard(*, settlement: Settlement, actor, now: datetime) -> None:
    """Delete a draft; its redemptions become settleable again. :raises InvalidTransition: not a draft."""
    if settlement.status != "draft":
        raise InvalidTransition("Only a draft settlement can be deleted.")
    db.session.execute(update(Redemption).where(Redemption.settlement_id == settlement.id)
                       .values(settlement_id=None).execution_options(synchronize_session=False))
    if db.session.execute(delete(Settlement).where(Settlement.id == settlement.id, Settlement.status == "draft")
                          .execution_options(synchronize_session=False)).rowcount != 1:
        raise InvalidTransition("The settlement changed meanwhile; reload it.")
    audit.record(action="settlement.deleted", entity="settlement", entity_id=settlement.id, actor=actor, now=now,
                 region_code=programme_region(settlement.programme_id),
                 data={"programme_id": settlement.programme_id, "provider_id": settlement.provider_id,
                       "period": settlement.period})
