"""The life of a market-integrity flag (DESIGN.md "Market integrity"), after detection made it: who may see
it, and an admin's decision about it.

A flag is open when found; an admin in scope confirms it or dismisses it, each with a reason, and may later
change their mind (confirmed → dismissed releases its redemptions, dismissed → confirmed holds them again).
While a flag is confirmed its redemptions are held out of settlement exactly as an open complaint holds its
redemption (vouchers.service.settlement.held_by_flag): holds change money only by leaving redemptions out.
A confirmed flag whose redemptions are in a settlement already holds nothing more — a draft is not redrawn
and an approved settlement never changes — so confirming one changes no money; the response is the same.

Who sees what:
- admins (region-scoped ones: flags of programmes inside their region) and auditors see every flag;
- a provider sees the flags about itself that are confirmed — never open or dismissed ones — without the
  recipient or staff login the flag names, and without any recipient key in its evidence (evidence holds
  figures, times and redemption ids; `provider_evidence` drops what could identify a recipient anyway);
- recipients see none (the routes refuse them).
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select

from marketplace import audit, transitions
from marketplace.db import db
from marketplace.errors import NotFound
from marketplace.programmes.integrity import RULE_NAMES, explain
from marketplace.programmes.service import (
    of_programmes_in_scope,
    programme_region,
    require_programme_in_scope,
)
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption

log = logging.getLogger(__name__)

# Evidence keys a provider never sees, at any depth: whatever names a recipient or is personal data.
PERSONAL_KEYS = frozenset({"name", "names", "id_number", "phone", "address"})
SEVERITY_ORDER = case({"high": 0, "medium": 1, "low": 2}, value=AnomalyFlag.severity, else_=3)


@dataclass(frozen=True)
class FlagView:
    """A flag as one reader may see it: the row's fields, its redemptions, its evidence and explanation."""

    id: int
    programme_id: int
    period: str
    rule: str
    severity: str
    provider_id: int | None
    recipient_id: int | None
    staff_user_id: int | None
    redemption_ids: list[int]
    evidence: dict
    explanation: str
    status: str
    created_at: datetime
    decided_by: int | None
    decided_at: datetime | None
    reason: str | None


def _personal(key) -> bool:
    return isinstance(key, str) and ("recipient" in key.lower() or key.lower() in PERSONAL_KEYS)


def provider_evidence(evidence):
    """*evidence* without any key that names a recipient or personal data, at any depth (a copy)."""
    if isinstance(evidence, dict):
        return {key: provider_evidence(value) for key, value in evidence.items() if not _personal(key)}
    if isinstance(evidence, list):
        return [provider_evidence(value) for value in evidence]
    return evidence


def explanation_of(flag: AnomalyFlag) -> str:
    """The flag's explanation in the current locale; the rule's name when its evidence cannot fill it in.

    Made from the whole evidence for every reader: the explanations (integrity.EXPLANATIONS) use only figures
    and times, never a recipient's id or name, so a provider's explanation reveals nothing its evidence hides.
    """
    try:
        return explain(flag.rule, flag.evidence or {})
    except (KeyError, TypeError, ValueError):
        # Evidence a rule wrote without a figure its explanation needs: say what the rule is, not 500.
        log.warning("anomaly flag %s: its evidence does not fill in the %s explanation", flag.id, flag.rule)
        name = RULE_NAMES.get(flag.rule)
        return str(name) if name is not None else flag.rule


def _views(flags: list[AnomalyFlag], *, actor) -> list[FlagView]:
    redemptions: dict[int, list[int]] = {flag.id: [] for flag in flags}
    if flags:
        for flag_id, redemption_id in db.session.execute(
                select(AnomalyFlagRedemption.flag_id, AnomalyFlagRedemption.redemption_id)
                .where(AnomalyFlagRedemption.flag_id.in_(list(redemptions)))
                .order_by(AnomalyFlagRedemption.flag_id, AnomalyFlagRedemption.redemption_id)):
            redemptions[flag_id].append(redemption_id)
    provider = actor.role == "provider"
    return [FlagView(
        id=flag.id, programme_id=flag.programme_id, period=flag.period, rule=flag.rule, severity=flag.severity,
        provider_id=flag.provider_id, recipient_id=None if provider else flag.recipient_id,
        staff_user_id=None if provider else flag.staff_user_id, redemption_ids=redemptions[flag.id],
        evidence=provider_evidence(flag.evidence or {}) if provider else (flag.evidence or {}),
        explanation=explanation_of(flag), status=flag.status, created_at=flag.created_at,
        decided_by=flag.decided_by, decided_at=flag.decided_at, reason=flag.reason) for flag in flags]


