from marshmallow import Schema, fields, validate

from marketplace.schemas import InputSchema


class StaffLoginCreateSchema(InputSchema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class ProviderLoginSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)
    provider_manager = fields.Boolean(required=True, metadata={
        "description": "The provider's manager (its first login): adds and deactivates the staff logins"})
    active = fields.Boolean(required=True, metadata={"description": "False: deactivated, every token revoked"})
    created_at = fields.AwareDateTime(required=True)
    last_login_at = fields.AwareDateTime(allow_none=True, metadata={"description": "None: never logged in"})
