"""Scanning at the door (核销), phones first: `/provider/scan` → the services on offer → confirm → the receipt.

1. `/provider/scan` reads a code: the camera (scan.js, where the browser allows it) puts the QR code's text in
   the form and posts it; anyone can type the recipient's 8 digits instead (the form works without JavaScript,
   and without a camera). Posting it uses nothing up (doorstep.read_code): the answer is the page of the
   services this provider may deliver to that recipient, with the code carried in the form.
2. Confirming posts that form to `/provider/scan/confirm`: the redemption through the API's own service
   function (redemption.redeem), once per form (once_per_form: a double tap, a reload, a retry after the
   network dropped all get the first answer), then `/provider/receipts/<id>`.
Every refusal is the scan page again, the typed code kept, with one sentence saying what to do next.
"""

from math import ceil
from urllib.parse import urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate

from marketplace import metrics
from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError, ValidationFailed
from marketplace.idempotency import once_per_form
from marketplace.web.forms import domain_refusal, form_input
from vouchers.pages import form_key_field
from vouchers.schemas import RedemptionInputSchema, ShortCode
from vouchers.service import doorstep, redemption

provider_scan = Blueprint("provider_scan", __name__, template_folder="templates")

PRESENCE_WORDS = {doorstep.PRESENCE: _l("扫老人的码"), doorstep.TYPED: _l("输入老人的数字码"),
                  doorstep.CARD: _l("扫纸质服务券")}
