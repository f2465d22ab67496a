from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from marketplace.catalogue.schemas import DURATION_MINUTES
from marketplace.programmes.models import PROGRAMME_STATUSES
from marketplace.recipients.models import TAGS
from marketplace.schemas import REGION_CODE, Day, InputSchema, PageArgs, Reason

PERCENT = validate.Range(min=0, max=100)


class ProgrammeItemInput(InputSchema):
    item_code = fields.String(required=True, validate=validate.Length(min=1, max=32))
    unit_price_fen = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1_000_000))
    monthly_quota = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100),
                                   metadata={"description": "Vouchers per eligible recipient per month"})
    min_duration_minutes = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=DURATION_MINUTES,
        metadata={"description": "The shortest plausible service, 1–1440 minutes (optional): a service recorded "
                                 "as shorter is flagged (`short_duration`)"})


class EligibilitySchema(InputSchema):
    min_age = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=150))
    tags_any = fields.List(fields.String(validate=validate.OneOf(TAGS)), load_default=list,
                           metadata={"description": "Eligible when the recipient has at least one (empty: any)"})


class SettlementRuleSchema(InputSchema):
    min_score = fields.Integer(required=True, strict=True, validate=PERCENT)
    pay_percent = fields.Integer(required=True, strict=True, validate=PERCENT)


def anomaly_parameters_field(**kwargs) -> fields.Dict:
    """`{rule: {parameter: number}}`, checked by the service against the rule table (integrity.parameter_errors)."""
    return fields.Dict(
        keys=fields.String(validate=validate.Length(max=64)), values=fields.Raw(), allow_none=True,
        metadata={"description": "The programme's own thresholds for the market-integrity rules, "
                                 "`{rule: {parameter: number}}`; a parameter left out takes its default "
                                 "(docs/market-integrity.md). Null or `{}`: every default",
                  "example": {"month_end_burst": {"z_threshold": 4}}},
        **kwargs)


class ProgrammeCreateSchema(InputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    authority = fields.String(required=True, validate=validate.Length(min=1, max=120))
    region_code = fields.String(required=True, validate=REGION_CODE)
    starts_on = Day(required=True)
    ends_on = Day(required=True)
    items = fields.List(fields.Nested(ProgrammeItemInput), required=True, validate=validate.Length(min=1, max=50))
    eligibility = fields.Nested(EligibilitySchema, load_default=lambda: {"min_age": None, "tags_any": []})
    copay_percent = fields.Dict(
        keys=fields.String(validate=validate.OneOf(("default", *TAGS))),
        values=fields.Integer(strict=True, validate=PERCENT),
        required=True,
        metadata={"description": "`default` plus optional per-tag percents; a recipient pays the lowest that "
                                 "applies"},
    )
    reserved_share_percent = fields.Integer(
        load_default=0, strict=True, validate=PERCENT,
        metadata={"description": "Share reserved for social organisations (预留份额)"})
    settlement_rules = fields.List(fields.Nested(SettlementRuleSchema), required=True,
                                   validate=validate.Length(min=1, max=20))
    rating_window_days = fields.Integer(load_default=30, strict=True, validate=validate.Range(min=1, max=365))
    reversal_window_hours = fields.Integer(load_default=48, strict=True, validate=validate.Range(min=0, max=720))
    choice_required = fields.Boolean(load_default=True)
    anomaly_parameters = anomaly_parameters_field(load_default=None)

    @validates_schema
    def _dates_ordered(self, data, **_kwargs):
        if "starts_on" in data and "ends_on" in data and data["ends_on"] < data["starts_on"]:
            raise ValidationError("The programme must end on or after the day it starts.", "ends_on")


class ProgrammeItemSchema(Schema):
    item_code = fields.String(required=True)
    unit_price_fen = fields.Integer(required=True)
    monthly_quota = fields.Integer(required=True)
    min_duration_minutes = fields.Integer(allow_none=True)


class ProgrammeSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    authority = fields.String(required=True)
    region_code = fields.String(required=True)
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)
    status = fields.String(required=True, metadata={"enum": list(PROGRAMME_STATUSES)})
    items = fields.List(fields.Nested(ProgrammeItemSchema), required=True)
    eligibility = fields.Nested(EligibilitySchema, required=True)
    copay_percent = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    reserved_share_percent = fields.Integer(required=True)
    settlement_rules = fields.List(fields.Nested(SettlementRuleSchema), required=True)
    rating_window_days = fields.Integer(required=True)
    reversal_window_hours = fields.Integer(required=True)
    choice_required = fields.Boolean(required=True)
    anomaly_parameters = fields.Dict(allow_none=True, metadata={
        "description": "The programme's own thresholds for the market-integrity rules (null: every default)"})
    created_at = fields.AwareDateTime(required=True)
    activated_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)


class ProgrammeQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(PROGRAMME_STATUSES))


class BudgetAmendmentSchema(InputSchema):
    amount_fen = fields.Integer(required=True, strict=True, validate=validate.Range(min=-10**12, max=10**12),
                                metadata={"description": "Positive allocates; negative takes unspent budget back"})
    reason = Reason(required=True)


class LedgerSchema(Schema):
    allocated_fen = fields.Integer(required=True)
    committed_fen = fields.Integer(required=True)
    redeemed_fen = fields.Integer(required=True)
    settled_fen = fields.Integer(required=True)
    released_fen = fields.Integer(required=True)
    available_fen = fields.Integer(required=True)
    deducted_fen = fields.Integer(metadata={"description": "Part of released_fen withheld for poor performance"})


class CheckSchema(Schema):
    name = fields.String(required=True)
    ok = fields.Boolean(required=True)
    expected = fields.Integer(required=True)
    actual = fields.Integer(required=True)
    description = fields.String()


class ReconciliationSchema(Schema):
    ok = fields.Boolean(required=True)
    checks = fields.List(fields.Nested(CheckSchema), required=True)


class AnomalyParametersSchema(InputSchema):
    anomaly_parameters = anomaly_parameters_field(required=True)
    reason = Reason(required=True, metadata={"description": "Why the thresholds change (kept in the audit trail)"})
