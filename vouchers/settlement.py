"""Monthly settlement (结算) with pay by performance (rule 6: 根据考核结果支付资金).

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
from datetime import UTC, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.db import db, paginate
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from marketplace.regions import covers, region_prefix
from providers import service as provider_service
from providers.models import Complaint, Rating
from vouchers.models import Redemption, Settlement
from vouchers.service import period_bounds

NO_EVIDENCE_SATISFACTION = 75  # a mean rating of 4 ("satisfied") when nobody has rated anything yet
COMPLAINT_PENALTY = 10  # points per upheld complaint per 100 services
BAYESIAN_DENOMINATOR = 10**6  # largest denominator recovered exactly from the float Bayesian score


class FourEyesRequired(DomainError):
    status, code, message = 403, "four_eyes_required", "A settlement is approved by an admin other than its creator."


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


def _settleable(programme_id: int, end: datetime):
    on_hold = exists().where(Complaint.redemption_id == Redemption.id, Complaint.status == "open")
    return and_(Redemption.programme_id == programme_id, Redemption.status == "completed",
                Redemption.settlement_id.is_(None), Redemption.delivered_at < end, ~on_hold)


def settleable_provider_count(*, programme: Programme, period: str) -> int:
    return db.session.scalar(select(func.count(func.distinct(Redemption.provider_id)))
                             .where(_settleable(programme.id, month_end_instant(period))))


def create_settlements(*, programme: Programme, period: str, evaluations: dict[int, int], actor, now: datetime,
                       on_provider=None) -> list[Settlement]:
    """Create one draft per provider with settleable redemptions up to the end of *period*.

    A provider already settled for this programme and period gets nothing new.
    """
    end = month_end_instant(period)
    provider_ids = db.session.scalars(select(Redemption.provider_id).where(_settleable(programme.id, end))
                                      .distinct().order_by(Redemption.provider_id)).all()
    created = []
    for provider_id in provider_ids:
        settlement = _draft(programme, provider_id, period, end, evaluations.get(provider_id), actor, now)
        if settlement is not None:
            created.append(settlement)
        if on_provider:
            on_provider(provider_id)
    return created


def _draft(programme: Programme, provider_id: int, period: str, end: datetime, evaluation: int | None, actor,
           now: datetime) -> Settlement | None:
    exists_already = db.session.scalar(select(Settlement.id).where(
        Settlement.programme_id == programme.id, Settlement.provider_id == provider_id, Settlement.period == period))
    if exists_already is not None:
        return None
    settlement = Settlement(programme_id=programme.id, provider_id=provider_id, period=period, status="draft",
                            redemptions_count=0, gross_fen=0, satisfaction_score=0, complaint_score=0,
                            upheld_complaints=0, evaluation_score=evaluation, performance_score=0, pay_percent=0,
                            net_fen=0, flagged_for_termination=False, created_at=now,
                            created_by=getattr(actor, "id", None))
    try:
        with db.session.begin_nested():
            db.session.add(settlement)
    except IntegrityError:
        return None  # a concurrent run drafted this provider's settlement for the period
    db.session.execute(update(Redemption).where(_settleable(programme.id, end), Redemption.provider_id == provider_id)
                       .values(settlement_id=settlement.id).execution_options(synchronize_session=False))
    count, gross = db.session.execute(select(func.count(), func.coalesce(func.sum(Redemption.face_value_fen), 0))
                                      .where(Redemption.settlement_id == settlement.id)).one()
    if not count:  # another run claimed them first
        db.session.delete(settlement)
        db.session.flush()
        return None
    settlement.redemptions_count, settlement.gross_fen = count, int(gross)
    _score(settlement, programme, period, end)
    db.session.flush()
    audit.record(action="settlement.drafted", entity="settlement", entity_id=settlement.id, actor=actor, now=now,
                 data={"programme_id": programme.id, "provider_id": provider_id, "period": period,
                       "redemptions": count, "gross_fen": int(gross), "performance_score": settlement.performance_score,
                       "pay_percent": settlement.pay_percent, "net_fen": settlement.net_fen})
    return settlement


def _half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def _score(settlement: Settlement, programme: Programme, period: str, end: datetime) -> None:
    # Exact arithmetic: the README's "rounded half up" must not turn 62.5 into 62.4999… (floats would).
    rated, total = db.session.execute(
        select(func.count(Rating.id), func.coalesce(func.sum(Rating.score), 0))
        .join(Redemption, Redemption.id == Rating.redemption_id)
        .where(Redemption.settlement_id == settlement.id)).one()
    if rated:
        mean_rating = Fraction(int(total), int(rated))
    else:
        bayesian = provider_service.programme_bayesian(provider_id=settlement.provider_id,
                                                       programme_id=programme.id)
        # (C·m + Σ) / (C + n) is rational: recover it from the float so that exact ties round up.
        mean_rating = None if bayesian is None else Fraction(bayesian).limit_denominator(BAYESIAN_DENOMINATOR)
    satisfaction = (Fraction(NO_EVIDENCE_SATISFACTION) if mean_rating is None
                    else (mean_rating - 1) / 4 * 100)
    upheld = db.session.scalar(select(func.count()).select_from(Complaint).where(
        Complaint.provider_id == settlement.provider_id, Complaint.status == "resolved", Complaint.upheld.is_(True),
        or_(Complaint.redemption_id.in_(select(Redemption.id).where(Redemption.settlement_id == settlement.id)),
            and_(Complaint.redemption_id.is_(None), Complaint.created_at >= month_start_instant(period),
                 Complaint.created_at < end))))
    complaint_score = max(Fraction(0), 100 - Fraction(COMPLAINT_PENALTY * upheld * 100, settlement.redemptions_count))
    if settlement.evaluation_score is not None:
        score = (Fraction(1, 2) * satisfaction + Fraction(1, 5) * complaint_score
                 + Fraction(3, 10) * settlement.evaluation_score)
    else:
        score = Fraction(7, 10) * satisfaction + Fraction(3, 10) * complaint_score
    settlement.satisfaction_score = _half_up(satisfaction)
    settlement.complaint_score = _half_up(complaint_score)
    settlement.upheld_complaints = upheld
    settlement.performance_score = min(100, _half_up(score))
    rules = sorted(programme.settlement_rules, key=lambda rule: rule["min_score"])
    applicable = [rule for rule in rules if rule["min_score"] <= settlement.performance_score][-1]
    settlement.pay_percent = applicable["pay_percent"]
    settlement.net_fen = settlement.gross_fen * settlement.pay_percent // 100
    settlement.flagged_for_termination = len(rules) > 1 and applicable is rules[0]


def get_settlement(settlement_id: int, *, actor) -> Settlement:
    """:raises NotFound: no such settlement, or another provider's. :raises Forbidden: out of region."""
    settlement = db.session.get(Settlement, settlement_id)
    if settlement is None or (actor.role == "provider" and settlement.provider_id != actor.provider_id):
        raise NotFound("No such settlement.")
    if actor.role == "admin" and actor.region_code is not None:
        programme = db.session.get(Programme, settlement.programme_id)
        if not covers(actor.region_code, programme.region_code):
            raise Forbidden("This settlement is outside your region.")
    return settlement


