import re

from marshmallow import Schema, fields, validate

from marketplace.schemas import ID_RANGE, InputSchema, Instant, PageArgs, Period, Trimmed
from vouchers.models import PRESENCE_KINDS, SWITCH_REASONS, VOUCHER_STATUSES
from vouchers.serials import serial_for
from vouchers.tokens import SHORT_CODE_DIGITS

SHORT_CODE_RE = re.compile(f"[0-9]{{{SHORT_CODE_DIGITS}}}")


class ShortCode(fields.String):
    """The 8 digits of a presence code as typed: spaces (any whitespace) are ignored, nothing else is."""

    default_error_messages = {"short_code": f"Type the {SHORT_CODE_DIGITS} digits of the code, e.g. 1234 5678."}

    def __init__(self, **kwargs):
        metadata = {"example": "1234 5678", "maxLength": 40, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        digits = "".join(text.split())
        if len(text) > 40 or not SHORT_CODE_RE.fullmatch(digits):
            raise self.make_error("short_code")
        return digits


class IssuanceInputSchema(InputSchema):
    period = Period(required=True)


class IssuanceResultSchema(Schema):
    period = fields.String(required=True)
    recipients = fields.Integer(required=True)
    vouchers = fields.Integer(required=True)
    committed_fen = fields.Integer(required=True)
    already_issued = fields.Boolean(metadata={"description": "True when this period was issued before: nothing new"})


class SupplementaryIssueSchema(InputSchema):
    programme_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    recipient_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    item_code = fields.String(required=True, validate=validate.Length(min=1, max=32))
    count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))


class VoucherSchema(Schema):
    id = fields.Integer(required=True)
    serial = fields.String(required=True, metadata={"description": "Readable aloud; Crockford base32 + check"})
    programme_id = fields.Integer(required=True)
    recipient_id = fields.Integer(required=True)
    item_code = fields.String(required=True)
    face_value_fen = fields.Integer(required=True, metadata={"description": "What the bureau pays"})
    copay_fen = fields.Integer(required=True, metadata={"description": "What the recipient pays the provider"})
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(required=True)
    status = fields.String(required=True, metadata={"enum": list(VOUCHER_STATUSES)})
    status_reason = fields.String(allow_none=True)
    issued_at = fields.AwareDateTime(required=True)


class VoucherQuerySchema(PageArgs):
    recipient_id = fields.Integer(validate=ID_RANGE)
    status = fields.String(validate=validate.OneOf(VOUCHER_STATUSES))
    programme_id = fields.Integer(validate=ID_RANGE)



class ExpiryResultSchema(Schema):
    expired = fields.Integer(required=True)
    released_fen = fields.Integer(required=True)


class ChoiceInputSchema(InputSchema):
    programme_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    item_code = fields.String(required=True, validate=validate.Length(min=1, max=32))
    provider_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    switch_reason = fields.String(validate=validate.OneOf(SWITCH_REASONS), metadata={
        "description": "Why the recipient leaves the provider chosen before; only when switching from another "
                       "provider. `other` needs a `switch_note`"})
    switch_note = Trimmed(validate=validate.Length(max=200), metadata={
        "description": "The reason in the recipient's words, at most 200 characters once trimmed; only with a "
                       "`switch_reason`"})


class ChoiceSchema(Schema):
    recipient_id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    item_code = fields.String(required=True)
    provider_id = fields.Integer(required=True)
    chosen_at = fields.AwareDateTime(required=True)
    chosen_by = fields.Integer(allow_none=True)


class ChoiceEventSchema(Schema):
    programme_id = fields.Integer(required=True)
    item_code = fields.String(required=True)
    from_provider_id = fields.Integer(allow_none=True)
    to_provider_id = fields.Integer(required=True)
    chosen_at = fields.AwareDateTime(required=True)
    chosen_by = fields.Integer(allow_none=True)
    acted_as = fields.String(required=True, metadata={"description": "`recipient`, or `admin` acting for them"})
    switch_reason = fields.String(allow_none=True, metadata={"enum": [*SWITCH_REASONS, None]})
    switch_note = fields.String(allow_none=True)


class ChoicesSchema(Schema):
    current = fields.List(fields.Nested(ChoiceSchema), required=True)
    history = fields.List(fields.Nested(ChoiceEventSchema), required=True)


class PresenceCodeSchema(Schema):
    token = fields.String(required=True, metadata={"description": "For the QR code"})
    expires_at = fields.AwareDateTime(required=True)
    short_code = fields.String(required=True, metadata={
        "description": "The same presence code as 8 digits to type in where the QR code cannot be scanned; "
                       "using either uses both", "example": "12345678"})
    short_code_display = fields.String(metadata={"description": "The 8 digits as shown: `1234 5678`"})


class PresenceImageQuerySchema(InputSchema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=80))


class RedemptionInputSchema(InputSchema):
    presence_token = fields.String(validate=validate.Length(min=1, max=80))
    short_code = ShortCode(metadata={"description": "The presence code's 8 digits, typed in place of "
                                                    "`presence_token` (spaces ignored)"})
    item_code = fields.String(validate=validate.Length(min=1, max=32))
    voucher_token = fields.String(validate=validate.Length(min=1, max=80))
    delivered_at = Instant(metadata={"description": "When the service was delivered (default: now)"})
    duration_minutes = fields.Integer(strict=True, validate=validate.Range(min=0, max=24 * 60))
    notes = fields.String(validate=validate.Length(max=1000))


