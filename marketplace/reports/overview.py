"""The staff home's read model: every programme in the admin's scope with its ledger, and what needs attention.

Built from the same service functions the API uses (scope included), so the home never shows what
the lists behind its links would refuse.
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select

from marketplace.db import db, local_date
from marketplace.programmes import ledger
from marketplace.programmes import service as programme_service
from marketplace.programmes.models import Programme
from marketplace.reports import service as report_service
from providers.models import ProgrammeApplication
from providers.service import applications, complaints, registry
from vouchers.service import anomaly_view, settlement

OPEN_PROGRAMMES_SHOWN = 50
COMPLAINT_AGE_DAYS = (3, 7, 15)  # open complaints are counted by age: under 3 days, 3–7, 7–15, older


@dataclass(frozen=True)
class ProgrammeSummary:
    programme: Programme
    ledger: ledger.Ledger
    projected_exhaustion_date: date | None

    @property
    def runs_out_early(self) -> bool:
        """The money runs out at the recent rate before the programme ends."""
        ends = self.programme.ends_on
        return self.projected_exhaustion_date is not None and self.projected_exhaustion_date < ends


@dataclass(frozen=True)
class Attention:
    providers_pending: int
    complaints_open: int
    complaints_by_age: list[tuple[str, int]]
    settlements_awaiting_approval: int
    applications_pending: int = 0
    # (programme, pending applications to join it) for the programmes shown, those with any
    applications_by_programme: tuple[tuple[Programme, int], ...] = ()
    # programmes whose money runs out at the recent rate before they end
    running_out: tuple[ProgrammeSummary, ...] = ()
    # open market-integrity flags by severity (high, medium, low)
    anomalies_open: tuple[tuple[str, int], ...] = ()

    @property
    def anomalies_total(self) -> int:
        return sum(count for _severity, count in self.anomalies_open)

    @property
    def anything(self) -> bool:
        return bool(self.providers_pending or self.complaints_open or self.settlements_awaiting_approval
                    or self.applications_pending or self.running_out or self.anomalies_total)


def staff_overview(*, actor, now: datetime) -> dict:
    """{programmes: [ProgrammeSummary], attention: Attention} for an admin (its scope) or an auditor (all)."""
    listed = programme_service.list_programmes(actor=actor, page=1, per_page=OPEN_PROGRAMMES_SHOWN)["items"]
    order = {"active": 0, "draft": 1, "closed": 2}
    summaries = []
    for programme in sorted(listed, key=lambda p: (order.get(p.status, 3), p.id)):
        balances = ledger.balances(programme.id)
        projected = None
        if programme.status == "active":
            recent = report_service.remembered_recent_spending(programme, now=now)
            projected = report_service.projected_exhaustion(balances, recent_fen=recent, now=now)
        summaries.append(ProgrammeSummary(programme=programme, ledger=balances, projected_exhaustion_date=projected))
    open_complaints = complaints.list_complaints(actor=actor, page=1, per_page=500, status="open")
    waiting = _pending_applications([summary.programme.id for summary in summaries])
    return {
        "programmes": summaries,
        "attention": Attention(
            providers_pending=registry.list_providers(actor=actor, page=1, per_page=1, status="pending")["total"],
            complaints_open=open_complaints["total"],
            complaints_by_age=_by_age([c.created_at for c in open_complaints["items"]], now=now),
            settlements_awaiting_approval=settlement.list_settlements(
                actor=actor, page=1, per_page=1, status="draft")["total"],
            applications_pending=applications.list_applications(
                actor=actor, page=1, per_page=1, status="pending")["total"],
            applications_by_programme=tuple((summary.programme, waiting[summary.programme.id])
                                            for summary in summaries if waiting.get(summary.programme.id)),
            running_out=tuple(summary for summary in summaries if summary.runs_out_early),
            anomalies_open=tuple(anomaly_view.open_counts(actor=actor).items()),
        ),
    }


def _pending_applications(programme_ids: list[int]) -> dict[int, int]:
    """{programme id: applications from providers waiting for a decision} for the programmes shown (the
    list of them is already scoped to the actor's region)."""
    if not programme_ids:
        return {}
    rows = db.session.execute(
        select(ProgrammeApplication.programme_id, func.count())
        .where(ProgrammeApplication.status == "pending", ProgrammeApplication.programme_id.in_(programme_ids))
        .group_by(ProgrammeApplication.programme_id))
    return dict(rows.all())


def _by_age(created: list[datetime], *, now: datetime) -> list[tuple[str, int]]:
    today = local_date(now)
    bands = [0] * (len(COMPLAINT_AGE_DAYS) + 1)
    for instant in created:
        age = (today - local_date(instant)).days
        bands[sum(age >= limit for limit in COMPLAINT_AGE_DAYS)] += 1
    labels = [f"<{COMPLAINT_AGE_DAYS[0]}"] + [f"{a}–{b}" for a, b in zip(COMPLAINT_AGE_DAYS, COMPLAINT_AGE_DAYS[1:],
                                                                         strict=False)]
    labels.append(f"≥{COMPLAINT_AGE_DAYS[-1]}")
    return list(zip(labels, bands, strict=True))
