from flask import has_request_context
from marshmallow import Schema, fields, validate

from marketplace.auth.access import current_actor
from marketplace.schemas import ID_RANGE, PHONE_PATTERN, REGION_CODE, InputSchema, PageArgs, Reason, Trimmed
from providers.models import KINDS, STATUSES


class AccountSchema(InputSchema):
    username = fields.String(required=True, validate=validate.Length(min=3, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class ProviderCreateSchema(InputSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=120))
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    credit_code = fields.String(required=True, validate=validate.Length(max=32), metadata={
        "description": "Unified social credit code (GB 32100, 18 characters); 422 `invalid_credit_code`"})
    legal_representative = fields.String(required=True, validate=validate.Length(min=1, max=50))
    phone = fields.String(required=True, validate=validate.Regexp(PHONE_PATTERN, error="Not a phone number."))
    address = fields.String(required=True, validate=validate.Length(min=1, max=200))
    region_codes = fields.List(fields.String(validate=REGION_CODE), required=True,
                               validate=validate.Length(min=1, max=100))
    item_codes = fields.List(fields.String(validate=validate.Length(min=1, max=32)), required=True,
                             validate=validate.Length(min=1, max=50))
    capacity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=1_000_000), metadata={
        "description": "Services the provider can deliver per month"})
    account = fields.Nested(AccountSchema, load_default=None, allow_none=True, metadata={
        "description": "The provider's first login; required for self-registration"})


class RatingSummarySchema(Schema):
    count = fields.Integer(required=True)
    mean = fields.Float(allow_none=True, required=True)
    bayesian = fields.Float(allow_none=True, required=True)
    satisfaction_rate = fields.Float(allow_none=True, required=True)


CONTACT_FIELDS = frozenset({"legal_representative", "phone"})