class RedemptionSchema(Schema):
    id = fields.Integer(required=True)
    voucher_id = fields.Integer(required=True)
    voucher_serial = fields.Function(lambda redemption: serial_for(redemption.voucher_id))
    programme_id = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    recipient_id = fields.Integer(required=True)
    item_code = fields.String(required=True)
    presence = fields.String(required=True, metadata={
        "enum": list(PRESENCE_KINDS),
        "description": "`presence_code` (scanned), `typed_code` (its 8 digits typed in) or `voucher_card`"})
    face_value_fen = fields.Integer(required=True)
    copay_fen = fields.Integer(required=True)
    delivered_at = fields.AwareDateTime(required=True)
    duration_minutes = fields.Integer(allow_none=True)
    notes = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": ["completed", "reversed"]})
    reversed_at = fields.AwareDateTime(allow_none=True)
    reversal_reason = fields.String(allow_none=True)
    settlement_id = fields.Integer(allow_none=True)


class RedemptionQuerySchema(PageArgs):
    provider_id = fields.Integer(validate=ID_RANGE)
    programme_id = fields.Integer(validate=ID_RANGE)
    from_ = Instant(data_key="from")
    to = Instant()


class EvaluationSchema(InputSchema):
    provider_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))


class AnomalyDetectionInputSchema(InputSchema):
    period = Period(required=True)


class AnomalyDetectionResultSchema(Schema):
    period = fields.String(required=True)
    flags_created = fields.Integer(required=True, metadata={"description": "New flags (open) from this run"})
    flags_total = fields.Integer(required=True, metadata={
        "description": "The programme's flags for the period after this run, any status"})
    by_rule = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True, metadata={
        "description": "flags_total by rule, every rule listed"})


class SettlementInputSchema(InputSchema):
    period = Period(required=True)
    evaluations = fields.List(fields.Nested(EvaluationSchema), load_default=list, metadata={
        "description": "Third-party performance evaluations (第三方绩效评价), 0–100 per provider"})


class SettlementSchema(Schema):
    id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    period = fields.String(required=True)
    redemptions_count = fields.Integer(required=True)
    gross_fen = fields.Integer(required=True)
    performance_score = fields.Integer(required=True)
    satisfaction_score = fields.Integer()
    complaint_score = fields.Integer()
    upheld_complaints = fields.Integer()
    evaluation_score = fields.Integer(allow_none=True)
    pay_percent = fields.Integer(required=True)
    net_fen = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": ["draft", "approved", "paid"]})
    flagged_for_termination = fields.Boolean(required=True)
    created_at = fields.AwareDateTime(required=True)
    created_by = fields.Integer(allow_none=True)
    approved_at = fields.AwareDateTime(allow_none=True)
    approved_by = fields.Integer(allow_none=True)
    paid_at = fields.AwareDateTime(allow_none=True)
    payment_reference = fields.String(allow_none=True)


class SettlementLineSchema(Schema):
    redemption_id = fields.Integer(required=True, attribute="id")
    voucher_serial = fields.Function(lambda redemption: serial_for(redemption.voucher_id), required=True)
    item_code = fields.String(required=True)
    delivered_at = fields.AwareDateTime(required=True)
    face_value_fen = fields.Integer(required=True)


class SettlementDetailSchema(SettlementSchema):
    """A SettlementDetail: the settlement's own fields and its lines."""

    lines = fields.List(fields.Nested(SettlementLineSchema), required=True)

    def get_attribute(self, obj, attr, default):
        return super().get_attribute(obj if attr == "lines" else obj.settlement, attr, default)


class SettlementQuerySchema(PageArgs):
    programme_id = fields.Integer(validate=ID_RANGE)
    period = Period()
    status = fields.String(validate=validate.OneOf(["draft", "approved", "paid"]))
    provider_id = fields.Integer(validate=ID_RANGE)


class PaymentSchema(InputSchema):
    payment_reference = fields.String(required=True, validate=validate.Length(min=1, max=100))


class SwitchingQuerySchema(InputSchema):
    period = Period(metadata={"description": "The month, `YYYY-MM` (default: last month)"})


class ProviderSwitchingSchema(Schema):
    provider_id = fields.Integer(required=True)
    recipients_start = fields.Integer(required=True, metadata={
        "description": "Distinct recipients whose chosen provider for some item was this one at the month's start"})
    gained = fields.Integer(required=True, metadata={
        "description": "Distinct recipients who switched to it from another provider during the month"})
    lost = fields.Integer(required=True, metadata={
        "description": "Distinct recipients who switched from it to another provider during the month"})
    churn_rate = fields.Float(required=True, allow_none=True, metadata={
        "description": "lost / recipients_start (4 decimals); null when recipients_start is 0"})
    switches_away = fields.Integer(required=True, metadata={"description": "Switches away during the month"})
    reasons = fields.Dict(keys=fields.String(validate=validate.OneOf(SWITCH_REASONS)), values=fields.Integer(),
                          required=True, metadata={"description": "The switches away counted by the reason given"})


class SwitchingReportSchema(Schema):
    programme_id = fields.Integer(required=True)
    period = fields.String(required=True)
    items = fields.List(fields.Nested(ProviderSwitchingSchema), required=True)
