"""Ranking: the providers of a service ordered by recipients' satisfaction (优胜劣汰), so that the
next recipient chooses well.

`bayesian_score = (C·m + Σ scores) / (C + n)` (providers.service.ratings): n is the provider's number
of ratings in the scope, m the mean of every rating in the scope and C = RANKING_PRIOR_WEIGHT, so one
5-star rating cannot outrank many 4.8s, and a new provider starts at the scope's mean.

`complaints_count` counts the complaints against the provider that were upheld: an open or a not-upheld
complaint is one person's word, and counting it would let anyone lower a provider's standing by filing many
(staff and the provider itself still see every complaint). `switch_away_rate` is the share of the recipients
who chose the provider for the item who later switched away (the vouchers domain answers it through the
kernel's `ranking_switching` signal: vouchers/service/switching.py defines it; null under 5 recipients).
"""

from sqlalchemy import and_, exists, func, select

from marketplace.db import db
from marketplace.signals import ranking_switching
from providers.models import Complaint, Enrolment, Provider, ProviderItem, RatingAggregate
from providers.service.ratings import summarise
from providers.service.registry import serves_region


def rankings(*, item_code: str, region_code: str | None = None, programme_id: int | None = None) -> list[dict]:
    """Approved providers offering the item (serving the region, enrolled in the programme), best first.

    Ordered by Bayesian score, then number of ratings, then id. A provider without ratings scores the
    scope's mean m (the formula with n = 0): new providers are neither favoured nor buried. When nobody
    in the scope has ratings, every score is null and the order is by id.
    """
    # One statement of columns: a county may have thousands of providers, and loading them as objects
    # (with their regions and items) would cost more than the whole ranking.
    agg = RatingAggregate
    aggregate_scope = [agg.provider_id == Provider.id, agg.item_code == item_code]
    if programme_id is not None:
        aggregate_scope.append(agg.programme_id == programme_id)
    complaints = select(func.count()).where(Complaint.provider_id == Provider.id, Complaint.status == "resolved",
                                            Complaint.upheld.is_(True)).scalar_subquery()
    statement = (
        select(Provider.id, Provider.name, Provider.kind, func.coalesce(func.sum(agg.ratings_count), 0),
               func.coalesce(func.sum(agg.score_sum), 0), func.coalesce(func.sum(agg.satisfied_count), 0),
               complaints)
        .outerjoin(agg, and_(*aggregate_scope))
        .where(Provider.status == "approved",
               exists().where(ProviderItem.provider_id == Provider.id, ProviderItem.item_code == item_code))
        .group_by(Provider.id, Provider.name, Provider.kind))
    if region_code is not None:
        statement = statement.where(serves_region(region_code))
    if programme_id is not None:
        statement = statement.where(exists().where(Enrolment.provider_id == Provider.id,
                                                   Enrolment.programme_id == programme_id))
    providers = db.session.execute(statement).all()
    scope_count = sum(int(row[3]) for row in providers)
    prior = sum(int(row[4]) for row in providers) / scope_count if scope_count else None
    switch_away = {}
    for _receiver, rates in ranking_switching.send(item_code, programme_id=programme_id):
        switch_away.update(rates or {})
    rows = []
    for provider_id, name, kind, count, total, satisfied, complaints_count in providers:
        summary = summarise(int(count), int(total), int(satisfied), prior)
        rows.append({"provider_id": provider_id, "name": name, "kind": kind, "ratings_count": int(count),
                     "mean_score": summary.mean, "bayesian_score": summary.bayesian,
                     "satisfaction_rate": summary.satisfaction_rate, "complaints_count": complaints_count,
                     "switch_away_rate": switch_away.get(provider_id)})
    rows.sort(key=lambda row: (row["bayesian_score"] is None, -(row["bayesian_score"] or 0), -row["ratings_count"],
                               row["provider_id"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows
