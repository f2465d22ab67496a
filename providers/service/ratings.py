"""Ratings of delivered services: the one rating per redemption, the running totals the rankings
read, and the Bayesian score shared by the rankings, the provider summaries and settlement."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.db import db
from marketplace.errors import DomainError
from providers.models import Rating, RatingAggregate

SATISFIED_SCORE = 4  # a score of 4 or 5 counts as satisfied


class AlreadyRated(DomainError):
    status, code, message = 409, "already_rated", "This service has already been rated."


class RatingWindowClosed(DomainError):
    status, code, message = 410, "rating_window_closed", "The time to rate this service has passed."


def record_rating(*, redemption_id: int, provider_id: int, programme_id: int, item_code: str, recipient_id: int,
                  delivered_at: datetime, rating_window_days: int, score: int, comment: str | None, source: str,
                  region_code: str, actor, now: datetime) -> Rating:
    """Record the one rating of a delivered service and update the ranking totals in the same transaction.

    The caller (which knows the redemption) has checked that the actor may rate it; *region_code* is
    the programme's (the audit event's region).

    :raises RatingWindowClosed: more than the programme's rating window after delivery.
    :raises AlreadyRated: the redemption has a rating.
    """
    if now > delivered_at + timedelta(days=rating_window_days):
        raise RatingWindowClosed(window_days=rating_window_days)
    rating = Rating(redemption_id=redemption_id, provider_id=provider_id, programme_id=programme_id,
                    item_code=item_code, recipient_id=recipient_id, score=score, comment=comment, source=source,
                    rated_by=actor.id, created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(rating)
    except IntegrityError as error:
        raise AlreadyRated() from error
    _add_to_aggregate(provider_id=provider_id, programme_id=programme_id, item_code=item_code, score=score)
    audit.record(action="rating.recorded", entity="provider", entity_id=provider_id, actor=actor, now=now,
                 region_code=region_code, on_behalf_of=audit.acting_for(actor, recipient_id),
                 data={"rating_id": rating.id, "redemption_id": redemption_id, "score": score, "source": source})
    return rating


def _add_to_aggregate(*, provider_id: int, programme_id: int, item_code: str, score: int) -> None:
    table = RatingAggregate.__table__
    key = (table.c.provider_id == provider_id) & (table.c.programme_id == programme_id) & (
        table.c.item_code == item_code)
    satisfied = 1 if score >= SATISFIED_SCORE else 0
    increment = update(table).where(key).values(ratings_count=table.c.ratings_count + 1,
                                                score_sum=table.c.score_sum + score,
                                                satisfied_count=table.c.satisfied_count + satisfied)
    if db.session.execute(increment).rowcount:
        return
    try:
        with db.session.begin_nested():
            db.session.execute(insert(table).values(provider_id=provider_id, programme_id=programme_id,
                                                    item_code=item_code, ratings_count=1, score_sum=score,
                                                    satisfied_count=satisfied))
    except IntegrityError:
        db.session.execute(increment)  # a concurrent first rating created the row meanwhile


def withdraw_rating(*, redemption_id: int) -> None:
    """Take a reversed service's rating out of the ranking totals (a reversed service did not happen).

    The rating row stays as history; the totals, which rankings and provider summaries read, lose it.
    """
    rating = db.session.scalar(select(Rating).where(Rating.redemption_id == redemption_id))
    if rating is None:
        return
    table = RatingAggregate.__table__
    db.session.execute(
        update(table).where(table.c.provider_id == rating.provider_id, table.c.programme_id == rating.programme_id,
                            table.c.item_code == rating.item_code)
        .values(ratings_count=table.c.ratings_count - 1, score_sum=table.c.score_sum - rating.score,
                satisfied_count=table.c.satisfied_count - (1 if rating.score >= SATISFIED_SCORE else 0)))


def bayesian_score(*, prior_mean: float | None, ratings_count: int, score_sum: int) -> float | None:
    """(C·m + Σ scores) / (C + n): few ratings lean on the scope's mean m, many speak for themselves.

    None when nobody in the scope is rated, and for an unrated provider when C = 0 (no prior at all).
    """
    weight = current_app.config["RANKING_PRIOR_WEIGHT"]
    if prior_mean is None or weight + ratings_count == 0:
        return None
    return (weight * prior_mean + score_sum) / (weight + ratings_count)


@dataclass(frozen=True)
class RatingSummary:
    count: int
    mean: float | None
    bayesian: float | None
    satisfaction_rate: float | None


def summarise(count: int, total: int, satisfied: int, prior_mean: float | None) -> RatingSummary:
    """The summary of *count* ratings summing to *total*, *satisfied* of them 4 or 5, in a scope of mean m."""
    return RatingSummary(count=count, mean=total / count if count else None,
                         bayesian=bayesian_score(prior_mean=prior_mean, ratings_count=count, score_sum=total),
                         satisfaction_rate=satisfied / count if count else None)


def rating_summaries(provider_ids: list[int]) -> dict[int, RatingSummary]:
    """Each provider's summary over every programme and item (m = the mean of all ratings)."""
    if not provider_ids:
        return {}
    agg = RatingAggregate
    grand_count, grand_sum = db.session.execute(
        select(func.coalesce(func.sum(agg.ratings_count), 0), func.coalesce(func.sum(agg.score_sum), 0))).one()
    prior = grand_sum / grand_count if grand_count else None
    rows = db.session.execute(
        select(agg.provider_id, func.sum(agg.ratings_count), func.sum(agg.score_sum), func.sum(agg.satisfied_count))
        .where(agg.provider_id.in_(provider_ids)).group_by(agg.provider_id)).all()
    totals = {provider_id: (int(count), int(total), int(satisfied)) for provider_id, count, total, satisfied in rows}
    return {provider_id: summarise(*totals.get(provider_id, (0, 0, 0)), prior) for provider_id in provider_ids}


def programme_bayesian_scores(*, programme_id: int, provider_ids: list[int]) -> dict[int, float | None]:
    """Each provider's Bayesian score over all its ratings in one programme (m = the programme's mean)."""
    if not provider_ids:
        return {}
    agg = RatingAggregate
    scope_count, scope_sum = db.session.execute(
        select(func.coalesce(func.sum(agg.ratings_count), 0), func.coalesce(func.sum(agg.score_sum), 0))
        .where(agg.programme_id == programme_id)).one()
    prior = scope_sum / scope_count if scope_count else None
    totals = {provider_id: (int(count), int(total)) for provider_id, count, total in db.session.execute(
        select(agg.provider_id, func.sum(agg.ratings_count), func.sum(agg.score_sum))
        .where(agg.programme_id == programme_id, agg.provider_id.in_(provider_ids)).group_by(agg.provider_id))}
    return {provider_id: bayesian_score(prior_mean=prior, ratings_count=totals.get(provider_id, (0, 0))[0],
                                        score_sum=totals.get(provider_id, (0, 0))[1])
            for provider_id in provider_ids}
