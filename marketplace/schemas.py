"""Schemas shared by every domain: the error envelope, list pagination, common field rules."""

from collections.abc import Mapping
from functools import cache

import marshmallow as ma
from marshmallow import fields, validate

# Database ids in bodies and query strings: bounded so that no value overflows an integer column.
ID_RANGE = validate.Range(min=1, max=2**31 - 1)
# A mobile number (11 digits starting 1) or a landline with its area code.
PHONE_PATTERN = r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$"
REGION_CODE = validate.Regexp(r"^\d{6}$", error="A region code is 6 digits (GB/T 2260).")
REGION_PREFIX = validate.Regexp(r"^\d{2,6}$", error="A region scope is 2 to 6 leading digits of a region code.")


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_contains_nul(key) or _contains_nul(value[key]) for key in value)
    if isinstance(value, list | tuple):
        return any(_contains_nul(item) for item in value)
    return False


class InputSchema(ma.Schema):
    """Base of every request schema: refuses text holding NUL characters, which no database column can store."""

    @ma.pre_load
    def _refuse_nul(self, data, **_kwargs):
        if _contains_nul(data):
            raise ma.ValidationError("Text may not contain NUL characters.")
        return data


class ErrorBodySchema(ma.Schema):
    code = fields.String(required=True, metadata={"description": "Stable snake_case error code"})
    message = fields.String(required=True, metadata={"description": "Human-readable explanation"})
    details = fields.Dict(
        required=True, metadata={"description": "Structured details; `fields` for validation errors"}
    )


class ErrorSchema(ma.Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class PageArgs(InputSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class Trimmed(fields.String):
    """A string whose surrounding whitespace is removed before it is validated (so blanks are not a reason)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class Reason(Trimmed):
    """Every `reason` a request gives for a decision: at least 2 characters once trimmed (追加 is a
    reason, blanks are not), at most 500."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Length(min=2, max=500), **kwargs)


class ReasonSchema(InputSchema):
    """Every decision that needs a written reason (qualification, revocation, reversal)."""

    reason = Reason(required=True)


@cache
def list_of(item_schema: type[ma.Schema]) -> type[ma.Schema]:
    """Return the envelope schema `{items}` of a whole, unpaged list of *item_schema*; the view returns
    the list itself."""

    def wrap(_schema, items, **_kwargs):
        return {"items": items}

    name = item_schema.__name__.removesuffix("Schema") + "ListSchema"
    return type(name, (ma.Schema,), {"items": fields.List(fields.Nested(item_schema), required=True),
                                     "wrap": ma.pre_dump(wrap)})


@cache
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
