from marketplace.api import Blueprint
from marketplace.auth.access import current_actor, require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.idempotency import idempotent
from marketplace.programmes import ledger, service
from marketplace.programmes.schemas import (
    AnomalyParametersSchema,
    BudgetAmendmentSchema,
    LedgerSchema,
    ProgrammeCreateSchema,
    ProgrammeQuerySchema,
    ProgrammeSchema,
    ReconciliationSchema,
)
from marketplace.schemas import page_of

blp = Blueprint("programmes", __name__, url_prefix="/api/v1/programmes",
                description="Programmes, their budgets and the budget ledger")


@blp.post("")
@blp.arguments(ProgrammeCreateSchema())
@blp.response(201, ProgrammeSchema)
@role_required("admin")
def create_programme(data):
    """Create a draft programme buying catalogue services."""
    with transaction():
        return service.create_programme(**data, actor=require_actor(), now=utcnow())


@blp.get("")
@blp.arguments(ProgrammeQuerySchema(), location="query")
@blp.response(200, page_of(ProgrammeSchema))
@role_required("admin", "auditor")
def list_programmes(query):
    """Programmes (a region-scoped admin sees those inside the region)."""
    return service.list_programmes(actor=current_actor(), **query)


@blp.get("/<int:programme_id>")
@blp.response(200, ProgrammeSchema)
@role_required("admin", "auditor")
def get_programme(programme_id):
    """One programme."""
    return service.get_programme(programme_id, actor=current_actor())


@blp.post("/<int:programme_id>/budget")
@idempotent
@blp.arguments(BudgetAmendmentSchema())
@blp.response(200, LedgerSchema)
@role_required("admin")
def amend_budget(data, programme_id):
    """Allocate budget (positive) or take back unspent budget (negative); 409 `budget_below_committed`."""
    actor = require_actor()
    with transaction():
        programme = service.get_programme(programme_id, actor=actor)
        return service.amend_budget(programme=programme, **data, actor=actor, now=utcnow())


@blp.put("/<int:programme_id>/anomaly-parameters")
@blp.arguments(AnomalyParametersSchema())
@blp.response(200, ProgrammeSchema)
@role_required("admin")
def set_anomaly_parameters(data, programme_id):
    """Replace the programme's thresholds for the market-integrity rules (`{rule: {parameter: number}}`, null or
    `{}` for every default; docs/market-integrity.md lists each rule's parameters and defaults); audited with the
    reason. 422 `validation_error` names an unknown rule or parameter, or a value out of range."""
    actor = require_actor()
    with transaction():
        programme = service.get_programme(programme_id, actor=actor)
        return service.set_anomaly_parameters(programme=programme, **data, actor=actor, now=utcnow())


@blp.post("/<int:programme_id>/activate")
@blp.response(200, ProgrammeSchema)
@role_required("admin")
def activate(programme_id):
    """Open the programme for issuance; 409 `no_budget` when nothing is allocated."""
    actor = require_actor()
    with transaction():
        return service.activate(programme=service.get_programme(programme_id, actor=actor), actor=actor,
                                now=utcnow())


@blp.post("/<int:programme_id>/close")
@blp.response(200, ProgrammeSchema)
@role_required("admin")
def close(programme_id):
    """Close the programme: its open vouchers are revoked and their commitment released."""
    actor = require_actor()
    with transaction():
        return service.close(programme=service.get_programme(programme_id, actor=actor), actor=actor, now=utcnow())


@blp.get("/<int:programme_id>/ledger")
@blp.response(200, LedgerSchema)
@role_required("admin", "auditor")
def get_ledger(programme_id):
    """Balances derived from the programme's double-entry journal."""
    programme = service.get_programme(programme_id, actor=current_actor())
    return ledger.balances(programme.id)


@blp.get("/<int:programme_id>/reconciliation")
@blp.response(200, ReconciliationSchema)
@role_required("admin", "auditor")
def reconcile(programme_id):
    """Re-derive the balances from the source tables and report each check."""
    programme = service.get_programme(programme_id, actor=current_actor())
    return ledger.reconcile(programme.id)
