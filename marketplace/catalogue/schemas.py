from marshmallow import Schema, fields, validate

from marketplace.catalogue.models import ITEM_CODE_PATTERN, NATURES
from marketplace.schemas import InputSchema

# A service's duration in minutes: at least a minute, at most a day.
DURATION_MINUTES = validate.Range(min=1, max=24 * 60)


class CategorySchema(Schema):
    code = fields.String(required=True)
    name = fields.String(required=True)


class NegativeListRuleSchema(Schema):
    code = fields.String(required=True, metadata={"description": "The item nature this rule refuses"})
    name = fields.String(required=True)
    reason = fields.String(required=True)


class ItemQuerySchema(InputSchema):
    category_code = fields.String(validate=validate.Length(max=40))


class ItemSchema(Schema):
    id = fields.Integer(required=True)
    code = fields.String(required=True)
    name = fields.String(required=True)
    category_code = fields.String(required=True)
    unit = fields.String(required=True)
    standard_price_fen = fields.Integer(required=True)
    nature = fields.String(required=True)
    description = fields.String(allow_none=True)
    default_duration_minutes = fields.Integer(allow_none=True, metadata={
        "description": "How long one service usually takes; the market-integrity rules use it for a service "
                       "recorded without a duration (null: 30 minutes)"})


class ItemCreateSchema(InputSchema):
    code = fields.String(required=True, validate=validate.Regexp(
        ITEM_CODE_PATTERN, error="1–32 letters, digits, '_', '.', '-'."))
    name = fields.String(required=True, validate=validate.Length(min=1, max=80))
    category_code = fields.String(required=True, validate=validate.Length(min=1, max=40))
    unit = fields.String(required=True, validate=validate.Length(min=1, max=8))
    standard_price_fen = fields.Integer(required=True, strict=True,
                                        validate=validate.Range(min=1, max=10_000_000))
    nature = fields.String(required=True, validate=validate.OneOf(NATURES), metadata={
        "description": "Only `service` is purchasable; the others are refused with 422 `negative_list`"})
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
    default_duration_minutes = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=DURATION_MINUTES,
        metadata={"description": "How long one service usually takes, 1–1440 minutes (optional)"})


class ItemUpdateSchema(InputSchema):
    default_duration_minutes = fields.Integer(
        required=True, allow_none=True, strict=True, validate=DURATION_MINUTES,
        metadata={"description": "How long one service usually takes, 1–1440 minutes; null clears it"})
