"""Schemas shared by every domain: the error envelope, list pagination, common field rules."""

import marshmallow as ma
from marshmallow import fields, validate

REGION_CODE = validate.Regexp(r"^\d{6}$", error="A region code is 6 digits (GB/T 2260).")
REGION_PREFIX = validate.Regexp(r"^\d{2,6}$", error="A region scope is 2 to 6 leading digits of a region code.")


class ErrorBodySchema(ma.Schema):
    code = fields.String(required=True, metadata={"description": "Stable snake_case error code"})
    message = fields.String(required=True, metadata={"description": "Human-readable explanation"})
    details = fields.Dict(
        required=True, metadata={"description": "Structured details; `fields` for validation errors"}
    )


class ErrorSchema(ma.Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageArgs(ma.Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


def page_of(item_schema: type[ma.Schema]) -> type[ma.Schema]:
    """Return the list envelope schema `{items, page, per_page, total}` for *item_schema*."""
    name = item_schema.__name__.removesuffix("Schema") + "PageSchema"
    return type(
        name,
        (ma.Schema,),
        {
            "items": fields.List(fields.Nested(item_schema), required=True),
            "page": fields.Integer(required=True),
            "per_page": fields.Integer(required=True),
            "total": fields.Integer(required=True),
        },
    )
