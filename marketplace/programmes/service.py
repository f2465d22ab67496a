"""Programmes: creation with the policy checks, budget amendments, activation and closing."""

from datetime import date, datetime

from sqlalchemy import select, true

from marketplace import audit, scope, transitions
from marketplace.catalogue import service as catalogue
from marketplace.db import db, paginate
from marketplace.errors import DomainError, InvalidTransition, NotFound, ValidationFailed
from marketplace.programmes import integrity, ledger
from marketplace.programmes.models import BudgetAmendment, Programme, ProgrammeItem
from marketplace.recipients.models import TAGS
from marketplace.regions import is_region_code
from marketplace.signals import programme_closed

MAX_PERIOD_DAYS = 5 * 366
MAX_AMENDMENT_FEN = 10**12  # ¥10 billion: larger is a typo, not a budget


class NoBudget(DomainError):
    status, code, message = 409, "no_budget", "A programme cannot be activated without an allocated budget."


class BudgetBelowCommitted(DomainError):
    status, code = 409, "budget_below_committed"
    message = "The reduction would take the budget below what is already committed, redeemed and settled."


class ProgrammeNotActive(DomainError):
    status, code, message = 409, "programme_not_active", "The programme is not active."


class ProgrammeClosed(DomainError):
    status, code, message = 409, "programme_closed", "The programme is closed."


def get_programme(programme_id: int, *, actor) -> Programme:
    """:raises NotFound: no such programme. :raises Forbidden: outside the admin's region."""
    programme = db.session.get(Programme, programme_id)
    if programme is None:
        raise NotFound("No such programme.")
    scope.require(actor, programme.region_code, "This programme")
    return programme


def require_programme_in_scope(actor, programme_id: int, what: str) -> None:
    """For things of a programme (vouchers, redemptions, settlements): the programme must be in scope.

    :raises Forbidden: the programme lies outside a region-limited admin's region.
    """
    if scope.is_limited(actor):
        region_code = db.session.scalar(select(Programme.region_code).where(Programme.id == programme_id))
        scope.require(actor, region_code, what)


def programme_region(programme_id: int) -> str:
    """The programme's region code (for the audit events of things of a programme)."""
    return db.session.scalar(select(Programme.region_code).where(Programme.id == programme_id))


def of_programmes_in_scope(actor, programme_id_column):
    """SQL condition on a thing of a programme: its programme lies inside the actor's region."""
    if not scope.is_limited(actor):
        return true()
    return programme_id_column.in_(select(Programme.id).where(scope.within(actor, Programme.region_code)))


def list_programmes(*, actor, page: int, per_page: int, status: str | None = None) -> dict:
    """Programmes, those inside the admin's region for a region-limited admin (a city-wide programme,
    510100, is not inside a county admin's 510131)."""
    statement = select(Programme).where(scope.within(actor, Programme.region_code)).order_by(Programme.id)
    if status is not None:
        statement = statement.where(Programme.status == status)
    return paginate(statement, page=page, per_page=per_page)


def create_programme(*, name: str, authority: str, region_code: str, starts_on: date, ends_on: date, items: list[dict],
                     eligibility: dict, copay_percent: dict, reserved_share_percent: int, settlement_rules: list[dict],
                     rating_window_days: int, reversal_window_hours: int, choice_required: bool, actor,
                     now: datetime, anomaly_parameters: dict | None = None) -> Programme:
    """Create a draft programme buying catalogue services, with its own thresholds for the market-integrity
    rules if it gives any (*anomaly_parameters*, `{rule: {parameter: number}}`).

    :raises ValidationFailed: naming every field that breaks a rule.
    :raises Forbidden: the region is outside the admin's scope.
    """
    problems: dict[str, str] = {}
    if not is_region_code(region_code):
        problems["region_code"] = "Not a GB/T 2260 region code."
    if ends_on < starts_on:
        problems["ends_on"] = "The programme must end on or after the day it starts."
    elif (ends_on - starts_on).days > MAX_PERIOD_DAYS:
        problems["ends_on"] = "A programme runs for at most five years."
    codes = [item["item_code"] for item in items]
    if len(set(codes)) != len(codes):
        problems["items"] = "Each item may appear only once."
    else:
        known = catalogue.items_by_code(codes)
        missing = [code for code in codes if code not in known]
        if missing:
            problems["items"] = f"Not in the catalogue: {', '.join(sorted(missing))}."
    unknown_tags = set(eligibility.get("tags_any") or []) | (set(copay_percent) - {"default"})
    unknown_tags -= set(TAGS)
    if unknown_tags:
        problems["copay_percent"] = f"Unknown tags: {', '.join(sorted(unknown_tags))}."
    if "default" not in copay_percent:
        problems["copay_percent"] = "A `default` co-payment percent is required."
    rules_problem = _settlement_rules_problem(settlement_rules)
    if rules_problem:
        problems["settlement_rules"] = rules_problem
    problems |= _anomaly_parameter_problems(anomaly_parameters)
    if problems:
        raise ValidationFailed(problems)
    scope.require(actor, region_code, "This region")

    programme = Programme(
        name=name, authority=authority, region_code=region_code, starts_on=starts_on, ends_on=ends_on, status="draft",
        eligibility={"min_age": eligibility.get("min_age"), "tags_any": sorted(set(eligibility.get("tags_any") or []))},
        copay_percent=copay_percent, reserved_share_percent=reserved_share_percent,
        settlement_rules=sorted(settlement_rules, key=lambda rule: rule["min_score"]),
        rating_window_days=rating_window_days, reversal_window_hours=reversal_window_hours,
        choice_required=choice_required, anomaly_parameters=anomaly_parameters or None, created_at=now,
        created_by=getattr(actor, "id", None), items=[ProgrammeItem(**item) for item in items],
    )
    db.session.add(programme)
    db.session.flush()
    ledger.open_budget(programme_id=programme.id)
    audit.record(action="programme.created", entity="programme", entity_id=programme.id, actor=actor, now=now,
                 region_code=region_code,
                 data={"name": name, "region_code": region_code, "items": items,
                       "period": [starts_on.isoformat(), ends_on.isoformat()],
                       "anomaly_parameters": anomaly_parameters or None})
    return programme