# At the door the staff need the next step, not the API's sentence (marketplace/web/refusals.py says the rest).
SCAN_REFUSALS = {
    "provider_not_chosen": _l("这位老人选的是别的服务机构，本机构不能核销。老人可以在自己手机的“我的服务”里改选，"
                              "或请社区工作人员帮忙改选。"),
    "no_valid_voucher": _l("这位老人这个月没有可以用的服务券（已经用完，或还没有发放），不能核销。"
                           "有疑问请联系社区工作人员。"),
    "voucher_already_redeemed": _l("这张服务券已经用过了，不能再核销。请老人出示“我的码”或别的服务券。"),
    "voucher_expired": _l("这张服务券已经过期，不能核销。请老人出示“我的码”，或联系社区工作人员。"),
    "provider_not_approved": _l("本机构还没有通过审核或已被暂停，现在不能核销。请联系民政部门。"),
    "token_expired": _l("这个码已经过期。请老人在手机上重新打开“我的码”，再扫一次或输入新的数字。"),
    "token_already_used": _l("这个码已经用过了。请老人在手机上重新打开“我的码”，换一个新码。"),
    "invalid_token": _l("没有找到这个码。请核对 8 位数字后重新输入，或请老人换一个新码。"),
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ConfirmForm(RedemptionInputSchema):
    """The API's redemption body as the confirmation posts it: the code read, the item, minutes as text."""

    duration_minutes = fields.Integer(validate=validate.Range(min=0, max=24 * 60))


class CodeForm(RedemptionInputSchema):
    """What the scan page posts: the QR code's text (`scanned`) or the typed digits."""

    scanned = fields.String(validate=validate.Length(min=1, max=200))
    short_code = ShortCode()


def secure_context() -> bool:
    """Whether a browser lets this page use the camera: HTTPS, or this very machine (localhost).

    Behind a proxy that ends TLS the request may look insecure: scan.js asks the browser itself
    (window.isSecureContext) and shows the camera anyway when it may.
    """
    host = (urlsplit(f"//{request.host}").hostname or "").lower()
    return request.is_secure or host in LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")


def say_refusal(error: DomainError) -> str:
    """One sentence for a refused scan, with what to do next."""
    if error.code == "too_many_attempts":
        seconds = error.details.get("retry_after_seconds") or current_app.config["SHORT_CODE_FAILURE_WINDOW_SECONDS"]
        return gettext("输错的次数太多了。请过 %(minutes)s 分钟再输入，或者改为扫码。",
                       minutes=max(1, ceil(seconds / 60)))
    said = SCAN_REFUSALS.get(error.code)
    if said is not None:
        return str(said)
    return domain_refusal(error)["_form"][0]


def _scan_page(*, errors: dict | None = None, typed: str = "", status: int = 200):
    return render_template("provider_scan/scan.html", errors=errors or {}, typed=typed, secure=secure_context(),
                           scan_url=url_for(".scan")), status


def _refused(error: DomainError, typed: str):
    """The scan page again, the refusal at the top and beside the typed code (kept)."""
    if isinstance(error, ValidationFailed):
        errors = domain_refusal(error)
        if "scanned" in errors:
            errors = {"_form": [str(SCAN_REFUSALS["invalid_token"])]}
        not_digits = ShortCode.default_error_messages["short_code"]
        if not_digits in errors.get("short_code", []):
            errors["short_code"] = [gettext("请输入 8 位数字，例如 1234 5678。")]
    else:
        errors = {"short_code" if typed else "_form": [say_refusal(error)]}
    return _scan_page(errors=errors, typed=typed, status=error.status)


@provider_scan.get("/provider/scan")
@role_required("provider")
def scan():
    """The camera (where it may work) and the box for the 8 digits."""
    return _scan_page()


@provider_scan.post("/provider/scan")
@role_required("provider")
def read():
    """A code was scanned or typed: the services on offer for its holder (nothing is used up yet)."""
    typed = request.form.get("short_code", "")
    try:
        data = form_input(CodeForm(only=("scanned", "short_code")))
        if not data.get("scanned") and not data.get("short_code"):
            raise ValidationFailed({"short_code": gettext("请输入老人手机上“我的码”下面的 8 位数字。")})
        with transaction():
            found = doorstep.read_code(actor=require_actor(), now=utcnow(), scanned=data.get("scanned"),
                                       short_code=None if data.get("scanned") else data.get("short_code"))
    except DomainError as refused:
        return _refused(refused, typed)
    return _offer_page(found)


def _offer_page(found: doorstep.Doorstep, *, errors: dict | None = None, form: dict | None = None,
                status: int = 200):
    return render_template("provider_scan/offer.html", found=found, errors=errors or {}, form=form or {},
                           presence_words=PRESENCE_WORDS, form_key_field=form_key_field), status


@provider_scan.post("/provider/scan/confirm")
@role_required("provider")
def confirm():
    """Redeem the chosen service, once per form; then the receipt."""
    actor = require_actor()
    typed = request.form.get("short_code", "")
    code = {name: request.form[name] for name in ("presence_token", "short_code", "voucher_token")
            if request.form.get(name)}
    try:
        data = form_input(ConfirmForm(exclude=("delivered_at",)))
    except ValidationFailed as refused:
        return _confirm_refused_fields(refused, code, typed)
    try:
        with transaction():
            address = once_per_form(lambda: _redeem(actor, data))
    except ValidationFailed as refused:
        return _confirm_refused_fields(refused, code, typed)
    except DomainError as refused:
        return _refused(refused, typed)
    return redirect(address, 303)


def _redeem(actor, data: dict) -> str:
    with metrics.redemption_result():  # here, not around the form: a repeated form redeems nothing
        done = redemption.redeem(actor=actor, now=utcnow(), **data)
    return url_for(".receipt", redemption_id=done.id)


def _confirm_refused_fields(refused: ValidationFailed, code: dict, typed: str):
    """A field of the confirmation was wrong (minutes, notes, no service picked): the offer again, the
    refusal beside the field; or, when the code itself no longer reads, the scan page."""
    errors = domain_refusal(refused)
    if "item_code" in errors:
        errors["item_code"] = [gettext("请选一项服务。")]
    if set(errors) & {"presence_token", "short_code", "voucher_token", "_form"} or not code:
        return _refused(refused, typed)
    try:
        with transaction():
            found = doorstep.read_code(actor=require_actor(), now=utcnow(), scanned=code.get("presence_token")
                                       or code.get("voucher_token"), short_code=code.get("short_code"))
    except DomainError as again:
        return _refused(again, typed)
    form = {name: request.form.get(name, "") for name in ("item_code", "duration_minutes", "notes")}
    return _offer_page(found, errors=errors, form=form, status=refused.status)


@provider_scan.get("/provider/receipts/<int:redemption_id>")
@role_required("provider")
def receipt(redemption_id: int):
    """The receipt: the voucher, the service, what the programme pays and, large, what to collect."""
    shown = doorstep.receipt(redemption_id, actor=require_actor())
    return render_template("provider_scan/receipt.html", receipt=shown, presence_words=PRESENCE_WORDS)