def visible(actor):
    """SQL conditions on AnomalyFlag: what *actor* may see (the routes let only admins, auditors, providers in)."""
    conditions = [of_programmes_in_scope(actor, AnomalyFlag.programme_id)]
    if actor.role == "provider":
        conditions += [AnomalyFlag.provider_id == actor.provider_id, AnomalyFlag.status == "confirmed"]
    return conditions


def get_flag(flag_id: int, *, actor) -> AnomalyFlag:
    """The flag row, if *actor* may see it.

    :raises NotFound: no such flag, or (a provider) another provider's or one not confirmed.
    :raises Forbidden: its programme lies outside a region-limited admin's region.
    """
    flag = db.session.get(AnomalyFlag, flag_id)
    if flag is None or (actor.role == "provider" and (
            flag.provider_id != actor.provider_id or flag.status != "confirmed")):
        raise NotFound("No such anomaly flag.")
    require_programme_in_scope(actor, flag.programme_id, "This anomaly flag")
    return flag


def flag_view(flag_id: int, *, actor) -> FlagView:
    """One flag as *actor* may see it. :raises NotFound, Forbidden: as get_flag."""
    return view(get_flag(flag_id, actor=actor), actor=actor)


def view(flag: AnomalyFlag, *, actor) -> FlagView:
    """*flag* (a row *actor* may see) as *actor* sees it."""
    return _views([flag], actor=actor)[0]


def list_flags(*, actor, page: int, per_page: int, programme_id: int | None = None, period: str | None = None,
               status: str | None = None, rule: str | None = None, provider_id: int | None = None) -> dict:
    """Flags *actor* may see, filtered; the most severe first, then the newest."""
    statement = (select(AnomalyFlag).where(*visible(actor))
                 .order_by(SEVERITY_ORDER, AnomalyFlag.id.desc()))
    for column, value in ((AnomalyFlag.programme_id, programme_id), (AnomalyFlag.period, period),
                          (AnomalyFlag.status, status), (AnomalyFlag.rule, rule),
                          (AnomalyFlag.provider_id, provider_id)):
        if value is not None:
            statement = statement.where(column == value)
    total = db.session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    flags = db.session.scalars(statement.limit(per_page).offset((page - 1) * per_page)).all()
    return {"items": _views(list(flags), actor=actor), "page": page, "per_page": per_page, "total": total}


def confirm(*, flag: AnomalyFlag, reason: str, actor, now: datetime) -> AnomalyFlag:
    """Confirm an open or dismissed flag: its redemptions are held out of settlement until it is dismissed.

    :raises InvalidTransition: it is confirmed already (also when a racing decision confirmed it first, or
        changed it meanwhile).
    """
    return _decide(flag, to="confirmed", allowed_from={"open", "dismissed"}, reason=reason, actor=actor, now=now)


def dismiss(*, flag: AnomalyFlag, reason: str, actor, now: datetime) -> AnomalyFlag:
    """Dismiss an open or confirmed flag: a confirmed one's redemptions go into the next settlement draft.

    :raises InvalidTransition: it is dismissed already (also when a racing decision dismissed it first, or
        changed it meanwhile).
    """
    return _decide(flag, to="dismissed", allowed_from={"open", "confirmed"}, reason=reason, actor=actor, now=now)


def _decide(flag: AnomalyFlag, *, to: str, allowed_from: set[str], reason: str, actor, now: datetime) -> AnomalyFlag:
    # One guarded UPDATE (… WHERE status = :expected): of two admins deciding at once exactly one wins, the
    # other hears 409 `invalid_transition`, and no audit event is written for a decision that did not happen.
    was = transitions.move(flag, to=to, allowed_from=allowed_from, what="The anomaly flag",
                           values={"decided_at": now, "decided_by": actor.id, "reason": reason})
    redemptions = db.session.scalar(select(func.count()).select_from(AnomalyFlagRedemption)
                                    .where(AnomalyFlagRedemption.flag_id == flag.id))
    audit.record(action=f"anomaly.{to}", entity="anomaly_flag", entity_id=flag.id, actor=actor, now=now,
                 region_code=programme_region(flag.programme_id),
                 data={"from": was, "reason": reason, "rule": flag.rule, "programme_id": flag.programme_id,
                       "period": flag.period, "provider_id": flag.provider_id, "redemptions": redemptions})
    return flag
