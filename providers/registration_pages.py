"""A provider registers itself (`/provider/register`) and waits for the bureau (`/provider/status`).

The form posts to the same service function as POST /api/v1/providers, read through the API's own
schema (the first login flattened into three fields). After registering, the new login is logged in
and sees its status page; any login of a provider that is not approved lands there, and the first
login after a decision (approval, rejection, suspension, reinstatement, revocation) hears of it once.

The credit code is checked as it is typed (htmx asks `/provider/register/credit-code` for one sentence
saying which part is wrong) and again on submit; without JavaScript only on submit.

The registration form has no form key (`once_per_form` needs a login, and there is none yet). A form
posted twice is recognised instead: the second post names the credit code just registered and that
provider's own username, so it logs the registrant in with the password given and shows the same
status page, while anyone else's code is refused as a duplicate.
"""

import re

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError, fields, validate, validates_schema

from marketplace.auth import service as auth_service
from marketplace.auth.access import begin_session, current_actor, require_actor, role_required
from marketplace.auth.schemas import CredentialsSchema
from marketplace.catalogue import service as catalogue
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError, Forbidden, ValidationFailed
from marketplace.web.forms import domain_refusal, field_errors, form_input
from marketplace.web.pages import login_landing
from providers.creditcode import AUTHORITY_TYPES, VALUES, InvalidCreditCodeError, parse_credit_code
from providers.schemas import AccountSchema, ProviderCreateSchema
from providers.service import registration, registry

provider_registration = Blueprint("provider_registration", __name__, template_folder="templates")

KIND_WORDS = {
    "social_organisation": _l("社会组织"), "enterprise": _l("企业"), "public_institution": _l("事业单位"),
    "community_organisation": _l("社区组织"), "rural_collective": _l("农村集体经济组织"),
}
STATUS_WORDS = {"pending": _l("待审核"), "approved": _l("已通过审核"), "suspended": _l("已暂停"),
                "revoked": _l("已取消资格")}
# The first login's rules and the registry's refusals are worded for the API; these say them plainly.
SERVICE_MESSAGES = [
    (re.compile(r"^Not GB/T 2260 region codes|^A region code is 6 digits"), _l("请从列表里选择服务的地区。")),
    (re.compile(r"^Not catalogue services"), _l("请从列表里选择服务项目。")),
    (re.compile(r"^Not a phone number\.$"), _l("请填写 11 位手机号码，或带区号的固定电话，例如 028-88551234。")),
    (re.compile(r"^The passwords differ\.$"), _l("两次填写的密码不一样，请重新填写。")),
]
# Which field a refusal belongs beside when the service names none.
REFUSAL_FIELDS = {"duplicate_provider": "credit_code", "duplicate_username": "username",
                  "invalid_credit_code": "credit_code"}
# A set of choices left unpicked says "pick", not the text fields' "fill this in".
UNPICKED = {"kind": _l("请选一种机构类型。"), "region_codes": _l("请至少选一个服务的地区。"),
            "item_codes": _l("请至少选一项服务。")}
FIELD_ORDER = ("name", "kind", "credit_code", "legal_representative", "phone", "address", "region_codes",
               "item_codes", "capacity", "username", "password", "password_again")


class RegistrationForm(ProviderCreateSchema):
    """The API's registration body as the form posts it: numbers as text, the first login as three fields."""

    class Meta:
        exclude = ("account",)

    capacity = fields.Integer(required=True, validate=validate.Range(min=1, max=1_000_000))
    username = AccountSchema._declared_fields["username"]
    password = AccountSchema._declared_fields["password"]
    password_again = fields.String(required=True, validate=validate.Length(min=1, max=1024))

    @validates_schema
    def _same_password(self, data, **_kwargs):
        if "password" in data and "password_again" in data and data["password"] != data["password_again"]:
            raise ValidationError("The passwords differ.", "password_again")


def _said(message: str) -> str:
    for pattern, said in SERVICE_MESSAGES:
        matched = pattern.match(message)
        if matched:
            return str(said) % matched.groupdict() if matched.groupdict() else str(said)
    return message


