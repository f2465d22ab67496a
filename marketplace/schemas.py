"""Schemas shared by every domain: the error envelope, list pagination, common field rules."""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache

import marshmallow as ma
from marshmallow import fields, validate

# Database ids in bodies and query strings: bounded so that no value overflows an integer column.
ID_RANGE = validate.Range(min=1, max=2**31 - 1)
# A mobile number (11 digits starting 1) or a landline with its area code.
PHONE_PATTERN = r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$"
REGION_CODE = validate.Regexp(r"^\d{6}$", error="A region code is 6 digits (GB/T 2260).")
REGION_PREFIX = validate.Regexp(r"^\d{2,6}$", error="A region scope is 2 to 6 leading digits of a region code.")

# The instants, days and months a request may name: 1970 to 2199. Wide enough for any programme and for
# "since 1970" in a filter; narrow enough that every conversion (to UTC or the local time zone, to a
# month's end) stays inside what Python and both databases represent (year 1 to 9999 overflowed them).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
PERIOD_PATTERN = r"^(19[7-9]\d|2[01]\d\d)-(0[1-9]|1[0-2])$"
_PERIOD = re.compile(PERIOD_PATTERN)

# Text no column can store: NUL (PostgreSQL refuses it) and lone UTF-16 surrogates (no UTF-8 encoding
# exists for them; JSON can still carry one as "\ud800").
UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Text may not contain NUL characters or lone surrogates (U+D800 to U+DFFF)."


def unstorable_text(value: str) -> bool:
    """Whether *value* holds a character no text column can store (NUL, a lone surrogate)."""
    return UNSTORABLE_TEXT.search(value) is not None


def _holds_unstorable_text(value) -> bool:
    """Whether any string in *value* — keys included, at any depth — is unstorable (without recursing)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if unstorable_text(item):
                return True
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def parse_period(text: str) -> tuple[int, int]:
    """(year, month) of a `YYYY-MM` period from 1970-01 to 2199-12. :raises ValueError: anything else."""
    match = _PERIOD.match(text) if isinstance(text, str) else None
    if match is None or match.end() != len(text):
        raise ValueError(f"not a month as YYYY-MM from 1970-01 to 2199-12: {text!r}")
    return int(match.group(1)), int(match.group(2))


class InputSchema(ma.Schema):
    """Base of every request schema: refuses text that no column can store (NUL, lone surrogates) anywhere
    in the input — bodies and query strings, keys included — before any field reads it."""

    @ma.pre_load
    def _refuse_unstorable_text(self, data, **_kwargs):
        if not isinstance(data, Mapping):
            if _holds_unstorable_text(data):
                raise ma.ValidationError(UNSTORABLE_MESSAGE)
            return data
        bad = {}
        for key, value in data.items():
            if _holds_unstorable_text(key):
                bad["_schema"] = [UNSTORABLE_MESSAGE]  # the key itself cannot be echoed back
            elif _holds_unstorable_text(value):
                bad[key] = [UNSTORABLE_MESSAGE]
        if bad:
            raise ma.ValidationError(bad)
        return data


class Instant(fields.AwareDateTime):
    """Every instant a request carries: ISO 8601 with an offset, from 1970-01-01T00:00:00Z to before 2200."""

    default_error_messages = {"out_of_range": "An instant from 1970-01-01T00:00:00Z to before 2200-01-01T00:00:00Z."}

    def _deserialize(self, value, attr, data, **kwargs):
        instant = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST <= instant < LATEST:
            raise self.make_error("out_of_range")
        return instant


class Day(fields.Date):
    """Every calendar date a request carries: YYYY-MM-DD from 1970-01-01 to 2199-12-31."""

    default_error_messages = {"out_of_range": "A date from 1970-01-01 to 2199-12-31."}

    def _deserialize(self, value, attr, data, **kwargs):
        day = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST.date() <= day < LATEST.date():
            raise self.make_error("out_of_range")
        return day


class Period(fields.String):
    """Every month a request carries: `YYYY-MM` from 1970-01 to 2199-12 (`parse_period`)."""

    default_error_messages = {"period": "A month as YYYY-MM, from 1970-01 to 2199-12."}

    def __init__(self, **kwargs):
        metadata = {"pattern": PERIOD_PATTERN, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        period = super()._deserialize(value, attr, data, **kwargs)
        try:
            parse_period(period)
        except ValueError as error:
            raise self.make_error("period") from error
        return period

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
