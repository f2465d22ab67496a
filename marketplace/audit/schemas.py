import json

from marshmallow import Schema, fields, validate

from marketplace.schemas import ID_RANGE, PageArgs


class AuditQuerySchema(PageArgs):
    entity = fields.String(validate=validate.Length(max=40))
    entity_id = fields.String(validate=validate.Length(max=64))
    on_behalf_of = fields.Integer(validate=ID_RANGE, metadata={
        "description": "Only what admins did for this recipient (代办)"})


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    at = fields.AwareDateTime(required=True)
    actor = fields.String(required=True, metadata={"description": "Username, or `system` for CLI and jobs"})
    actor_id = fields.Integer(allow_none=True)
    action = fields.String(required=True)
    entity = fields.String(required=True)
    entity_id = fields.String(required=True)
    data = fields.Function(lambda event: json.loads(event.data), required=True,
                           metadata={"type": "object"})
    region_code = fields.String(allow_none=True, metadata={
        "description": "The region the event concerns; null for every region (e.g. the catalogue)"})
    on_behalf_of = fields.Integer(allow_none=True, metadata={
        "description": "The recipient an admin acted for (代办: a choice, a complaint, a phone follow-up rating, "
                       "a printed card); null otherwise"})
    prev_hash = fields.String(required=True)
    hash = fields.String(required=True)


class VerificationSchema(Schema):
    ok = fields.Boolean(required=True)
    events = fields.Integer(required=True, metadata={"description": "Events verified before any break"})
    first_broken_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(allow_none=True)
    head_hash = fields.String(allow_none=True, metadata={"description": "Hash of the newest event when ok: "
                                                                       "publish it to anchor the chain"})
