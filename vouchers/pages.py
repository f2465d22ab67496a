"""The recipients' pages (`/me…`), and the same pages for an admin acting for a recipient (代办,
`/staff/recipients/<id>/act…`).

Each view is written once and registered on both blueprints; `whose()` says whose pages they are: the
logged-in recipient's own, or those of the recipient an admin acts for (an admin in scope only: the
recipient is loaded through `get_recipient`, which refuses the rest). Either way the view calls the
same service function as the API with `actor` the person acting, so every rule — and every audit
event, with the acting admin and the recipient they act for — is the API's.

Forms post without JavaScript and carry a form key (marketplace.idempotency.once_per_form): a double
tap or a reload does the change once. A choice also says which provider it replaces, so a form left
open while someone else changed the choice is refused instead of undoing that change.
"""

from dataclasses import dataclass

from flask import Blueprint, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from marshmallow import fields, validate

from marketplace.auth.access import require_actor, role_required
from marketplace.auth.models import User
from marketplace.db import transaction, utcnow, writes
from marketplace.errors import DomainError, NotFound
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.programmes.service import get_programme
from marketplace.recipients.models import Recipient
from marketplace.recipients.service import get_recipient
from marketplace.schemas import ID_RANGE
from marketplace.web.forms import domain_refusal, form_input
from providers.schemas import ComplaintInputSchema, RatingInputSchema
from vouchers import cards
from vouchers.schemas import ChoiceInputSchema
from vouchers.service import choice, feedback, recipient_view, redemption

recipient_pages = Blueprint("recipient_pages", __name__, template_folder="templates", url_prefix="/me")
staff_acting = Blueprint("staff_acting", __name__, template_folder="templates",
                         url_prefix="/staff/recipients/<int:recipient_id>/act")

SCORE_WORDS = {1: _l("很不满意"), 2: _l("不满意"), 3: _l("一般"), 4: _l("满意"), 5: _l("很满意")}
SWITCH_REASON_WORDS = {
    "service_quality": _l("服务做得不好"),
    "staff_attitude": _l("服务人员态度不好"),
    "timeliness": _l("上门不准时"),
    "price": _l("自己要付的钱太多"),
    "moved": _l("我搬家了"),
    "other": _l("别的原因（请在下面写一写）"),
}
PROVIDER_KIND_WORDS = {
    "social_organisation": _l("社会组织"), "enterprise": _l("企业"), "public_institution": _l("事业单位"),
    "community_organisation": _l("社区组织"), "rural_collective": _l("农村集体经济组织"),
}
# The choice service words its refusals for the API; these are the same refusals said plainly.
CHOICE_REFUSALS = {
    "Choose a reason for the note (`other` when none fits).": _l("写了话，也请选一个原因（都不合适就选“别的原因”）。"),
    "Say in a few words why, when the reason is `other`.": _l("选了“别的原因”，请写一写是什么原因。"),
    "Only a switch from another provider has a reason: nothing is replaced here.": _l("第一次选服务机构，不用说原因。"),
    "The programme does not buy this item.": _l("这个项目不包括这项服务。"),
    "The recipient lives outside this programme's region.": _l("您住的地方不在这个项目的范围内。"),
}
COMPLAINT_STATUS_WORDS = {"open": _l("正在处理"), "resolved": _l("已处理")}
CARD_LABELS = {"serial": _l("编号"), "service": _l("服务"), "programme pays": _l("政府支付"),
               "you pay": _l("您自付"), "valid": _l("有效期"), "programme": _l("项目")}


# --- whose pages ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Whose:
    """Whose pages these are: *recipient*'s, shown to *actor* — the recipient themself, or an admin acting
    for them (代办)."""

    actor: User
    recipient: Recipient

    @property
    def acting(self) -> bool:
        return self.actor.role == "admin"

    @property
    def rating_source(self) -> str:
        """An admin records a rating heard on a phone follow-up (回访); a recipient rates their own service."""
        return "phone_followup" if self.acting else "recipient"


@staff_acting.url_value_preprocessor
def _acting_for(_endpoint, values):
    g.acting_for = values.pop("recipient_id")


@staff_acting.url_defaults
def _keep_acting_for(_endpoint, values):
    if "acting_for" in g:
        values.setdefault("recipient_id", g.acting_for)