def _anomaly_parameter_problems(anomaly_parameters: dict | None) -> dict[str, list[str]]:
    """The rule table's refusals, by field of the body (`anomaly_parameters.<rule>.<parameter>`)."""
    return {f"anomaly_parameters.{name}": messages
            for name, messages in integrity.parameter_errors(anomaly_parameters).items()}


def set_anomaly_parameters(*, programme: Programme, anomaly_parameters: dict | None, reason: str, actor,
                           now: datetime) -> Programme:
    """Replace the programme's own thresholds for the market-integrity rules (None or {}: every default);
    the next detection uses them. Audited with the old and the new thresholds and the reason.

    :raises ValidationFailed: an unknown rule or parameter, or a value that is not a number in range.
    """
    problems = _anomaly_parameter_problems(anomaly_parameters)
    if problems:
        raise ValidationFailed(problems)
    previous = programme.anomaly_parameters
    new = anomaly_parameters or None
    if new == previous:
        return programme
    programme.anomaly_parameters = new
    db.session.flush()
    audit.record(action="programme.anomaly_parameters_set", entity="programme", entity_id=programme.id, actor=actor,
                 now=now, region_code=programme.region_code, data={"from": previous, "to": new, "reason": reason})
    return programme


def _settlement_rules_problem(rules: list[dict]) -> str | None:
    scores = [rule["min_score"] for rule in rules]
    if not rules:
        return "At least one rule is required."
    if len(set(scores)) != len(scores):
        return "Each min_score may appear only once."
    ordered = sorted(rules, key=lambda rule: rule["min_score"])
    if ordered[0]["min_score"] != 0:
        return "One rule must start at min_score 0, so that every score maps to a pay percent."
    pays = [rule["pay_percent"] for rule in ordered]
    if pays != sorted(pays):
        return "A higher score may never pay a lower percent."
    return None


def amend_budget(*, programme: Programme, amount_fen: int, reason: str, actor, now: datetime) -> ledger.Ledger:
    """Allocate more budget (positive) or take unspent budget back (negative).

    :raises ProgrammeClosed: the programme is closed.
    :raises BudgetBelowCommitted: the reduction exceeds what is available (not committed or spent).
    """
    if programme.status == "closed":
        raise ProgrammeClosed()
    if amount_fen == 0 or abs(amount_fen) > MAX_AMENDMENT_FEN:
        raise ValidationFailed({"amount_fen": "A non-zero amount of at most 10^12 fen."})
    try:
        entry_id = ledger.post_entry(programme_id=programme.id, kind="allocation",
                                     lines={"funding": -amount_fen, "available": amount_fen}, now=now,
                                     actor_id=getattr(actor, "id", None), reference_type="budget_amendment",
                                     memo=reason)
    except ledger.InsufficientBudget as shortage:
        raise BudgetBelowCommitted(available_fen=shortage.available_fen,
                                   requested_reduction_fen=-amount_fen) from shortage
    amendment = BudgetAmendment(programme_id=programme.id, amount_fen=amount_fen, reason=reason, entry_id=entry_id,
                                created_at=now, created_by=getattr(actor, "id", None))
    db.session.add(amendment)
    db.session.flush()
    audit.record(action="programme.budget_amended", entity="programme", entity_id=programme.id, actor=actor, now=now,
                 region_code=programme.region_code,
                 data={"amount_fen": amount_fen, "reason": reason, "amendment_id": amendment.id})
    return ledger.balances(programme.id)


def activate(*, programme: Programme, actor, now: datetime) -> Programme:
    """Open a draft programme for issuance (docs/domain.md, rule 1: only with an allocated budget).

    :raises InvalidTransition: not a draft. :raises NoBudget: nothing allocated.
    """
    if programme.status == "draft" and ledger.balances(programme.id).allocated_fen <= 0:
        raise NoBudget()
    transitions.move(programme, to="active", allowed_from={"draft"}, what="The programme",
                     values={"activated_at": now})
    audit.record(action="programme.activated", entity="programme", entity_id=programme.id, actor=actor, now=now,
                 region_code=programme.region_code)
    return programme


def hold_active(programme: Programme) -> None:
    """Keep the programme active until the transaction ends (issuing vouchers into it does).

    The row's lock (the write lock on SQLite) is held: a close racing the issue waits for it and then
    revokes what it issued, or, if the close came first, this sees it closed.

    :raises ProgrammeNotActive: it is a draft or closed.
    """
    try:
        transitions.hold(programme, status="active", what="The programme")
    except InvalidTransition as refused:
        db.session.refresh(programme, ["status"])
        raise ProgrammeNotActive(status=programme.status) from refused


def close(*, programme: Programme, actor, now: datetime) -> Programme:
    """Close a programme for good; its open vouchers are revoked (by the vouchers domain's receiver).

    :raises InvalidTransition: already closed (or closed by a racing request).
    """
    transitions.move(programme, to="closed", allowed_from={"draft", "active"}, what="The programme",
                     values={"closed_at": now})
    programme_closed.send(programme, actor=actor, now=now)
    audit.record(action="programme.closed", entity="programme", entity_id=programme.id, actor=actor, now=now,
                 region_code=programme.region_code)
    return programme
