"""Market-integrity flags on the wire (API.md "Market integrity"): the list's filters and one flag."""

from marshmallow import Schema, fields, validate

from marketplace.programmes.integrity import RULES
from marketplace.schemas import ID_RANGE, PageArgs, Period
from vouchers.models import ANOMALY_SEVERITIES, ANOMALY_STATUSES


class AnomalyQuerySchema(PageArgs):
    programme_id = fields.Integer(validate=ID_RANGE)
    period = Period()
    status = fields.String(validate=validate.OneOf(ANOMALY_STATUSES), metadata={
        "description": "A provider sees confirmed flags only: any other status lists nothing"})
    rule = fields.String(validate=validate.OneOf(list(RULES)))
    provider_id = fields.Integer(validate=ID_RANGE)


class AnomalySchema(Schema):
    id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    period = fields.String(required=True, metadata={"description": "The local month YYYY-MM"})
    rule = fields.String(required=True, metadata={"enum": list(RULES)})
    severity = fields.String(required=True, metadata={"enum": list(ANOMALY_SEVERITIES)})
    provider_id = fields.Integer(allow_none=True)
    recipient_id = fields.Integer(allow_none=True, metadata={
        "description": "The recipient the finding is about, if any; always null for a provider"})
    staff_user_id = fields.Integer(allow_none=True, metadata={
        "description": "The staff login the finding is about, if any; always null for a provider"})
    redemption_ids = fields.List(fields.Integer(), required=True, metadata={
        "description": "The redemptions the flag is about: held out of settlement while it is confirmed"})
    evidence = fields.Dict(required=True, metadata={
        "description": "The figures behind the finding (times, counts, shares, thresholds); a provider's copy "
                       "leaves out anything naming a recipient"})
    explanation = fields.String(required=True, metadata={
        "description": "The finding in plain words, in the request's language (zh_CN or en)"})
    status = fields.String(required=True, metadata={"enum": list(ANOMALY_STATUSES)})
    created_at = fields.AwareDateTime(required=True)
    decided_by = fields.Integer(allow_none=True)
    decided_at = fields.AwareDateTime(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "The reason of the last decision"})