def whose() -> Whose:
    """The pages' owner for this request. :raises NotFound, Forbidden: as get_recipient (an admin out of scope)."""
    if "whose" not in g:
        actor = require_actor()
        recipient_id = g.acting_for if "acting_for" in g else actor.recipient_id
        if recipient_id is None:
            raise NotFound("This login belongs to no recipient.")
        g.whose = Whose(actor=actor, recipient=get_recipient(recipient_id, actor=actor))
    return g.whose


def _context() -> dict:
    # Only the owner a view already loaded: an error page (say, an admin out of scope) must render without it.
    return {"whose": g.get("whose"), "score_words": SCORE_WORDS,
            "switch_reason_words": SWITCH_REASON_WORDS, "provider_kind_words": PROVIDER_KIND_WORDS,
            "complaint_status_words": COMPLAINT_STATUS_WORDS, "card_labels": CARD_LABELS,
            "form_key_field": form_key_field, "staff_exit": _staff_exit()}


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


def _staff_exit() -> str | None:
    """Where an admin goes when done acting: the recipients list once it exists, else the staff home."""
    for endpoint in ("staff_recipients.index", "staff_home.home"):
        if endpoint in current_app.view_functions:
            return url_for(endpoint)
    return None


recipient_pages.context_processor(_context)
staff_acting.context_processor(_context)


def _render(template: str, status: int = 200, **context):
    return render_template(f"recipient_pages/{template}", **context), status


# --- forms: the API's schemas, with numbers arriving as text -------------------------------------------

class ChoiceForm(ChoiceInputSchema):
    """The API's choice body as the console posts it, with the provider the form showed as chosen."""

    programme_id = fields.Integer(required=True, validate=ID_RANGE)
    provider_id = fields.Integer(required=True, validate=ID_RANGE)
    replacing = fields.Integer(load_default=None, validate=ID_RANGE)


class RatingForm(RatingInputSchema):
    redemption_id = fields.Integer(required=True, validate=ID_RANGE)
    score = fields.Integer(required=True, validate=validate.Range(min=1, max=5))


class ComplaintForm(ComplaintInputSchema):
    provider_id = fields.Integer(required=True, validate=ID_RANGE)
    redemption_id = fields.Integer(load_default=None, validate=ID_RANGE)


def _query_id(name: str) -> int | None:
    """An id from the query string; anything else counts as not given."""
    value = request.args.get(name, type=int)
    return value if value is not None and 1 <= value <= 2**31 - 1 else None


# --- the pages -----------------------------------------------------------------------------------------

def home():
    """This month's vouchers per service, the providers chosen, and the next step."""
    owner = whose()
    overview = recipient_view.month_overview(recipient=owner.recipient, now=utcnow())
    return _render("home.html", overview=overview)


def providers(item_code: str):
    """The providers the recipient may choose for a service, best first."""
    owner = whose()
    options = recipient_view.provider_options(recipient=owner.recipient, item_code=item_code,
                                              programme_id=_query_id("programme_id"), now=utcnow())
    return _render("providers.html", options=options)


