from marshmallow import Schema, fields, validate

from marketplace.catalogue.models import NATURES
from marketplace.schemas import InputSchema


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


class ItemCreateSchema(InputSchema):
    code = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$", error="1–32 letters, digits, '_', '.', '-'."))
    name = fields.String(required=True, validate=validate.Length(min=1, max=80))
    category_code = fields.String(required=True, validate=validate.Length(min=1, max=40))
    unit = fields.String(required=True, validate=validate.Length(min=1, max=8))
    standard_price_fen = fields.Integer(required=True, strict=True,
                                        validate=validate.Range(min=1, max=10_000_000))
    nature = fields.String(required=True, validate=validate.OneOf(NATURES), metadata={
        "description": "Only `service` is purchasable; the others are refused with 422 `negative_list`"})
    description = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=2000))
