"""Staff pages for recipients: `/staff/recipients`, search and look-up by ID number.

The full ID number is posted (never put in an address, where logs and history would keep it), looked
up through the blind index and dropped; the page then opens the recipient for acting on their behalf.
"""

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l

from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError, ValidationFailed
from marketplace.recipients import service
from marketplace.recipients.models import RECIPIENT_STATUSES, TAGS
from marketplace.recipients.schemas import RecipientLookupSchema, RecipientQuerySchema
from marketplace.web.forms import domain_refusal, field_errors, form_input

PER_PAGE = 25
TAG_NAMES = {"disabled": _l("失能"), "low_income": _l("低保"), "extreme_poverty": _l("特困"),
             "advanced_age": _l("高龄"), "living_alone": _l("独居")}
STATUS_NAMES = {"active": _l("在册"), "moved": _l("已迁出"), "deceased": _l("已故")}
ACT_ENDPOINT = "staff_acting.home"  # the vouchers domain's pages for acting on a recipient's behalf (代办)

staff_recipients = Blueprint("staff_recipients", __name__, template_folder="templates")


def _act_url(recipient_id: int) -> str | None:
    if ACT_ENDPOINT not in current_app.view_functions:
        return None
    return url_for(ACT_ENDPOINT, recipient_id=recipient_id)


def _render(*, status: int = 200, query: dict | None = None, found: dict | None = None, errors=None,
            lookup_errors=None):
    return render_template("staff_recipients/index.html", query=query or {}, found=found, errors=errors or {},
                           lookup_errors=lookup_errors or {}, tags=TAGS, statuses=RECIPIENT_STATUSES,
                           tag_names=TAG_NAMES, status_names=STATUS_NAMES, act_url=_act_url,
                           args={k: v for k, v in request.args.items() if k != "page"}), status


@staff_recipients.get("/staff/recipients")
@role_required("admin", "auditor")
def index():
    actor = require_actor()
    try:
        query = form_input(RecipientQuerySchema(), source=request.args)
    except ValidationFailed as refused:
        return _render(status=422, errors=field_errors(refused))
    query["per_page"] = PER_PAGE
    found = service.list_recipients(actor=actor, **query)
    return _render(query=query, found=found)


@staff_recipients.post("/staff/recipients/lookup")
@role_required("admin")
def lookup():
    actor = require_actor()
    try:
        data = form_input(RecipientLookupSchema())
        with transaction():
            recipient = service.lookup_by_id_number(id_number=data["id_number"], actor=actor, now=utcnow())
    except DomainError as refused:
        errors = domain_refusal(refused)
        if refused.code == "not_found":
            said = gettext("您的区域内没有登记这个身份证号码的老人。请核对号码，或用姓名、电话查找。")
            errors = {"id_number": [said]}
        elif refused.code == "invalid_id_number":
            errors = {"id_number": errors.get("_form") or errors.get("id_number")}
        return _render(status=refused.status, lookup_errors=errors)
    act = _act_url(recipient.id)
    if act is not None and recipient.status == "active":
        return redirect(act)
    # Nothing to act on (moved or deceased): show the one recipient found, as a search would.
    return _render(found={"items": [recipient], "page": 1, "per_page": PER_PAGE, "total": 1})