def choose(item_code: str):
    """Choose or switch a provider: (a switch: the reason) → the confirmation → done."""
    owner = whose()
    if request.method == "GET":
        provider_id = _query_id("provider_id")
        options = recipient_view.provider_options(recipient=owner.recipient, item_code=item_code,
                                                  programme_id=_query_id("programme_id"), now=utcnow())
        option = options.option(provider_id) if provider_id else None
        if option is None:
            raise NotFound("This provider cannot be chosen for this service.")
        if options.current is not None and options.current.id == option.provider_id:
            return redirect(url_for(".chosen", item_code=item_code, programme_id=options.programme.id))
        step = "reason" if options.current is not None else "confirm"
        return _render("choose.html", options=options, option=option, step=step, form={}, errors={})
    step = request.form.get("step")
    try:  # which choice: without it there is no form to show again
        target = form_input(ChoiceForm(only=("programme_id", "provider_id")))
        options = recipient_view.provider_options(recipient=owner.recipient, item_code=item_code,
                                                  programme_id=target["programme_id"], now=utcnow())
        option = options.option(target["provider_id"])
        if option is None:
            raise choice.ProviderNotEligible()
    except DomainError as refused:
        return _refused_choice(item_code, refused)
    form = {"switch_reason": request.form.get("switch_reason"), "switch_note": request.form.get("switch_note")}
    back = "reason" if options.current is not None else "confirm"
    try:
        data = form_input(ChoiceForm(exclude=("item_code",)))
        if step != "confirm":  # the reason was given: the same rules as the switch, then the confirmation
            form["switch_reason"], form["switch_note"] = choice.checked_reason(data.get("switch_reason"),
                                                                              data.get("switch_note"))
            return _render("choose.html", options=options, option=option, step="confirm", form=form, errors={})
        with transaction():
            programme = get_programme(data["programme_id"], actor=owner.actor)
            once_per_form(lambda: _choose(owner, programme, item_code, data))
    except choice.ChoiceChanged as refused:  # the form is stale: show the choice as it is now
        return _refused_choice(item_code, refused, programme_id=data["programme_id"])
    except DomainError as refused:
        errors = {name: [str(CHOICE_REFUSALS.get(message, message)) for message in messages]
                  for name, messages in domain_refusal(refused).items()}
        return _render("choose.html", status=refused.status, options=options, option=option, step=back, form=form,
                       errors=errors)
    return redirect(url_for(".chosen", item_code=item_code, programme_id=data["programme_id"]), 303)


def _choose(owner: Whose, programme, item_code: str, data: dict) -> str:
    choice.set_choice(recipient=owner.recipient, programme=programme, item_code=item_code,
                      provider_id=data["provider_id"], switch_reason=data.get("switch_reason"),
                      switch_note=data.get("switch_note"), replacing=data.get("replacing"), actor=owner.actor,
                      now=utcnow())
    return url_for(".chosen", item_code=item_code, programme_id=programme.id)


def _refused_choice(item_code: str, refused: DomainError, programme_id: int | None = None):
    """A choice form that cannot be shown again: back to the list as it is now, the refusal at its top."""
    owner = whose()
    try:
        options = recipient_view.provider_options(recipient=owner.recipient, item_code=item_code,
                                                  programme_id=programme_id or _query_id("programme_id"),
                                                  now=utcnow())
    except NotFound:
        raise refused from None
    return _render("providers.html", status=refused.status, options=options, errors=domain_refusal(refused))


def chosen(item_code: str):
    """Done: who serves the recipient for this service now."""
    owner = whose()
    options = recipient_view.provider_options(recipient=owner.recipient, item_code=item_code,
                                              programme_id=_query_id("programme_id"), now=utcnow())
    if options.current is None:
        return redirect(url_for(".providers", item_code=item_code, programme_id=options.programme.id))
    return _render("chosen.html", options=options)


def code():
    """The presence code, full screen: the QR, its 8 digits, a countdown; a new one on every visit."""
    if request.method == "POST":  # "换一个码": open the page again, which draws a new code
        return redirect(url_for(".code"), 303)
    owner = whose()
    with transaction():
        presence = redemption.create_presence_code(recipient_id=owner.recipient.id, now=utcnow())
    qr = Markup(cards.qr_svg(presence["token"], title=gettext("我的码（二维码）")))
    seconds_left = max(0, int((presence["expires_at"] - utcnow()).total_seconds()))
    return _render("code.html", presence=presence, qr=qr, seconds_left=seconds_left)


def services(errors: dict | None = None, failed: str | None = None, status: int = 200):
    """Past services, each with its rating or a form to rate it, and a form to complain."""
    owner = whose()
    past = recipient_view.past_services(recipient=owner.recipient, now=utcnow())
    errors = errors or {}
    # The summary at the top links to the fields of the form that was refused (several rating forms share names).
    suffix = failed.removeprefix("rating-") if failed and failed.startswith("rating-") else None
    summary = {name if name == "_form" or suffix is None else f"{name}-{suffix}": messages
               for name, messages in errors.items()}
    return _render("services.html", status=status, past=past, errors=errors, summary_errors=summary, failed=failed,
                   provider_choices=[(provider.id, provider.name) for provider in past.providers],
                   posted=request.form if request.method == "POST" else {})


