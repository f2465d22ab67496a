"""Providers: registration, qualification (资质) decisions, programme enrolment, what each role sees."""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.auth import service as auth_service
from marketplace.catalogue import service as catalogue
from marketplace.db import db, paginate
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound, ValidationFailed
from marketplace.programmes.models import Programme
from marketplace.programmes.service import ProgrammeClosed
from marketplace.recipients.models import Recipient
from marketplace.regions import covers, is_region_code, region_prefix
from providers.creditcode import InvalidCreditCodeError, parse_credit_code
from providers.models import (
    Complaint,
    Enrolment,
    Provider,
    ProviderItem,
    ProviderRegion,
    ProviderStatusChange,
    Rating,
    RatingAggregate,
)

SATISFIED_SCORE = 4  # a score of 4 or 5 counts as satisfied
# Qualification decisions: action → (statuses it applies to, resulting status, what the audit calls it).
TRANSITIONS = {
    "approve": ({"pending"}, "approved", "provider.approved"),
    "suspend": ({"approved"}, "suspended", "provider.suspended"),
    "reinstate": ({"suspended"}, "approved", "provider.reinstated"),
    "revoke": ({"pending", "approved", "suspended"}, "revoked", "provider.revoked"),
}


class InvalidCreditCode(DomainError):
    status, code, message = 422, "invalid_credit_code", "The unified social credit code is not valid."


class DuplicateProvider(DomainError):
    status, code, message = 409, "duplicate_provider", "A provider with this credit code is registered."


class ProviderNotApproved(DomainError):
    status, code, message = 409, "provider_not_approved", "Only an approved provider may do this."


class NoMatchingItems(DomainError):
    status, code, message = 422, "no_matching_items", "The provider offers none of the programme's items."


class NoMatchingRegions(DomainError):
    status, code, message = 422, "no_matching_regions", "The provider serves no region inside the programme's region."


class AlreadyEnrolled(DomainError):
    status, code, message = 409, "already_enrolled", "The provider is already enrolled in this programme."


def register_provider(*, name: str, kind: str, credit_code: str, legal_representative: str, phone: str,
                      address: str, region_codes: list[str], item_codes: list[str], capacity: int,
                      account: dict | None, actor, now: datetime) -> Provider:
    """Register a provider as `pending`; self-registration (no actor) also creates its first login.

    No minimum founding age is asked for (policy: 不再就成立年限做硬性规定).

    :raises InvalidCreditCode: the code fails GB 32100 (details.part says which part).
    :raises ValidationFailed: unknown regions or items, or a self-registration without an account.
    :raises Forbidden: a logged-in non-admin, or a scoped admin registering a provider outside their region.
    :raises DuplicateProvider: the credit code is registered already.
    """
    if actor is not None and actor.role != "admin":
        raise Forbidden("Providers register themselves without logging in, or are registered by an admin.")
    try:
        parsed = parse_credit_code(credit_code)
    except InvalidCreditCodeError as error:
        raise InvalidCreditCode(error.message, part=error.part, fields={"credit_code": [error.message]}) from error
    problems = {}
    region_codes = sorted(set(region_codes))
    bad_regions = [code for code in region_codes if not is_region_code(code)]
    if bad_regions:
        problems["region_codes"] = f"Not GB/T 2260 region codes: {', '.join(bad_regions)}."
    item_codes = sorted(set(item_codes))
    missing = [code for code in item_codes if code not in catalogue.items_by_code(item_codes)]
    if missing:
        problems["item_codes"] = f"Not catalogue services: {', '.join(missing)}."
    if actor is None and not account:
        problems["account"] = "Self-registration creates the provider's first login: give a username and password."
    if problems:
        raise ValidationFailed(problems)
    if actor is not None and actor.region_code is not None and not any(
            covers(actor.region_code, code) or covers(code, actor.region_code) for code in region_codes):
        raise Forbidden("The provider serves no region inside your scope.")
    if db.session.scalar(select(Provider.id).where(Provider.credit_code == parsed.code)) is not None:
        raise DuplicateProvider()

    provider = Provider(
        name=name, kind=kind, credit_code=parsed.code, legal_representative=legal_representative, phone=phone,
        address=address, capacity=capacity, status="pending", created_at=now, status_changed_at=now,
        region_rows=[ProviderRegion(region_code=code, prefix=region_prefix(code)) for code in region_codes],
        item_rows=[ProviderItem(item_code=code) for code in item_codes],
    )
    try:
        with db.session.begin_nested():
            db.session.add(provider)
    except IntegrityError as error:
        raise DuplicateProvider() from error
    _record_status(provider, None, "pending", "registered", actor, now)
    if account:
        auth_service.create_user(username=account["username"], password=account["password"], role="provider",
                                 provider_id=provider.id, actor=actor, now=now, scope_checked=True)
    audit.record(action="provider.registered", entity="provider", entity_id=provider.id, actor=actor, now=now,
                 data={"name": name, "kind": kind, "credit_code": parsed.code, "region_codes": region_codes,
                       "item_codes": item_codes, "self_registered": actor is None})
    return attach_rating_summaries([provider])[0]


