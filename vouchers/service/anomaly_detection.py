"""Detection: every market-integrity rule over one programme and month, its findings kept as anomaly flags.

A flag is one row per (rule, programme, period, subject): a finding made again (detecting twice, or before
each settlement draft) meets the existing row and creates nothing, whatever that flag's status — an open flag
is not widened, a confirmed one does not start holding more than the admin confirmed, and a dismissed one
stays dismissed. New flags are open, and an open flag holds nothing; only a confirmed one keeps its
redemptions out of settlement (settlement.held_by_flag).
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select

from marketplace import audit
from marketplace.db import db, insert_ignoring_conflicts
from marketplace.programmes.integrity import RULES
from marketplace.programmes.models import Programme
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption
from vouchers.service import anomaly_rules

_FLAG = AnomalyFlag.__table__
_FLAG_REDEMPTION = AnomalyFlagRedemption.__table__


@dataclass(frozen=True)
class DetectionResult:
    """What one detection did: flags it created, and the period's flags in all (any status), by rule."""

    period: str
    flags_created: int
    flags_total: int
    by_rule: dict[str, int]
    created_by_rule: dict[str, int]  # the flags this run created, by rule (for the metrics)


# Told after each rule's query: (rule, findings).
Progress = Callable[[str, int], None]


def detect_anomalies(*, programme: Programme, period: str, actor, now: datetime,
                     progress: Progress | None = None) -> DetectionResult:
    """Run every rule over the programme's *period* (YYYY-MM) and keep each new finding as an open flag with
    its redemptions; findings already flagged create nothing. Audited once (`anomalies.detected`).

    Every rule's query runs before the first write, so that on SQLite the write lock is held only while the
    flags are inserted.

    :raises ValidationFailed: *period* is not a month.
    """
    month = anomaly_rules.Month.of(programme, period)
    findings = []
    for rule, query in anomaly_rules.QUERIES.items():
        found = query(month)
        findings.extend(found)
        if progress is not None:
            progress(rule, len(found))
    created_by_rule = _keep(findings, programme_id=programme.id, period=period, now=now)
    created = sum(created_by_rule.values())
    counted = dict(db.session.execute(
        select(AnomalyFlag.rule, func.count()).where(AnomalyFlag.programme_id == programme.id,
                                                    AnomalyFlag.period == period)
        .group_by(AnomalyFlag.rule)).all())
    by_rule = {rule: counted.get(rule, 0) for rule in RULES}
    result = DetectionResult(period=period, flags_created=created, flags_total=sum(by_rule.values()),
                             by_rule=by_rule, created_by_rule=created_by_rule)
    audit.record(action="anomalies.detected", entity="programme", entity_id=programme.id, actor=actor, now=now,
                 region_code=programme.region_code,
                 data={"period": period, "flags_created": created, "flags_total": result.flags_total,
                       "by_rule": by_rule})
    return result


def _keep(findings: list[anomaly_rules.Finding], *, programme_id: int, period: str,
          now: datetime) -> dict[str, int]:
    """Insert the findings' flags (ON CONFLICT DO NOTHING on the unique key) and link the new ones'
    redemptions; the number of flags created, by rule."""
    if not findings:
        return {}
    rows = [{"programme_id": programme_id, "period": period, "rule": finding.rule, "severity": finding.severity,
             "subject": finding.subject, "provider_id": finding.provider_id, "recipient_id": finding.recipient_id,
             "staff_user_id": finding.staff_user_id, "evidence": finding.evidence, "status": "open",
             "created_at": now} for finding in findings]
    inserted = db.session.execute(insert_ignoring_conflicts(_FLAG, _FLAG.c.id, _FLAG.c.rule, _FLAG.c.subject),
                                  rows).all()
    flag_of = {(rule, subject): flag_id for flag_id, rule, subject in inserted}
    links = [{"flag_id": flag_of[finding.rule, finding.subject], "redemption_id": redemption_id}
             for finding in findings if (finding.rule, finding.subject) in flag_of
             for redemption_id in finding.redemption_ids]
    if links:
        db.session.execute(insert(_FLAG_REDEMPTION), links)
    return dict(Counter(rule for rule, _subject in flag_of))