def _unpicked(errors: dict, field: str, message: str) -> dict:
    """A set of radio buttons left unpicked says "pick one", not the text fields' "fill this in"."""
    if errors.get(field) and not request.form.get(field, "").strip():
        errors = {**errors, field: [message]}
    return errors


def rate():
    """Rate one service 1–5 (an admin records what the recipient said on a phone follow-up)."""
    owner = whose()
    redemption_id = request.form.get("redemption_id", "")
    try:
        data = form_input(RatingForm(exclude=("source",)))
        with transaction():
            once_per_form(lambda: _rate(owner, data))
    except DomainError as refused:
        errors = _unpicked(domain_refusal(refused), "score",
                           gettext("请选一个分数：从 1 分（很不满意）到 5 分（很满意）。"))
        return services(errors=errors, failed=f"rating-{redemption_id}", status=refused.status)
    flash(gettext("谢谢您的评价。"), "success")
    return redirect(url_for(".services", _anchor=f"service-{data['redemption_id']}"), 303)


def _rate(owner: Whose, data: dict) -> str:
    feedback.rate_redemption(redemption_id=data["redemption_id"], score=data["score"], comment=data.get("comment"),
                             source=owner.rating_source, recipient_id=owner.recipient.id, actor=owner.actor,
                             now=utcnow())
    return url_for(".services")


def complain():
    """File a complaint against a provider (for the recipient, when an admin acts for them)."""
    owner = whose()
    try:
        data = form_input(ComplaintForm(exclude=("recipient_id",)))
        with transaction():
            once_per_form(lambda: _complain(owner, data))
    except DomainError as refused:
        errors = _unpicked(domain_refusal(refused), "provider_id", gettext("请选一家服务机构。"))
        if refused.code == "too_many_open_complaints":  # about the provider picked: said beside that choice
            errors = {"provider_id": errors.pop("_form")}
        return services(errors=errors, failed="complaint", status=refused.status)
    flash(gettext("投诉已经收到，民政部门会尽快处理，处理结果会告诉您。"), "success")
    return redirect(url_for(".services", _anchor="complaints"), 303)


def _complain(owner: Whose, data: dict) -> str:
    feedback.complain(provider_id=data["provider_id"], text=data["text"], redemption_id=data.get("redemption_id"),
                      recipient_id=owner.recipient.id, actor=owner.actor, now=utcnow())
    return url_for(".services")


def voucher_cards():
    """The recipient's usable vouchers as cards to print (A6, one a page), each with its QR code."""
    owner = whose()
    with transaction():
        printable = recipient_view.printable_cards(recipient=owner.recipient, actor=owner.actor, now=utcnow())
    drawn = [(card, Markup(cards.qr_svg(card.token, title=gettext("服务券二维码 %(serial)s",
                                                                 serial=card.voucher.serial))))
             for card in printable]
    return _render("cards.html", cards=drawn)


# --- the routes: each view once, on both blueprints ------------------------------------------------------

PAGES = [
    # rule, endpoint, view, methods, for the admin acting too
    ("", "home", home, ["GET"], True),
    ("/providers/<item_code>", "providers", providers, ["GET"], True),
    ("/providers/<item_code>/choose", "choose", choose, ["GET", "POST"], True),
    ("/providers/<item_code>/chosen", "chosen", chosen, ["GET"], True),
    ("/code", "code", writes(code), ["GET", "POST"], False),  # the recipient's own phone only; draws a code
    ("/services", "services", services, ["GET"], True),
    ("/services/rating", "rate", rate, ["POST"], True),
    ("/services/complaint", "complain", complain, ["POST"], True),
    ("/cards", "cards", writes(voucher_cards), ["GET"], True),  # a card an admin prints is audited
]

for rule, endpoint, view, methods, acting_too in PAGES:
    recipient_pages.add_url_rule(rule, endpoint, role_required("recipient")(view), methods=methods)
    if acting_too:
        staff_acting.add_url_rule(rule, endpoint, role_required("admin")(view), methods=methods)


@staff_acting.before_request
def _admins_in_scope_only():
    """Refuse an admin out of scope (403) or an unknown recipient (404) before a form is even read (the
    role guard, which runs before this, has let only admins in)."""
    whose()

