from marketplace.api import Blueprint
from marketplace.audit import service
from marketplace.audit.schemas import AuditEventSchema, AuditQuerySchema, VerificationSchema
from marketplace.auth.access import require_actor, role_required
from marketplace.metrics import record_audit_verification
from marketplace.schemas import page_of

blp = Blueprint("audit", __name__, url_prefix="/api/v1/audit", description="The tamper-evident audit trail")


@blp.get("")
@blp.arguments(AuditQuerySchema(), location="query")
@blp.response(200, page_of(AuditEventSchema))
@role_required("admin", "auditor")
def list_events(query):
    """List audit events, newest first, optionally for one entity (a region-scoped admin: its region's)."""
    return service.list_events(actor=require_actor(), **query)


@blp.get("/verify")
@blp.response(200, VerificationSchema)
@role_required("admin", "auditor")
def verify():
    """Re-hash the whole chain and name the first event that breaks it."""
    result = service.verify_chain()
    record_audit_verification(result.ok)
    return result
