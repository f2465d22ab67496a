"""The provider's ratings and complaints `/provider/feedback`: its rating summary per programme and item,
the latest comments (never who wrote them), the complaints about it, and, for its manager, a form to answer
an open complaint once (the same service as POST /api/v1/complaints/{id}/answer).
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
from providers.schemas import ComplaintAnswerSchema
from providers.service import complaints
from providers.service.feedback_view import provider_feedback

provider_feedback_pages = Blueprint("provider_feedback", __name__, template_folder="templates",
                                    url_prefix="/provider/feedback")

SCORE_WORDS = {1: _l("很不满意"), 2: _l("不满意"), 3: _l("一般"), 4: _l("满意"), 5: _l("很满意")}
COMPLAINT_STATUS_WORDS = {"open": _l("正在处理"), "resolved": _l("已处理")}


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn): a double tap or a reload answers once."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


def _render(*, errors: dict | None = None, failed: int | None = None, status: int = 200):
    actor = require_actor()
    errors = errors or {}
    # The summary at the top links to the answer field of the complaint whose form was refused.
    summary = {name if name == "_form" else f"{name}-{failed}": messages for name, messages in errors.items()}
    return render_template(
        "provider_feedback/index.html", feedback=provider_feedback(provider_id=actor.provider_id, now=utcnow()),
        manager=actor.provider_manager, errors=errors, summary_errors=summary, failed=failed,
        posted=request.form if request.method == "POST" else {}, score_words=SCORE_WORDS,
        complaint_status_words=COMPLAINT_STATUS_WORDS, form_key_field=form_key_field), status


@provider_feedback_pages.get("")
@role_required("provider")
def index():
    return _render()


@provider_feedback_pages.post("/complaints/<int:complaint_id>/answer")
@role_required("provider")
def answer(complaint_id: int):
    """Answer a complaint once (the manager only); a refusal shows beside the answer's field."""
    actor = require_actor()
    try:
        data = form_input(ComplaintAnswerSchema())
        with transaction():
            once_per_form(lambda: _answer(complaint_id, data["answer"], actor))
    except DomainError as refused:
        return _render(errors=domain_refusal(refused), failed=complaint_id, status=refused.status)
    flash(gettext("答复已经提交。民政部门处理这条投诉时会看到它。"), "success")
    return redirect(url_for(".index", _anchor=f"complaint-{complaint_id}"), 303)


def _answer(complaint_id: int, text: str, actor) -> str:
    complaints.answer_complaint(complaint_id=complaint_id, answer=text, actor=actor, now=utcnow())
    return url_for(".index")
