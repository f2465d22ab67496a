"""What recipients say about one provider, as its own staff read it (`/provider/feedback`): its ratings
per programme and item with the public ranking's numbers, the latest comments, and the complaints about
it with their answers. Nothing here names or identifies a recipient.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from marketplace.programmes.models import Programme, ProgrammeItem
from providers.models import Complaint, Enrolment, ProviderItem, Rating, RatingAggregate
from providers.service.ranking import rankings
from providers.service.ratings import summarise

RECENT_COMMENTS = 20
RESOLVED_SHOWN = 30  # every open complaint is shown; of the resolved ones, the latest


@dataclass(frozen=True)
class ScopeRating:
    """The provider's ratings for one item in one programme, as the ranking of that scope sees them."""

    programme_id: int
    programme_name: str
    item_code: str
    item_name: str
    count: int
    mean: float | None
    bayesian: float | None
    satisfaction_rate: float | None
    rank: int | None  # None when the provider is not ranked (not approved, or no longer offering the item)
    ranked: int  # providers in the ranking


@dataclass(frozen=True)
class Comment:
    score: int
    comment: str
    item_name: str
    created_at: datetime
    by_phone: bool  # recorded by the bureau on a phone follow-up (回访)


@dataclass(frozen=True)
class ComplaintLine:
    id: int
    text: str
    status: str
    upheld: bool | None
    resolution: str | None
    created_at: datetime
    resolved_at: datetime | None
    answer: str | None
    answered_at: datetime | None
    age_days: int  # local calendar days since it was filed

    @property
    def answerable(self) -> bool:
        return self.status == "open" and self.answer is None


@dataclass(frozen=True)
class ProviderFeedback:
    ratings: list[ScopeRating]
    comments: list[Comment]
    complaints: list[ComplaintLine]
    open_count: int


def provider_feedback(*, provider_id: int, now: datetime) -> ProviderFeedback:
    """The provider's rating summary per programme and item, its latest comments and its complaints
    (open ones first), for its own staff."""
    complaints = _complaints(provider_id, now)
    return ProviderFeedback(ratings=_ratings(provider_id), comments=_comments(provider_id), complaints=complaints,
                            open_count=sum(line.status == "open" for line in complaints))


def _ratings(provider_id: int) -> list[ScopeRating]:
    """Every item the provider offers in a programme it is enrolled in, and every scope it was rated in."""
    offered = select(ProgrammeItem.programme_id, ProgrammeItem.item_code).join(
        Enrolment, and_(Enrolment.programme_id == ProgrammeItem.programme_id, Enrolment.provider_id == provider_id)
    ).join(ProviderItem, and_(ProviderItem.provider_id == provider_id,
                              ProviderItem.item_code == ProgrammeItem.item_code))
    rated = select(RatingAggregate.programme_id, RatingAggregate.item_code).where(
        RatingAggregate.provider_id == provider_id, RatingAggregate.ratings_count > 0)
    scopes = sorted(set(db.session.execute(offered).all()) | set(db.session.execute(rated).all()))
    if not scopes:
        return []
    programme_names = dict(db.session.execute(select(Programme.id, Programme.name).where(
        Programme.id.in_({programme_id for programme_id, _ in scopes}))).all())
    item_names = dict(db.session.execute(select(ServiceItem.code, ServiceItem.name).where(
        ServiceItem.code.in_({item_code for _, item_code in scopes}))).all())
    shown = []
    for programme_id, item_code in scopes:
        # The public ranking of the scope: the same numbers, rank and prior a recipient choosing sees.
        ranking = rankings(item_code=item_code, programme_id=programme_id)
        own = next((row for row in ranking if row["provider_id"] == provider_id), None)
        if own is not None:
            count, mean, bayesian, rate = (own["ratings_count"], own["mean_score"], own["bayesian_score"],
                                           own["satisfaction_rate"])
        else:
            summary = _unranked_summary(provider_id, programme_id, item_code)
            count, mean, bayesian, rate = summary.count, summary.mean, summary.bayesian, summary.satisfaction_rate
        shown.append(ScopeRating(
            programme_id=programme_id, programme_name=programme_names.get(programme_id, ""), item_code=item_code,
            item_name=item_names.get(item_code, item_code), count=count, mean=mean, bayesian=bayesian,
            satisfaction_rate=rate, rank=own["rank"] if own else None, ranked=len(ranking)))
    return shown


def _unranked_summary(provider_id: int, programme_id: int, item_code: str):
    """A provider the ranking leaves out (suspended, say): its totals, against every rating of the scope."""
    agg = RatingAggregate
    in_scope = (agg.programme_id == programme_id, agg.item_code == item_code)
    scope_count, scope_sum = db.session.execute(
        select(func.coalesce(func.sum(agg.ratings_count), 0), func.coalesce(func.sum(agg.score_sum), 0))
        .where(*in_scope)).one()
    count, total, satisfied = db.session.execute(
        select(func.coalesce(func.sum(agg.ratings_count), 0), func.coalesce(func.sum(agg.score_sum), 0),
               func.coalesce(func.sum(agg.satisfied_count), 0)).where(*in_scope, agg.provider_id == provider_id)).one()
    prior = int(scope_sum) / int(scope_count) if scope_count else None
    return summarise(int(count), int(total), int(satisfied), prior)


def _comments(provider_id: int) -> list[Comment]:
    rows = db.session.execute(
        select(Rating.score, Rating.comment, Rating.source, Rating.created_at, ServiceItem.name)
        .join(ServiceItem, ServiceItem.code == Rating.item_code)
        .where(Rating.provider_id == provider_id, Rating.comment.is_not(None), Rating.comment != "")
        .order_by(Rating.created_at.desc(), Rating.id.desc()).limit(RECENT_COMMENTS)).all()
    return [Comment(score=score, comment=comment, item_name=item_name, created_at=created_at,
                    by_phone=source == "phone_followup")
            for score, comment, source, created_at, item_name in rows]


def _complaints(provider_id: int, now: datetime) -> list[ComplaintLine]:
    shown = select(Complaint).where(Complaint.provider_id == provider_id)
    open_ones = db.session.scalars(shown.where(Complaint.status == "open").order_by(Complaint.created_at,
                                                                                    Complaint.id)).all()
    resolved = db.session.scalars(shown.where(Complaint.status != "open").order_by(
        Complaint.resolved_at.desc(), Complaint.id.desc()).limit(RESOLVED_SHOWN)).all()
    today = local_date(now)
    return [ComplaintLine(id=c.id, text=c.text, status=c.status, upheld=c.upheld, resolution=c.resolution,
                          created_at=c.created_at, resolved_at=c.resolved_at, answer=c.answer,
                          answered_at=c.answered_at, age_days=(today - local_date(c.created_at)).days)
            for c in [*open_ones, *resolved]]