def _record_status(provider: Provider, from_status: str | None, to_status: str, reason: str, actor,
                   now: datetime) -> None:
    db.session.add(ProviderStatusChange(provider_id=provider.id, from_status=from_status, to_status=to_status,
                                        reason=reason, actor_id=getattr(actor, "id", None), at=now))


def check_admin_scope(actor, provider: Provider) -> None:
    """:raises Forbidden: a scoped admin acting on a provider serving no part of their region.

    A provider serving the whole city (510100) serves the county admin's 510131 too.
    """
    if actor.region_code is not None and not any(
            covers(actor.region_code, code) or covers(code, actor.region_code) for code in provider.region_codes):
        raise Forbidden("The provider serves no region inside your scope.")


def change_status(*, provider: Provider, action: str, reason: str, actor, now: datetime) -> Provider:
    """Approve, suspend, reinstate or revoke a provider, with a reason.

    :raises InvalidTransition: the action does not apply to the provider's current status.
    """
    allowed_from, to_status, audit_action = TRANSITIONS[action]
    check_admin_scope(actor, provider)
    if provider.status not in allowed_from:
        raise InvalidTransition(f"Cannot {action} a provider that is {provider.status}.",
                                status=provider.status, action=action)
    from_status = provider.status
    provider.status, provider.status_reason, provider.status_changed_at = to_status, reason, now
    _record_status(provider, from_status, to_status, reason, actor, now)
    db.session.flush()
    audit.record(action=audit_action, entity="provider", entity_id=provider.id, actor=actor, now=now,
                 data={"from": from_status, "to": to_status, "reason": reason})
    return attach_rating_summaries([provider])[0]


def get_provider(provider_id: int, *, actor) -> Provider:
    """The provider as *actor* may see it: approved ones for everyone, any for admins and its own staff.

    :raises NotFound: no such provider, or not visible to the actor.
    """
    provider = db.session.get(Provider, provider_id)
    if provider is None or not can_see(actor, provider):
        raise NotFound("No such provider.")
    for_viewer([provider], actor)
    return provider


def can_see(actor, provider: Provider) -> bool:
    if provider.status == "approved":
        return True
    if actor is None:
        return False
    return actor.role in ("admin", "auditor") or (actor.role == "provider" and actor.provider_id == provider.id)


def serves_region(region_code: str):
    """SQL condition: the provider serves *region_code* (one of its regions covers it)."""
    return Provider.region_rows.any(literal(region_code).startswith(ProviderRegion.prefix))


