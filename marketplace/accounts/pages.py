"""The provider manager's page of staff logins `/provider/logins`: the provider's logins, a form to add a
scanning staff login, and deactivate / reactivate with a reason after a confirmation.

Only the provider's manager (its first login) opens these pages; its other staff get the console's 403
page (marketplace.auth.access.require_provider_manager, called by the service). The views call the same
service functions as the API (marketplace.accounts.service) and read the forms with the API's schemas;
each form carries a form key, so a double tap adds or deactivates once.
"""


from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from marshmallow import fields, validate

from marketplace.accounts import service
from marketplace.accounts.schemas import StaffLoginCreateSchema
from marketplace.auth.access import require_actor, role_required
from marketplace.auth.service import CannotDeactivateSelf, DuplicateUsername
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound, ValidationFailed
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.schemas import ReasonSchema
from marketplace.web.forms import domain_refusal, form_input

provider_logins = Blueprint("provider_logins", __name__, template_folder="templates")

PAGE = "provider_logins/index.html"
CONFIRM = "provider_logins/confirm.html"



class StaffLoginForm(StaffLoginCreateSchema):
    """The API's body, with the password typed a second time."""

    password_again = fields.String(required=True, validate=validate.Length(min=1, max=1024))


def _errors(refused: DomainError) -> dict[str, list[str]]:
    if isinstance(refused, DuplicateUsername):  # beside the field it is about
        return {"username": domain_refusal(refused)["_form"]}
    return domain_refusal(refused)


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


@provider_logins.context_processor
def _context() -> dict:
    return {"form_key_field": form_key_field}


def _index(*, status: int = 200, errors: dict | None = None, username: str = ""):
    actor = require_actor()
    logins = service.provider_logins(provider_id=actor.provider_id, actor=actor)
    return render_template(PAGE, logins=logins, errors=errors or {}, username=username, me=actor), status


@provider_logins.get("/provider/logins")
@role_required("provider")
def index():
    """The provider's logins and the form to add a staff login."""
    return _index()


@provider_logins.post("/provider/logins")
@role_required("provider")
def add():
    """Add a scanning staff login (password typed twice); the form again, with the refusal beside its field."""
    actor = require_actor()
    username = request.form.get("username", "").strip()
    try:
        data = form_input(StaffLoginForm())
        if data.pop("password_again") != data["password"]:
            raise ValidationFailed({"password_again": gettext("两次填写的密码不一样，请重新填写。")})
        with transaction():
            address = once_per_form(lambda: _add(actor, data))
    except (Forbidden, NotFound):
        raise
    except DomainError as refused:
        return _index(status=refused.status, errors=_errors(refused), username=username)
    return redirect(address, 303)


def _add(actor, data: dict) -> str:
    added = service.add_staff_login(provider_id=actor.provider_id, **data, actor=actor, now=utcnow())
    flash(gettext("已添加工作人员账号 %(username)s。请把用户名和密码当面告诉这位工作人员。", username=added.username),
          "success")
    return url_for(".index")


CHANGES = {
    # action: (becomes active, heading, what happens, button, done)
    "deactivate": (False, _l("停用账号 %(username)s"),
                   _l("停用以后，这个账号会马上退出登录（手机上打开的页面也一样），不能再扫码，也不能再登录。"
                      "以后需要时可以恢复。"),
                   _l("确认停用"), _l("已停用账号 %(username)s，这个账号已经退出登录。")),
    "reactivate": (True, _l("恢复账号 %(username)s"),
                   _l("恢复以后，这位工作人员可以用原来的密码重新登录、扫码。"),
                   _l("确认恢复"), _l("已恢复账号 %(username)s，可以重新登录了。")),
}


def _in_reach(user_id: int, action: str):
    """The login to change, if the change makes sense now. :raises NotFound, Forbidden, CannotDeactivateSelf,
    InvalidTransition: as the API would for the same change."""
    actor = require_actor()
    user, _region = service.login_in_reach(user_id, actor=actor)
    if user.id == actor.id:
        raise CannotDeactivateSelf()
    if user.active == CHANGES[action][0]:
        raise InvalidTransition()
    return user


def _confirm(user, action: str, *, status: int = 200, errors: dict | None = None, reason: str = ""):
    becomes_active, heading, sentence, button, _done = CHANGES[action]
    return render_template(CONFIRM, user=user, action=action, heading=str(heading) % {"username": user.username},
                           sentence=sentence, button=button, errors=errors or {}, reason=reason), status


@provider_logins.get("/provider/logins/<int:user_id>/deactivate")
@role_required("provider")
def confirm_deactivate(user_id: int):
    """Deactivate: the confirmation (the login is logged out at once), with the reason asked for."""
    return _confirm(_in_reach(user_id, "deactivate"), "deactivate")


@provider_logins.get("/provider/logins/<int:user_id>/reactivate")
@role_required("provider")
def confirm_reactivate(user_id: int):
    """Reactivate: the confirmation, with the reason asked for."""
    return _confirm(_in_reach(user_id, "reactivate"), "reactivate")


@provider_logins.post("/provider/logins/<int:user_id>/deactivate")
@role_required("provider")
def deactivate(user_id: int):
    """Deactivate (every session of the login ends at once), then back to the list."""
    return _change_posted(user_id, "deactivate")


@provider_logins.post("/provider/logins/<int:user_id>/reactivate")
@role_required("provider")
def reactivate(user_id: int):
    """Reactivate, then back to the list."""
    return _change_posted(user_id, "reactivate")


def _change_posted(user_id: int, action: str):
    actor = require_actor()
    user, _region = service.login_in_reach(user_id, actor=actor)
    try:
        data = form_input(ReasonSchema())
        with transaction():
            address = once_per_form(lambda: _change(actor, user_id, action, data["reason"]))
    except ValidationFailed as refused:
        return _confirm(user, action, status=refused.status, errors=_errors(refused),
                        reason=request.form.get("reason", ""))
    except (Forbidden, NotFound):
        raise
    except DomainError as refused:  # changed meanwhile, or itself: the list as it is now says why
        return _index(status=refused.status, errors=_errors(refused))
    return redirect(address, 303)


def _change(actor, user_id: int, action: str, reason: str) -> str:
    changed = service.set_login_active(user_id=user_id, active=CHANGES[action][0], reason=reason, actor=actor,
                                       now=utcnow())
    flash(str(CHANGES[action][4]) % {"username": changed.username}, "success")
    return url_for(".index")