def list_settlements(*, actor, page: int, per_page: int, programme_id: int | None = None, period: str | None = None,
                     status: str | None = None, provider_id: int | None = None) -> dict:
    statement = select(Settlement).order_by(Settlement.id)
    if actor.role == "provider":
        statement = statement.where(Settlement.provider_id == actor.provider_id)
    elif actor.role == "admin" and actor.region_code is not None:
        statement = statement.join(Programme, Programme.id == Settlement.programme_id).where(
            Programme.region_code.startswith(region_prefix(actor.region_code)))
    for column, value in ((Settlement.programme_id, programme_id), (Settlement.period, period),
                          (Settlement.status, status), (Settlement.provider_id, provider_id)):
        if value is not None:
            statement = statement.where(column == value)
    return paginate(statement, page=page, per_page=per_page)


def lines_of(settlement: Settlement):
    """The settlement's redemptions in delivery order (a query: statements stream it)."""
    return (select(Redemption).where(Redemption.settlement_id == settlement.id)
            .order_by(Redemption.delivered_at, Redemption.id))


def approve(*, settlement: Settlement, actor, now: datetime) -> Settlement:
    """Approve a draft (four eyes) and move its money: net to settled, the deduction back to available.

    :raises FourEyesRequired: the approver created it. :raises InvalidTransition: it is not a draft.
    """
    if settlement.created_by is not None and settlement.created_by == actor.id:
        raise FourEyesRequired()
    if settlement.status != "draft":
        raise InvalidTransition(f"Only a draft can be approved; this settlement is {settlement.status}.")
    approved = db.session.execute(
        update(Settlement).where(Settlement.id == settlement.id, Settlement.status == "draft")
        .values(status="approved", approved_at=now, approved_by=actor.id)
        .execution_options(synchronize_session=False)).rowcount
    if approved != 1:
        raise InvalidTransition("The settlement changed meanwhile; reload it.")
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
                 data={"net_fen": settlement.net_fen, "deducted_fen": deduction})
    return settlement


def pay(*, settlement: Settlement, payment_reference: str, actor, now: datetime) -> Settlement:
    """Record the payment of an approved settlement. :raises NotApproved: it is a draft or already paid."""
    paid = db.session.execute(
        update(Settlement).where(Settlement.id == settlement.id, Settlement.status == "approved")
        .values(status="paid", paid_at=now, paid_by=actor.id, payment_reference=payment_reference)
        .execution_options(synchronize_session=False)).rowcount
    if paid != 1:
        raise NotApproved(status=settlement.status)
    db.session.refresh(settlement)
    audit.record(action="settlement.paid", entity="settlement", entity_id=settlement.id, actor=actor, now=now,
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
                 data={"programme_id": settlement.programme_id, "provider_id": settlement.provider_id,
                       "period": settlement.period})