class ProviderSchema(Schema):
    """A ProviderProfile: the provider's own fields, its rating summary, and its contacts when the viewer
    may see them (logged-in users only: public answers carry no phones)."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": list(KINDS)})
    credit_code = fields.String(required=True)
    legal_representative = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    address = fields.String(required=True)
    region_codes = fields.List(fields.String(), required=True)
    item_codes = fields.List(fields.String(), required=True)
    capacity = fields.Integer(required=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    status_reason = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    status_changed_at = fields.AwareDateTime(required=True)
    rating = fields.Nested(RatingSummarySchema, required=True, metadata={
        "description": "count, mean, Bayesian score (C·m + Σ)/(C + n) with m the mean of all ratings, share of 4–5"})

    def get_attribute(self, obj, attr, default):
        if attr == "rating":
            return obj.rating
        if attr in CONTACT_FIELDS and not obj.contacts_visible:
            return None
        return super().get_attribute(obj.provider, attr, default)


class ProviderQuerySchema(PageArgs):
    status = fields.String(validate=validate.OneOf(STATUSES), metadata={"description": "Admins and auditors only"})
    kind = fields.String(validate=validate.OneOf(KINDS))
    item_code = fields.String(validate=validate.Length(min=1, max=32))
    region_code = fields.String(validate=REGION_CODE, metadata={"description": "Providers serving this region"})


class StatusChangeSchema(Schema):
    from_status = fields.String(allow_none=True)
    to_status = fields.String(required=True)
    reason = fields.String(required=True)
    actor_id = fields.Integer(allow_none=True)
    at = fields.AwareDateTime(required=True)


class EnrolmentCreateSchema(InputSchema):
    provider_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)


class EnrolmentSchema(Schema):
    id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    enrolled_at = fields.AwareDateTime(required=True)


class RatingInputSchema(InputSchema):
    score = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=5))
    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))
    source = fields.String(load_default="recipient", validate=validate.OneOf(["recipient", "phone_followup"]),
                           metadata={"description": "`phone_followup` when an admin records a 回访 rating"})


class RatingSchema(Schema):
    id = fields.Integer(required=True)
    redemption_id = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    item_code = fields.String(required=True)
    score = fields.Integer(required=True)
    comment = fields.String(allow_none=True)
    source = fields.String(required=True)
    rated_by = fields.Integer(required=True)
    created_at = fields.AwareDateTime(required=True)


class RankingQuerySchema(InputSchema):
    item_code = fields.String(required=True, validate=validate.Length(min=1, max=32))
    region_code = fields.String(validate=REGION_CODE)
    programme_id = fields.Integer(validate=ID_RANGE)


class RankingRowSchema(Schema):
    rank = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    ratings_count = fields.Integer(required=True)
    mean_score = fields.Float(allow_none=True, required=True)
    bayesian_score = fields.Float(allow_none=True, required=True)
    satisfaction_rate = fields.Float(allow_none=True, required=True)
    complaints_count = fields.Integer(required=True, metadata={
        "description": "Upheld complaints against the provider (open and not-upheld ones are not counted)"})
    switch_away_rate = fields.Float(required=True, allow_none=True, metadata={
        "description": "Of the recipients who chose it for the item (in the programme, when given), the share who "
                       "later switched away; null when fewer than 5 chose it"})


class RankingSchema(Schema):
    items = fields.List(fields.Nested(RankingRowSchema), required=True)


class ComplaintInputSchema(InputSchema):
    provider_id = fields.Integer(required=True, strict=True, validate=ID_RANGE)
    redemption_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=ID_RANGE)
    recipient_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=ID_RANGE,
                                  metadata={"description": "Admins filing for a recipient (e.g. after a call)"})
    text = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class ComplaintSchema(Schema):
    id = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    recipient_id = fields.Integer(allow_none=True)
    redemption_id = fields.Integer(allow_none=True)
    text = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": ["open", "resolved"]})
    upheld = fields.Boolean(allow_none=True)
    resolution = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    resolved_at = fields.AwareDateTime(allow_none=True)
    answer = fields.String(allow_none=True, metadata={
        "description": "The provider's one answer, given by its manager while the complaint was open"})
    answered_at = fields.AwareDateTime(allow_none=True)
    answered_by = fields.Integer(allow_none=True, metadata={
        "description": "The login that answered: shown to admins and auditors only"})

    def get_attribute(self, obj, attr, default):
        # Who complained is never shown to the provider complained about, nor its staff's ids to anyone
        # but the bureau (null for them).
        if attr in COMPLAINT_VIEWER_FIELDS and _viewer_role() not in COMPLAINT_VIEWER_FIELDS[attr]:
            return None
        return super().get_attribute(obj, attr, default)


class ComplaintQuerySchema(PageArgs):
    provider_id = fields.Integer(validate=ID_RANGE)
    status = fields.String(validate=validate.OneOf(["open", "resolved"]))


class ResolutionSchema(InputSchema):
    resolution = fields.String(required=True, validate=validate.Length(min=3, max=2000))
    upheld = fields.Boolean(required=True, metadata={"description": "Whether the complaint was found justified"})


# --- applications to join a programme (申请加入项目) ----------------------------------------------------

APPLICATION_STATUSES = ("pending", "accepted", "refused")


class ApplicationCreateSchema(InputSchema):
    note = Trimmed(load_default=None, allow_none=True, validate=validate.Length(max=500), metadata={
        "description": "What the provider tells the bureau (staff, experience in the area); optional"})


class ApplicationSchema(Schema):
    id = fields.Integer(required=True)
    programme_id = fields.Integer(required=True)
    provider_id = fields.Integer(required=True)
    note = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": list(APPLICATION_STATUSES)})
    created_at = fields.AwareDateTime(required=True)
    decided_at = fields.AwareDateTime(allow_none=True)
    reason = fields.String(allow_none=True, metadata={"description": "The admin's reason for the decision"})


class ApplicationQuerySchema(PageArgs):
    programme_id = fields.Integer(validate=ID_RANGE)
    status = fields.String(validate=validate.OneOf(APPLICATION_STATUSES))
    provider_id = fields.Integer(validate=ID_RANGE, metadata={"description": "Admins and auditors (a provider sees "
                                                                             "only its own anyway)"})


class AcceptanceSchema(InputSchema):
    reason = Reason(load_default=None, allow_none=True, metadata={"description": "Optional when accepting"})


# --- complaints: who sees which field, and the provider's answer ------------------------------------

# A ComplaintSchema field → the roles that see it (null for the others).
COMPLAINT_VIEWER_FIELDS = {"recipient_id": frozenset({"admin", "auditor", "recipient"}),
                           "answered_by": frozenset({"admin", "auditor"})}


def _viewer_role() -> str | None:
    actor = current_actor() if has_request_context() else None
    return actor.role if actor is not None else None


class ComplaintAnswerSchema(InputSchema):
    answer = Trimmed(required=True, validate=validate.Length(min=2, max=2000), metadata={
        "description": "2–2000 characters once trimmed; given once, while the complaint is open"})