def credit_code_reason(raw: str) -> str | None:
    """One plain sentence saying what is wrong with a typed credit code (None when it is valid)."""
    code = raw.strip().upper()
    try:
        parse_credit_code(code)
    except InvalidCreditCodeError as error:
        if error.part == "length":
            return gettext("统一社会信用代码是 18 位，现在是 %(count)s 位。", count=len(code))
        if error.part == "characters":
            position, character = next((index, character) for index, character in enumerate(code, start=1)
                                       if character not in VALUES)
            return gettext("第 %(position)s 位的“%(character)s”不会出现在统一社会信用代码里"
                           "（代码里没有字母 I、O、Z、S、V），请核对。", position=position, character=character)
        if error.part == "authority":
            return gettext("第 1 位是登记管理部门代码，“%(character)s”不是这样的代码（民政部门登记的是 5，"
                           "市场监管部门登记的是 9）。", character=code[0])
        if error.part == "organisation_type":
            return gettext("第 2 位是机构类别代码，“%(character)s”和第 1 位对不上：第 1 位是 %(authority)s 时，"
                           "第 2 位只能是 %(allowed)s 之一。", character=code[1], authority=code[0],
                           allowed="、".join(AUTHORITY_TYPES[code[0]]))
        if error.part == "region":
            return gettext("第 3 到 8 位是登记地的行政区划代码，应是 6 位数字，请核对。")
        if error.part == "organisation_code":
            return gettext("第 9 到 17 位是组织机构代码，它的校验位（第 17 位）对不上，请逐位核对。")
        return gettext("最后一位是校验码，和前 17 位对不上，请逐位核对。")
    return None


def _errors_of(refused: DomainError) -> dict[str, list[str]]:
    """The refusal beside its field, in plain words; the rest at the top."""
    if refused.code == "invalid_credit_code":
        errors = {"credit_code": [credit_code_reason(request.form.get("credit_code", ""))
                                  or gettext("统一社会信用代码不正确，请核对后再填。")]}
    else:
        errors = domain_refusal(refused)
    place = REFUSAL_FIELDS.get(refused.code)
    if place and list(errors) == ["_form"]:
        errors = {place: errors["_form"]}
    if refused.code == "validation_error":
        errors = {name: [_said(message) for message in messages] for name, messages in errors.items()}
        errors = {name: messages for name, messages in errors.items() if name != "account"} or errors
        for name, said in UNPICKED.items():
            if name in errors and not any(value.strip() for value in request.form.getlist(name)):
                errors[name] = [str(said)]
    if refused.code in ("validation_error", "invalid_credit_code"):
        errors = {**errors, **_early_refusals(errors)}
    return {name: errors[name] for name in sorted(errors, key=lambda name: (
        FIELD_ORDER.index(name) if name in FIELD_ORDER else -1))}


def _early_refusals(errors: dict) -> dict[str, list[str]]:
    """What the service would refuse next (the credit code, the password), said now with the rest, so
    that the form need not come back once per mistake."""
    found = {}
    typed = request.form.get("credit_code", "").strip()
    reason = credit_code_reason(typed) if typed else None
    if reason:
        found["credit_code"] = [reason]
    username, password = request.form.get("username", "").strip(), request.form.get("password", "")
    if password and "password" not in errors:
        try:
            auth_service.check_password_policy(username=username, password=password)
        except ValidationFailed as weak:
            found["password"] = [_said(message) for message in field_errors(weak).get("password", [])]
    return found


def _form_page(*, errors: dict, status: int = 200):
    given = request.form if request.method == "POST" else {}
    regions = [(region.code, region.code, "、".join(region.programmes)) for region in registration.region_choices()]
    items = [(item.code, item.name, None) for item in catalogue.list_items()]
    return render_template(
        "provider_registration/register.html", errors=errors, given=given, regions=regions, items=items,
        chosen_regions=set(given.getlist("region_codes")) if given else set(),
        chosen_items=set(given.getlist("item_codes")) if given else set(),
        kind_choices=[(kind, str(word)) for kind, word in KIND_WORDS.items()], logged_in=current_actor() is not None,
    ), status


