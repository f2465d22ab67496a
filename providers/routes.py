from flask import jsonify

from marketplace.api import Blueprint
from marketplace.auth.access import current_actor, require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.programmes.service import get_programme
from marketplace.schemas import ReasonSchema, page_of
from providers.schemas import (
    AcceptanceSchema,
    ApplicationCreateSchema,
    ApplicationQuerySchema,
    ApplicationSchema,
    ComplaintQuerySchema,
    ComplaintSchema,
    EnrolmentCreateSchema,
    EnrolmentSchema,
    ProviderCreateSchema,
    ProviderQuerySchema,
    ProviderSchema,
    RankingQuerySchema,
    RankingSchema,
    ResolutionSchema,
    StatusChangeSchema,
)
from providers.service import applications, complaints, enrolment, qualification, ranking, registry

blp = Blueprint("providers", __name__, url_prefix="/api/v1",
                description="Providers (承接主体): registration, qualification, programme enrolment")


@blp.post("/providers")
@blp.arguments(ProviderCreateSchema())
@blp.response(201, ProviderSchema)
def register_provider(data):
    """Register a provider (self-service with its first login, or by an admin); it starts `pending`.

    422 `invalid_credit_code` (details.part says which part of the GB 32100 code is wrong),
    409 `duplicate_provider`.
    """
    with transaction():
        return registry.register_provider(**data, actor=current_actor(), now=utcnow())


@blp.get("/providers")
@blp.arguments(ProviderQuerySchema(), location="query")
@blp.response(200, page_of(ProviderSchema))
def list_providers(query):
    """Approved providers (admins and auditors see every status and may filter by it)."""
    return registry.list_providers(actor=current_actor(), **query)


@blp.get("/providers/<int:provider_id>")
@blp.response(200, ProviderSchema)
def get_provider(provider_id):
    """One provider: approved ones are public; others only for admins, auditors and its own staff."""
    return registry.get_provider(provider_id, actor=current_actor())


@blp.post("/providers/<int:provider_id>/approve")
@blp.arguments(ReasonSchema())
@blp.response(200, ProviderSchema)
@role_required("admin")
def approve_provider(data, provider_id):
    """Approve a pending provider (it may then enrol and be chosen). 409 `invalid_transition` otherwise."""
    return _change_status(provider_id, "approve", data["reason"])


@blp.post("/providers/<int:provider_id>/suspend")
@blp.arguments(ReasonSchema())
@blp.response(200, ProviderSchema)
@role_required("admin")
def suspend_provider(data, provider_id):
    """Suspend an approved provider (it cannot be chosen or redeem); 409 `invalid_transition` otherwise."""
    return _change_status(provider_id, "suspend", data["reason"])


@blp.post("/providers/<int:provider_id>/reinstate")
@blp.arguments(ReasonSchema())
@blp.response(200, ProviderSchema)
@role_required("admin")
def reinstate_provider(data, provider_id):
    """Reinstate a suspended provider. 409 `invalid_transition` otherwise."""
    return _change_status(provider_id, "reinstate", data["reason"])


@blp.post("/providers/<int:provider_id>/revoke")
@blp.arguments(ReasonSchema())
@blp.response(200, ProviderSchema)
@role_required("admin")
def revoke_provider(data, provider_id):
    """Revoke a provider for good; its staff keep read access to their history. 409 `invalid_transition` otherwise."""
    return _change_status(provider_id, "revoke", data["reason"])


def _change_status(provider_id, action, reason):
    with transaction():
        return qualification.change_status(provider_id=provider_id, action=action, reason=reason,
                                           actor=require_actor(), now=utcnow())


@blp.get("/providers/<int:provider_id>/status-history")
@blp.response(200, StatusChangeSchema(many=True))
@role_required("admin", "auditor", "provider")
def status_history(provider_id):
    """Every qualification decision about the provider, with reasons."""
    return registry.status_history(provider_id=provider_id, actor=require_actor())


@blp.get("/providers/<int:provider_id>/enrolments")
@blp.response(200, EnrolmentSchema(many=True))
@role_required("admin", "auditor", "provider")
def provider_enrolments(provider_id):
    """The programmes the provider is enrolled in (its own staff, admins and auditors)."""
    return enrolment.enrolments_of(provider_id=provider_id, actor=require_actor())


@blp.post("/programmes/<int:programme_id>/providers")
@blp.arguments(EnrolmentCreateSchema())
@blp.response(201, EnrolmentSchema)
@role_required("admin")
def enrol_provider(data, programme_id):
    """Enrol an approved provider: 409 `provider_not_approved`, 422 `no_matching_items`."""
    actor = require_actor()
    with transaction():
        return enrolment.enrol(programme=get_programme(programme_id, actor=actor), provider_id=data["provider_id"],
                               actor=actor, now=utcnow())


