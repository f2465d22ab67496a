from marshmallow import Schema, fields, validate, validates_schema
from marshmallow.exceptions import ValidationError

from marketplace.recipients.models import RECIPIENT_STATUSES, TAGS
from marketplace.schemas import REGION_CODE, Day, InputSchema, PageArgs, Trimmed


class RecipientCreateSchema(InputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))
    id_number = fields.String(required=True, validate=validate.Length(max=64), metadata={
        "description": "GB 11643 resident ID (18 characters); never stored or returned"})
    phone = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=20))
    region_code = fields.String(required=True, validate=REGION_CODE)
    address = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    tags = fields.List(fields.String(validate=validate.OneOf(TAGS)), load_default=list)


class RecipientSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    id_number_masked = fields.String(required=True, metadata={"example": "510131********123X"})
    birth_date = fields.Date(required=True)
    sex = fields.String(required=True, metadata={"enum": ["male", "female"]})
    phone = fields.String(allow_none=True)
    region_code = fields.String(required=True)
    address = fields.String(allow_none=True)
    tags = fields.List(fields.String(), required=True)
    status = fields.String(required=True, metadata={"enum": list(RECIPIENT_STATUSES)})
    status_effective_on = fields.Date(allow_none=True, metadata={
        "description": "The local date a move or a death took effect (null while active)"})
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)


class RecipientQuerySchema(PageArgs):
    region_code = fields.String(validate=validate.Regexp(r"^\d{2,6}$"))
    status = fields.String(validate=validate.OneOf(RECIPIENT_STATUSES))
    tag = fields.String(validate=validate.OneOf(TAGS))
    q = Trimmed(validate=validate.Length(max=50), metadata={
        "description": "Part of the name or phone number, or the last 4 characters of the masked ID number"})


class RecipientLookupSchema(InputSchema):
    id_number = fields.String(required=True, validate=validate.Length(max=64), metadata={
        "description": "GB 11643 resident ID (18 characters); looked up through the blind index, never stored, "
                       "logged or returned"})


class RecipientUpdateSchema(InputSchema):
    status = fields.String(validate=validate.OneOf(RECIPIENT_STATUSES), metadata={
        "description": "`moved` or `deceased` revokes the recipient's open vouchers"})
    effective_on = Day(metadata={
        "description": "The local date the move or the death took effect: not in the future, not before the "
                       "birth date; today's when left out. Returned as `status_effective_on`, cleared by `active`. "
                       "Given alone for a recipient who moved or died, it corrects the date"})
    tags = fields.List(fields.String(validate=validate.OneOf(TAGS)))
    phone = fields.String(validate=validate.Length(max=20))
    address = fields.String(validate=validate.Length(max=200))

    @validates_schema
    def _something_to_change(self, data, **_kwargs):
        if not data:
            raise ValidationError("Give at least one of status, effective_on, tags, phone, address.", "_schema")


class ImportFileSchema(InputSchema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class ImportErrorSchema(Schema):
    row = fields.Integer(required=True, metadata={"description": "Spreadsheet row number; the header is row 1"})
    field = fields.String(required=True)
    message = fields.String(required=True)


class ImportResultSchema(Schema):
    created = fields.Integer(required=True)
    duplicates = fields.Integer(required=True)
    errors = fields.List(fields.Nested(ImportErrorSchema), required=True,
                         metadata={"description": "The first 1000 problems"})
    rows = fields.Integer(metadata={"description": "Data rows read"})
    error_rows = fields.Integer(metadata={"description": "Rows refused"})


class AccountCreateSchema(InputSchema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