def list_providers(*, actor, page: int, per_page: int, status: str | None = None, kind: str | None = None,
                   item_code: str | None = None, region_code: str | None = None) -> dict:
    """Approved providers for the public; every provider, filterable by status, for admins and auditors."""
    statement = select(Provider).order_by(Provider.id)
    if actor is None or actor.role not in ("admin", "auditor"):
        statement = statement.where(Provider.status == "approved")
    elif status is not None:
        statement = statement.where(Provider.status == status)
    if kind is not None:
        statement = statement.where(Provider.kind == kind)
    if item_code is not None:
        statement = statement.where(exists().where(ProviderItem.provider_id == Provider.id,
                                                   ProviderItem.item_code == item_code))
    if region_code is not None:
        statement = statement.where(serves_region(region_code))
    page_ = paginate(statement, page=page, per_page=per_page)
    for_viewer(page_["items"], actor)
    return page_


def status_history(provider: Provider) -> list[ProviderStatusChange]:
    return db.session.scalars(select(ProviderStatusChange).where(ProviderStatusChange.provider_id == provider.id)
                              .order_by(ProviderStatusChange.id)).all()


def enrol(*, programme: Programme, provider: Provider, actor, now: datetime) -> Enrolment:
    """Admit an approved provider to a programme whose items and region it serves.

    :raises ProgrammeClosed: the programme is closed.
    :raises ProviderNotApproved: the provider is pending, suspended or revoked.
    :raises NoMatchingItems: it offers none of the programme's items.
    :raises NoMatchingRegions: it serves no region inside the programme's region.
    :raises AlreadyEnrolled: it is enrolled already.
    """
    if programme.status == "closed":
        raise ProgrammeClosed()
    if provider.status != "approved":
        raise ProviderNotApproved(status=provider.status)
    programme_items = {item.item_code for item in programme.items}
    if not programme_items & set(provider.item_codes):
        raise NoMatchingItems(programme_items=sorted(programme_items), provider_items=provider.item_codes)
    if not any(covers(programme.region_code, code) or covers(code, programme.region_code)
               for code in provider.region_codes):
        raise NoMatchingRegions(programme_region=programme.region_code, provider_regions=provider.region_codes)
    if db.session.scalar(select(Enrolment.id).where(Enrolment.programme_id == programme.id,
                                                    Enrolment.provider_id == provider.id)) is not None:
        raise AlreadyEnrolled()
    enrolment = Enrolment(programme_id=programme.id, provider_id=provider.id, enrolled_at=now,
                          enrolled_by=getattr(actor, "id", None))
    try:
        with db.session.begin_nested():
            db.session.add(enrolment)
    except IntegrityError as error:
        raise AlreadyEnrolled() from error
    audit.record(action="programme.provider_enrolled", entity="programme", entity_id=programme.id, actor=actor,
                 now=now, data={"provider_id": provider.id, "enrolment_id": enrolment.id})
    return enrolment


def programme_providers(*, programme: Programme, actor) -> list[Provider]:
    """Providers enrolled in a programme (approved ones only, except for admins and auditors)."""
    statement = (select(Provider).join(Enrolment, Enrolment.provider_id == Provider.id)
                 .where(Enrolment.programme_id == programme.id).order_by(Provider.id))
    if actor is None or actor.role not in ("admin", "auditor"):
        statement = statement.where(Provider.status == "approved")
    return for_viewer(db.session.scalars(statement).all(), actor)


def enrolments_of(provider: Provider) -> list[Enrolment]:
    return db.session.scalars(select(Enrolment).where(Enrolment.provider_id == provider.id)
                              .order_by(Enrolment.id)).all()


# --- ratings, complaints and ranking ----------------------------------------------------------------

class AlreadyRated(DomainError):
    status, code, message = 409, "already_rated", "This service has already been rated."


class RatingWindowClosed(DomainError):
    status, code, message = 410, "rating_window_closed", "The time to rate this service has passed."


