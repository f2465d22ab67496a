from marshmallow import Schema, fields

from marketplace.programmes.schemas import LedgerSchema
from marketplace.schemas import ID_RANGE, InputSchema, Period
from providers.schemas import RatingSummarySchema


class CountByItemSchema(Schema):
    item_code = fields.String(required=True)
    count = fields.Integer(required=True)
    face_value_fen = fields.Integer(required=True)


class CountByProviderSchema(Schema):
    provider_id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    count = fields.Integer(required=True)
    face_value_fen = fields.Integer(required=True)


class CountByDaySchema(Schema):
    date = fields.String(required=True, metadata={"description": "Local calendar day (LOCAL_TIMEZONE)"})
    count = fields.Integer(required=True)
    face_value_fen = fields.Integer(required=True)


class ReservedShareSchema(Schema):
    target_percent = fields.Integer(required=True)
    actual_percent = fields.Float(allow_none=True, required=True,
                                  metadata={"description": "Social organisations' share of redeemed value"})
    social_organisation_fen = fields.Integer(required=True)
    redeemed_fen = fields.Integer(required=True)


class DashboardSchema(Schema):
    ledger = fields.Nested(LedgerSchema, required=True)
    burn_rate_fen_per_day = fields.Integer(required=True, metadata={
        "description": "Value redeemed over the last burn_window_days, per day"})
    burn_window_days = fields.Integer(required=True)
    projected_exhaustion_date = fields.Date(allow_none=True, required=True, metadata={
        "description": "When available + committed runs out at the burn rate (null when nothing is spent)"})
    redemptions_by_item = fields.List(fields.Nested(CountByItemSchema), required=True)
    redemptions_by_provider = fields.List(fields.Nested(CountByProviderSchema), required=True)
    redemptions_by_day = fields.List(fields.Nested(CountByDaySchema), required=True)
    reserved_share = fields.Nested(ReservedShareSchema, required=True)


class PublicItemSchema(Schema):
    item_code = fields.String(required=True)
    name = fields.String(required=True)
    unit = fields.String(required=True)
    standard_price_fen = fields.Integer(required=True)
    unit_price_fen = fields.Integer(required=True)
    monthly_quota = fields.Integer(required=True)


class PublicProgrammeSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    authority = fields.String(required=True)
    region_code = fields.String(required=True)
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)
    status = fields.String(required=True)
    items = fields.List(fields.Nested(PublicItemSchema), required=True)
    budget_allocated_fen = fields.Integer(required=True)
    budget_spent_fen = fields.Integer(required=True, metadata={"description": "Redeemed and settled"})
    vouchers_issued = fields.Integer(required=True)
    vouchers_redeemed = fields.Integer(required=True)
    vouchers_counted_at = fields.AwareDateTime(
        required=True, metadata={"description": "When the voucher counts were counted: at most 5 minutes ago "
                                                "(money figures are as of the request)"})




class PublicSettlementQuerySchema(InputSchema):
    programme_id = fields.Integer(validate=ID_RANGE)
    period = Period()


class PublicSettlementSchema(Schema):
    programme_id = fields.Integer(required=True)
    period = fields.String(required=True)
    provider_id = fields.Integer(required=True)
    provider_name = fields.String(required=True)
    provider_kind = fields.String(required=True)
    redemptions_count = fields.Integer(required=True)
    gross_fen = fields.Integer(required=True)
    performance_score = fields.Integer(required=True)
    pay_percent = fields.Integer(required=True)
    net_fen = fields.Integer(required=True, metadata={"description": "Paid (or to be paid) to the provider"})
    status = fields.String(required=True)
    flagged_for_termination = fields.Boolean(required=True)




class PublicProviderSchema(Schema):
    """A provider as the public sees it: no contact person, no phone."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    credit_code = fields.String(required=True)
    address = fields.String(required=True)
    region_codes = fields.List(fields.String(), required=True)
    item_codes = fields.List(fields.String(), required=True)
    rating = fields.Nested(RatingSummarySchema, required=True)

    def get_attribute(self, obj, attr, default):
        return obj.rating if attr == "rating" else super().get_attribute(obj.provider, attr, default)
