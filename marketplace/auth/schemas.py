from marshmallow import Schema, fields, validate

from marketplace.auth.models import ROLES
from marketplace.schemas import ID_RANGE, REGION_PREFIX, InputSchema


class CredentialsSchema(InputSchema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class UserSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    role = fields.String(required=True, metadata={"enum": list(ROLES)})
    provider_id = fields.Integer(allow_none=True)
    recipient_id = fields.Integer(allow_none=True)
    region_code = fields.String(allow_none=True, metadata={"description": "Admin's region scope (prefix)"})
    active = fields.Boolean()
    provider_manager = fields.Boolean(metadata={"description": "A provider's manager manages its staff logins"})
    created_at = fields.AwareDateTime()


class TokenSchema(Schema):
    token = fields.String(required=True, metadata={"description": "Send as `Authorization: Bearer <token>`"})
    token_type = fields.String(required=True)
    expires_at = fields.AwareDateTime(required=True)
    user = fields.Nested(UserSchema, required=True)


class SessionSchema(Schema):
    csrf_token = fields.String(
        required=True, metadata={"description": "Send as the X-CSRF-Token header on every state change"}
    )
    expires_at = fields.AwareDateTime(required=True)
    user = fields.Nested(UserSchema, required=True)


class UserCreateSchema(InputSchema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    provider_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=ID_RANGE)
    recipient_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=ID_RANGE)
    region_code = fields.String(load_default=None, allow_none=True, validate=REGION_PREFIX)
