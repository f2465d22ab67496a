"""The provider's programmes `/provider/programmes`: the programmes it serves, the active ones in its regions
it could join, and its applications to join, with the bureau's decision and reason.

Any of the provider's logins sees the page; only its manager applies (the service says so:
marketplace.auth.access.require_provider_manager). The apply form calls the same service as
`POST /api/v1/programmes/{id}/applications` and reads the note through the API's own schema; it carries a
form key, so a double tap or a reload applies once.
"""

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.web.forms import domain_refusal, form_input
from providers.schemas import ApplicationCreateSchema
from providers.service import applications

provider_programmes = Blueprint("provider_programmes", __name__, template_folder="templates",
                                url_prefix="/provider/programmes")

PROGRAMME_STATUS_WORDS = {"draft": _l("未启动"), "active": _l("进行中"), "closed": _l("已结束")}
APPLICATION_STATUS_WORDS = {"pending": _l("等待审核"), "accepted": _l("已同意"), "refused": _l("未同意")}


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


@provider_programmes.context_processor
def _context() -> dict:
    return {"programme_status_words": PROGRAMME_STATUS_WORDS, "application_status_words": APPLICATION_STATUS_WORDS,
            "form_key_field": form_key_field}


@provider_programmes.get("")
@role_required("provider")
def index():
    actor = require_actor()
    return render_template("provider_programmes/index.html", manager=actor.provider_manager,
                           view=applications.provider_programmes(actor=actor))


@provider_programmes.get("/<int:programme_id>/apply")
@role_required("provider")
def apply_form(programme_id: int):
    """The short form to apply with an optional note, or why the provider cannot apply (enrolled, pending …)."""
    try:
        line = applications.application_form(programme_id=programme_id, actor=require_actor())
    except DomainError as refused:
        return _refused(programme_id, refused)
    return render_template("provider_programmes/apply.html", line=line, errors={}, note="")


@provider_programmes.post("/<int:programme_id>/apply")
@role_required("provider")
def apply(programme_id: int):
    actor = require_actor()
    try:
        data = form_input(ApplicationCreateSchema())
        with transaction():
            once_per_form(lambda: _apply(programme_id, data, actor))
    except DomainError as refused:
        return _refused(programme_id, refused)
    flash(gettext("申请已经提交。民政部门审核以后，结果会显示在下面的“我的申请”里。"), "success")
    return redirect(url_for(".index", _anchor="applications"), 303)


def _apply(programme_id: int, data: dict, actor) -> str:
    applications.apply(programme_id=programme_id, note=data.get("note"), actor=actor, now=utcnow())
    return url_for(".index", _anchor="applications")


def _refused(programme_id: int, refused: DomainError):
    """The form again with the refusal beside its field — or, when the provider cannot apply at all, the
    refusal in place of the form. Strangers, staff and unknown programmes get the error page."""
    if refused.status in (401, 403, 404):
        raise refused
    try:
        line = applications.application_form(programme_id=programme_id, actor=require_actor())
    except DomainError:
        line = None
    return render_template("provider_programmes/apply.html", line=line, errors=domain_refusal(refused),
                           note=request.form.get("note", "")), refused.status
