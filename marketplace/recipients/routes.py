import io

from flask import current_app, request

from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.auth.schemas import UserSchema
from marketplace.db import transaction, utcnow
from marketplace.recipients import service
from marketplace.recipients.schemas import (
    AccountCreateSchema,
    ImportFileSchema,
    ImportResultSchema,
    RecipientCreateSchema,
    RecipientLookupSchema,
    RecipientQuerySchema,
    RecipientSchema,
    RecipientUpdateSchema,
)
from marketplace.schemas import page_of

blp = Blueprint("recipients", __name__, url_prefix="/api/v1/recipients",
                description="Recipients (服务对象); ID numbers are never stored or returned")


@blp.before_request
def _allow_large_imports():
    # Only the CSV import may send a large body; everything else keeps MAX_CONTENT_LENGTH.
    if request.endpoint == "recipients.import_recipients":
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]


@blp.post("")
@blp.arguments(RecipientCreateSchema())
@blp.response(201, RecipientSchema)
@role_required("admin")
def create_recipient(data):
    """Enrol a recipient: 422 `invalid_id_number` (details.part says what is wrong), 409 `duplicate_recipient`."""
    with transaction():
        return service.create_recipient(**data, actor=require_actor(), now=utcnow())


@blp.post("/import")
@blp.arguments(ImportFileSchema(), location="files")
@blp.response(200, ImportResultSchema)
@role_required("admin")
def import_recipients(data):
    """Import a CSV (UTF-8, header `name,id_number,phone,region_code,address,tags`, tags `;`-separated).

    Valid rows are created in one transaction; bad rows are reported with spreadsheet row numbers;
    duplicates are counted, never created. Bodies over IMPORT_MAX_BYTES are refused with 413.
    """
    text = io.TextIOWrapper(data["file"].stream, encoding="utf-8-sig", newline="")
    with transaction():
        return service.import_recipients(text=text, actor=require_actor(), now=utcnow())


@blp.get("")
@blp.arguments(RecipientQuerySchema(), location="query")
@blp.response(200, page_of(RecipientSchema))
@role_required("admin", "recipient")
def list_recipients(query):
    """Recipients inside the admin's region (a recipient sees only themself).

    `q` matches part of the name or phone number, or exactly the last 4 characters of the masked ID number.
    """
    return service.list_recipients(actor=require_actor(), **query)


@blp.post("/lookup")
@blp.arguments(RecipientLookupSchema())
@blp.response(200, RecipientSchema)
@role_required("admin")
def lookup_recipient(data):
    """Find a recipient by national ID number (through the blind index; the number is neither stored nor logged).

    422 `invalid_id_number` for a number that is not valid; 404 `not_found` when nobody in your region has it
    (a recipient of another region is not revealed).
    """
    with transaction():
        return service.lookup_by_id_number(id_number=data["id_number"], actor=require_actor(), now=utcnow())


@blp.get("/<int:recipient_id>")
@blp.response(200, RecipientSchema)
@role_required("admin", "recipient")
def get_recipient(recipient_id):
    """One recipient (admin in scope, or the recipient themself)."""
    return service.get_recipient(recipient_id, actor=require_actor())


@blp.patch("/<int:recipient_id>")
@blp.arguments(RecipientUpdateSchema())
@blp.response(200, RecipientSchema)
@role_required("admin")
def update_recipient(data, recipient_id):
    """Change status, tags, phone or address; `moved`/`deceased` revokes open vouchers.

    `effective_on` (optional): the local date the move or death took effect, today's when left out; kept as
    `status_effective_on` (services delivered after it are flagged) and cleared when the recipient returns.
    """
    actor = require_actor()
    with transaction():
        recipient = service.get_recipient(recipient_id, actor=actor)
        return service.update_recipient(recipient=recipient, **data, actor=actor, now=utcnow())


@blp.post("/<int:recipient_id>/account")
@blp.arguments(AccountCreateSchema())
@blp.response(201, UserSchema)
@role_required("admin")
def create_account(data, recipient_id):
    """Give the recipient a login of their own."""
    actor = require_actor()
    with transaction():
        recipient = service.get_recipient(recipient_id, actor=actor)
        return service.create_account(recipient=recipient, **data, actor=actor, now=utcnow())