@provider_registration.get("/provider/register")
def register():
    """The self-registration form (anyone; a logged-in user is asked to log out first)."""
    return _form_page(errors={})


@provider_registration.post("/provider/register")
def register_post():
    try:
        if current_actor() is not None:
            raise Forbidden("Log out before registering a provider.")
        data = form_input(RegistrationForm())
        account = {"username": data.pop("username"), "password": data.pop("password")}
        data.pop("password_again")
        with transaction():
            registry.register_provider(**data, account=account, actor=None, now=utcnow())
    except registry.DuplicateProvider as refused:
        if not _same_registrant_again():
            return _form_page(errors=_errors_of(refused), status=refused.status)
    except DomainError as refused:
        errors = _errors_of(refused)
        if refused.code == "forbidden":
            errors = {"_form": [gettext("您已经登录。要注册新的服务机构，请先退出登录。")]}
        return _form_page(errors=errors, status=refused.status)
    else:
        begin_session(**account)
    return redirect(url_for(".status"), 303)


def _same_registrant_again() -> bool:
    """A registration posted twice: log its registrant in (with the password given) instead of refusing."""
    credentials = form_input(CredentialsSchema(), exclude=("csrf_token",))
    if not registration.is_own_registration(credit_code=request.form.get("credit_code", ""),
                                            username=credentials["username"]):
        return False
    try:
        begin_session(**credentials)
    except DomainError:
        return False
    return True


@provider_registration.get("/provider/register/credit-code")
def credit_code_check():
    """The typed credit code checked: one sentence for the form (htmx swaps it in beside the field)."""
    typed = request.args.get("credit_code", "")[:64]
    reason = credit_code_reason(typed) if typed.strip() else None
    return render_template("provider_registration/credit_code_check.html", typed=typed.strip(), reason=reason)


@provider_registration.get("/provider/status")
@role_required("provider")
def status():
    """The provider's status: pending (what happens next), approved, suspended or revoked, with the reason."""
    found = registration.standing(actor=require_actor())
    items = catalogue.items_by_code(found.provider.item_codes)
    return render_template("provider_registration/status.html", standing=found, provider=found.provider,
                           items=items, kind_words=KIND_WORDS, status_words=STATUS_WORDS,
                           config_endpoints=current_app.view_functions)


# --- where a provider's login lands, and the notice of a decision ----------------------------------------

DECISION_NOTICES = {
    ("pending", "approved"): (_l("您的服务机构已经通过审核，可以开始服务了。审核意见：%(reason)s"), "success"),
    ("pending", "revoked"): (_l("您的服务机构注册申请没有通过审核。原因：%(reason)s"), "error"),
    ("approved", "suspended"): (_l("您的服务机构已被暂停服务。原因：%(reason)s"), "error"),
    ("suspended", "approved"): (_l("您的服务机构已经恢复服务。说明：%(reason)s"), "success"),
    ("approved", "revoked"): (_l("您的服务机构已被取消资格。原因：%(reason)s"), "error"),
    ("suspended", "revoked"): (_l("您的服务机构已被取消资格。原因：%(reason)s"), "error"),
}


@login_landing.connect
def _provider_landing(user, *, fresh: bool, previous_login_at, **_extra) -> str | None:
    """A provider login hears once of a decision since its last login; one not approved lands on its status."""
    if user.role != "provider" or user.provider_id is None:
        return None
    found = registration.standing(actor=user)
    if fresh:
        decision = registration.decision_since(provider_id=user.provider_id,
                                               since=previous_login_at or user.created_at)
        if decision is not None:
            message, category = DECISION_NOTICES.get((decision.from_status, decision.to_status),
                                                     DECISION_NOTICES[("approved", "suspended")])
            flash(str(message) % {"reason": decision.reason}, category)
    if found.provider.status != "approved":
        return url_for("provider_registration.status")
    return None