def record_rating(*, redemption_id: int, provider_id: int, programme_id: int, item_code: str, recipient_id: int,
                  delivered_at: datetime, rating_window_days: int, score: int, comment: str | None, source: str,
                  actor, now: datetime) -> Rating:
    """Record the one rating of a delivered service and update the ranking totals in the same transaction.

    The caller (which knows the redemption) has checked that the actor may rate it.

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


def bayesian_score(*, prior_mean: float | None, ratings_count: int, score_sum: int) -> float | None:
    """(C·m + Σ scores) / (C + n): few ratings lean on the scope's mean m, many speak for themselves.

    None when nobody in the scope is rated, and for an unrated provider when C = 0 (no prior at all).
    """
    weight = current_app.config["RANKING_PRIOR_WEIGHT"]
    if prior_mean is None or weight + ratings_count == 0:
        return None
    return (weight * prior_mean + score_sum) / (weight + ratings_count)


def _summary(count: int, total: int, satisfied: int, prior_mean: float | None) -> dict:
    return {
        "count": count,
        "mean": total / count if count else None,
        "bayesian": bayesian_score(prior_mean=prior_mean, ratings_count=count, score_sum=total),
        "satisfaction_rate": satisfied / count if count else None,
    }


def for_viewer(providers: list[Provider], actor) -> list[Provider]:
    """Hide contact persons and phones from anonymous viewers (public answers carry no phones)."""
    for provider in providers:
        provider.redacted = actor is None
    return attach_rating_summaries(providers)


def attach_rating_summaries(providers: list[Provider]) -> list[Provider]:
    """Give each provider its `rating_summary` over every programme and item (m = mean of all ratings)."""
    if not providers:
        return providers
    agg = RatingAggregate
    grand_count, grand_sum = db.session.execute(
        select(func.coalesce(func.sum(agg.ratings_count), 0), func.coalesce(func.sum(agg.score_sum), 0))).one()
    prior = grand_sum / grand_count if grand_count else None
    rows = db.session.execute(
        select(agg.provider_id, func.sum(agg.ratings_count), func.sum(agg.score_sum), func.sum(agg.satisfied_count))
        .where(agg.provider_id.in_([provider.id for provider in providers])).group_by(agg.provider_id)).all()
    totals = {provider_id: (int(count), int(total), int(satisfied)) for provider_id, count, total, satisfied in rows}
    for provider in providers:
        provider.rating_summary = _summary(*totals.get(provider.id, (0, 0, 0)), prior)
    return providers


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
    complaints = select(func.count()).where(Complaint.provider_id == Provider.id).scalar_subquery()
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
    rows = []
    for provider_id, name, kind, count, total, satisfied, complaints_count in providers:
        summary = _summary(int(count), int(total), int(satisfied), prior)
        rows.append({"provider_id": provider_id, "name": name, "kind": kind, "ratings_count": int(count),
                     "mean_score": summary["mean"], "bayesian_score": summary["bayesian"],
                     "satisfaction_rate": summary["satisfaction_rate"], "complaints_count": complaints_count})
    rows.sort(key=lambda row: (row["bayesian_score"] is None, -(row["bayesian_score"] or 0), -row["ratings_count"],
                               row["provider_id"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def file_complaint(*, provider: Provider, text: str, recipient_id: int | None, redemption_id: int | None, actor,
                   now: datetime) -> Complaint:
    """Record a complaint. About a redemption, it puts that redemption on hold until resolved.

    The caller has checked that a recipient complains only about their own redemption.

    :raises Forbidden: a region-scoped admin filing for a recipient outside their region, or (naming no
        recipient) about a provider serving no part of it.
    """
    if not _complaint_in_scope(actor, provider=provider, recipient_id=recipient_id):
        raise Forbidden("This complaint is outside your region.")
    complaint = Complaint(provider_id=provider.id, recipient_id=recipient_id, redemption_id=redemption_id, text=text,
                          status="open", created_at=now, created_by=actor.id)
    db.session.add(complaint)
    db.session.flush()
    audit.record(action="complaint.filed", entity="provider", entity_id=provider.id, actor=actor, now=now,
                 data={"complaint_id": complaint.id, "redemption_id": redemption_id})
    return complaint


def _complaint_in_scope(actor, *, provider: Provider, recipient_id: int | None) -> bool:
    """Whether a complaint is inside a region-scoped admin's region: its recipient lives there or, when it
    names no recipient, its provider serves part of it. Everyone else is not limited by region."""
    if actor.role != "admin" or actor.region_code is None:
        return True
    if recipient_id is not None:
        recipient = db.session.get(Recipient, recipient_id)
        return recipient is not None and covers(actor.region_code, recipient.region_code)
    return any(covers(actor.region_code, code) or covers(code, actor.region_code) for code in provider.region_codes)


def _complaints_in_scope(region_code: str):
    """SQL condition on Complaint: _complaint_in_scope for an admin scoped to *region_code*."""
    prefix = region_prefix(region_code)
    recipient_inside = exists().where(Recipient.id == Complaint.recipient_id, Recipient.region_code.startswith(prefix))
    provider_overlaps = exists().where(ProviderRegion.provider_id == Complaint.provider_id,
                                       or_(ProviderRegion.prefix.startswith(prefix),
                                           literal(prefix).startswith(ProviderRegion.prefix)))
    return or_(recipient_inside, and_(Complaint.recipient_id.is_(None), provider_overlaps))


def get_complaint(complaint_id: int, *, actor) -> Complaint:
    """:raises NotFound: no such complaint, or not about the asking provider or by the asking recipient.
    :raises Forbidden: outside a region-scoped admin's region.
    """
    complaint = db.session.get(Complaint, complaint_id)
    if complaint is None or (actor.role == "provider" and complaint.provider_id != actor.provider_id) or (
            actor.role == "recipient" and complaint.recipient_id != actor.recipient_id):
        raise NotFound("No such complaint.")
    if not _complaint_in_scope(actor, provider=db.session.get(Provider, complaint.provider_id),
                               recipient_id=complaint.recipient_id):
        raise Forbidden("This complaint is outside your region.")
    return complaint


def list_complaints(*, actor, page: int, per_page: int, provider_id: int | None = None,
                    status: str | None = None) -> dict:
    statement = select(Complaint).order_by(Complaint.id.desc())
    if actor.role == "provider":
        statement = statement.where(Complaint.provider_id == actor.provider_id)
    elif actor.role == "recipient":
        statement = statement.where(Complaint.recipient_id == actor.recipient_id)
    elif actor.role == "admin" and actor.region_code is not None:
        statement = statement.where(_complaints_in_scope(actor.region_code))
    if provider_id is not None:
        statement = statement.where(Complaint.provider_id == provider_id)
    if status is not None:
        statement = statement.where(Complaint.status == status)
    return paginate(statement, page=page, per_page=per_page)


def resolve_complaint(*, complaint: Complaint, upheld: bool, resolution: str, actor, now: datetime) -> Complaint:
    """Close a complaint as upheld or not; a redemption it held is released for settlement.

    :raises InvalidTransition: it is resolved already (also by a racing resolution).
    """
    # A guarded UPDATE: of two admins resolving at once, exactly one wins (READ COMMITTED re-checks the
    # status once the first commits), so no resolution silently overwrites another.
    resolved = db.session.execute(
        update(Complaint).where(Complaint.id == complaint.id, Complaint.status == "open")
        .values(status="resolved", upheld=upheld, resolution=resolution, resolved_at=now, resolved_by=actor.id)
        .execution_options(synchronize_session=False)).rowcount
    if resolved != 1:
        raise InvalidTransition("The complaint is already resolved.")
    db.session.refresh(complaint)
    audit.record(action="complaint.resolved", entity="provider", entity_id=complaint.provider_id, actor=actor,
                 now=now, data={"complaint_id": complaint.id, "upheld": upheld})
    return complaint


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
