"""Market integrity over HTTP: running the rules over a programme's month (API.md "Market integrity")."""

from marketplace import metrics
from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.programmes.service import get_programme
from vouchers.schemas import AnomalyDetectionInputSchema, AnomalyDetectionResultSchema
from vouchers.service import anomaly_detection

blp = Blueprint("anomaly_detection", __name__, url_prefix="/api/v1",
                description="Market integrity: the rules run over a programme's month, their findings kept as flags")


@blp.post("/programmes/<int:programme_id>/anomalies/detect")
@blp.arguments(AnomalyDetectionInputSchema())
@blp.response(200, AnomalyDetectionResultSchema)
@role_required("admin")
def detect_anomalies(data, programme_id):
    """Run every market-integrity rule over the period; new findings become open flags, none twice.

    Runs by itself before every settlement draft too.
    """
    actor = require_actor()
    with transaction():
        programme = get_programme(programme_id, actor=actor)
        result = anomaly_detection.detect_anomalies(programme=programme, period=data["period"], actor=actor,
                                                    now=utcnow())
    metrics.record_anomalies(result.created_by_rule)  # counted once committed
    return result
