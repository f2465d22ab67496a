"""Market-integrity flags over HTTP: the list, one flag, and an admin's confirmation or dismissal."""

from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.schemas import ReasonSchema, page_of
from vouchers.anomaly_schemas import AnomalyQuerySchema, AnomalySchema
from vouchers.service import anomalies

blp = Blueprint("anomaly_flags", __name__, url_prefix="/api/v1",
                description="Market integrity: anomaly flags, confirmed (held from settlement) or dismissed")


@blp.get("/anomalies")
@blp.arguments(AnomalyQuerySchema(), location="query")
@blp.response(200, page_of(AnomalySchema))
@role_required("admin", "auditor", "provider")
def list_anomalies(query):
    """Anomaly flags, the most severe first: admins in scope and auditors see every one, a provider its own
    confirmed ones only (without recipient or staff login)."""
    return anomalies.list_flags(actor=require_actor(), **query)


@blp.get("/anomalies/<int:anomaly_id>")
@blp.response(200, AnomalySchema)
@role_required("admin", "auditor", "provider")
def get_anomaly(anomaly_id):
    """One anomaly flag (404 for a provider unless it is its own and confirmed)."""
    return anomalies.flag_view(anomaly_id, actor=require_actor())


@blp.post("/anomalies/<int:anomaly_id>/confirm")
@blp.arguments(ReasonSchema())
@blp.response(200, AnomalySchema)
@role_required("admin")
def confirm_anomaly(data, anomaly_id):
    """Confirm an open or dismissed flag: its redemptions are held out of settlement until it is dismissed.

    409 `invalid_transition` when it is confirmed already. Audited (`anomaly.confirmed`).
    """
    actor = require_actor()
    with transaction():
        flag = anomalies.confirm(flag=anomalies.get_flag(anomaly_id, actor=actor), reason=data["reason"],
                                 actor=actor, now=utcnow())
        return anomalies.view(flag, actor=actor)


@blp.post("/anomalies/<int:anomaly_id>/dismiss")
@blp.arguments(ReasonSchema())
@blp.response(200, AnomalySchema)
@role_required("admin")
def dismiss_anomaly(data, anomaly_id):
    """Dismiss an open or confirmed flag: a confirmed one's redemptions go into the next settlement draft.

    409 `invalid_transition` when it is dismissed already. Audited (`anomaly.dismissed`).
    """
    actor = require_actor()
    with transaction():
        flag = anomalies.dismiss(flag=anomalies.get_flag(anomaly_id, actor=actor), reason=data["reason"],
                                 actor=actor, now=utcnow())
        return anomalies.view(flag, actor=actor)
