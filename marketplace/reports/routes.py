from marketplace.api import Blueprint
from marketplace.auth.access import current_actor, role_required
from marketplace.db import utcnow
from marketplace.programmes.service import get_programme
from marketplace.reports import service
from marketplace.reports.schemas import (
    DashboardSchema,
    PublicProgrammeSchema,
    PublicProviderSchema,
    PublicSettlementQuerySchema,
    PublicSettlementSchema,
)
from marketplace.schemas import PageArgs, list_of, page_of
from providers.service import registry

blp = Blueprint("reports", __name__, url_prefix="/api/v1",
                description="Dashboards and public disclosure (信息公开); public answers carry no personal data")


@blp.get("/programmes/<int:programme_id>/dashboard")
@blp.response(200, DashboardSchema)
@role_required("admin", "auditor")
def dashboard(programme_id):
    """Ledger, burn rate, projected exhaustion, redemptions by item / provider / day, reserved share."""
    return service.dashboard(get_programme(programme_id, actor=current_actor()), now=utcnow())


@blp.get("/public/programmes")
@blp.response(200, list_of(PublicProgrammeSchema))
def public_programmes():
    """Active and closed programmes: services and standards, budget allocated and spent, vouchers."""
    return service.public_programmes(now=utcnow())


@blp.get("/public/programmes/<int:programme_id>")
@blp.response(200, PublicProgrammeSchema)
def public_programme(programme_id):
    """One programme as disclosed to the public."""
    return service.public_programme(programme_id, now=utcnow())


@blp.get("/public/settlements")
@blp.arguments(PublicSettlementQuerySchema(), location="query")
@blp.response(200, list_of(PublicSettlementSchema))
def public_settlements(query):
    """Per provider and month: net paid and performance score (approved and paid settlements)."""
    return service.public_settlements(**query)


@blp.get("/public/providers")
@blp.arguments(PageArgs(), location="query")
@blp.response(200, page_of(PublicProviderSchema))
def public_providers(query):
    """Approved providers with their rating summary."""
    return registry.list_providers(actor=None, **query)