@blp.get("/programmes/<int:programme_id>/providers")
@blp.response(200, ProviderSchema(many=True))
def programme_providers(programme_id):
    """Providers enrolled in the programme (approved ones; admins and auditors see all)."""
    actor = current_actor()
    return enrolment.programme_providers(programme=get_programme(programme_id, actor=actor), actor=actor)


@blp.get("/rankings")
@blp.arguments(RankingQuerySchema(), location="query")
@blp.response(200, RankingSchema)
def rankings(query):
    """Providers of a service ranked by satisfaction (public policy, 优胜劣汰).

    `bayesian_score = (C·m + Σ scores) / (C + n)`: n is the provider's number of ratings for the item,
    m the mean of all ratings in the same scope (item, region, programme) and C = RANKING_PRIOR_WEIGHT
    (10 by default), so one 5-star rating cannot outrank many 4.8s. Ordered by bayesian_score (no ratings
    last), then ratings_count, then provider_id. `satisfaction_rate` is the share of scores 4 and 5;
    `complaints_count` counts every complaint filed against the provider.
    """
    # The rows are plain JSON values already: dumping a thousand of them through RankingSchema (which
    # still documents them) would cost more than computing the ranking (docs/performance.md, K2).
    return jsonify({"items": ranking.rankings(**query)})


@blp.get("/complaints")
@blp.arguments(ComplaintQuerySchema(), location="query")
@blp.response(200, page_of(ComplaintSchema))
@role_required("admin", "auditor", "provider", "recipient")
def list_complaints(query):
    """Complaints: admins and auditors see all, a provider those against it, a recipient their own."""
    return complaints.list_complaints(actor=require_actor(), **query)


@blp.get("/complaints/<int:complaint_id>")
@blp.response(200, ComplaintSchema)
@role_required("admin", "auditor", "provider", "recipient")
def get_complaint(complaint_id):
    """One complaint."""
    return complaints.get_complaint(complaint_id, actor=require_actor())


@blp.post("/complaints/<int:complaint_id>/resolve")
@blp.arguments(ResolutionSchema())
@blp.response(200, ComplaintSchema)
@role_required("admin")
def resolve_complaint(data, complaint_id):
    """Resolve a complaint as upheld or not; a redemption it held goes back to settlement."""
    with transaction():
        return complaints.resolve_complaint(complaint_id=complaint_id, **data, actor=require_actor(), now=utcnow())


# --- applications to join a programme (申请加入项目) ----------------------------------------------------

@blp.post("/programmes/<int:programme_id>/applications")
@blp.arguments(ApplicationCreateSchema())
@blp.response(201, ApplicationSchema)
@role_required("provider")
def apply_to_programme(data, programme_id):
    """Ask, as the provider's manager, to join an active programme; an admin accepts or refuses it.

    403 `forbidden` for the provider's scanning staff; 409 `programme_not_active`, `provider_not_approved`,
    `already_enrolled`, `application_pending` (one pending application per programme and provider);
    422 `no_matching_items` (it offers none of the programme's items), `no_matching_regions`.
    """
    with transaction():
        return applications.apply(programme_id=programme_id, **data, actor=require_actor(), now=utcnow())


@blp.get("/programme-applications")
@blp.arguments(ApplicationQuerySchema(), location="query")
@blp.response(200, page_of(ApplicationSchema))
@role_required("admin", "auditor", "provider")
def list_applications(query):
    """Applications to join programmes, newest first: admins see those of programmes in their region,
    auditors all, a provider's staff their own provider's."""
    return applications.list_applications(actor=require_actor(), **query)


@blp.post("/programme-applications/<int:application_id>/accept")
@blp.arguments(AcceptanceSchema())
@blp.response(200, ApplicationSchema)
@role_required("admin")
def accept_application(data, application_id):
    """Accept a pending application: the provider is enrolled in the programme at once (as
    `POST /programmes/{id}/providers`, whose refusals apply; the application then stays pending).

    409 `invalid_transition` when it is decided already (of two racing decisions one wins).
    """
    with transaction():
        return applications.accept(application_id=application_id, reason=data["reason"], actor=require_actor(),
                                   now=utcnow())


@blp.post("/programme-applications/<int:application_id>/refuse")
@blp.arguments(ReasonSchema())
@blp.response(200, ApplicationSchema)
@role_required("admin")
def refuse_application(data, application_id):
    """Refuse a pending application with a reason the provider reads. 409 `invalid_transition` when decided."""
    with transaction():
        return applications.refuse(application_id=application_id, reason=data["reason"], actor=require_actor(),
                                   now=utcnow())
