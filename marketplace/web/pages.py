"""The console's own pages: /login, /logout and /preferences (language, 大字模式)."""

from blinker import Namespace
from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext

from marketplace.auth.access import begin_session, current_actor, end_session
from marketplace.auth.schemas import CredentialsSchema
from marketplace.errors import DomainError
from marketplace.web.forms import domain_refusal, form_input
from marketplace.web.navigation import home_for

web = Blueprint("web", __name__, template_folder="templates")

LANGUAGES = ("zh_CN", "en")
PREFERENCES = ("lang", "large_text")

# Where a login lands when its domain has more to say than the role's home, sent with the user
# (`fresh`: a login just happened; `previous_login_at`: the login before it). A receiver of a higher
# domain may flash a notice (once: only on a fresh login) and returns an address, or None. A provider
# not approved lands on its status page (providers.registration_pages), and hears of a decision once.
login_landing = Namespace().signal("console-login-landing")


def landing_for(user, *, fresh: bool) -> str | None:
    """The address a receiver of `login_landing` sends *user* to, if any."""
    answers = login_landing.send(user, fresh=fresh, previous_login_at=getattr(user, "previous_login_at", None))
    return next((address for _receiver, address in answers if address), None)


def safe_next(target: str | None) -> str | None:
    """Only an address on this site (a path), never another origin."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return None


@web.route("/login", methods=["GET", "POST"])
def login():
    next_page = safe_next(request.values.get("next"))
    if request.method == "GET":
        actor = current_actor()
        if actor is not None:
            return redirect(landing_for(actor, fresh=False) or next_page or home_for(actor.role))
        return render_template("web/login.html", errors={}, username="", next_page=next_page)
    username = request.form.get("username", "")
    try:
        credentials = form_input(CredentialsSchema(), exclude=("csrf_token", "next"))
        kept = {key: session[key] for key in PREFERENCES if key in session}
        user, _token = begin_session(**credentials)
        session.update(kept)
    except DomainError as refused:
        status = refused.status if refused.status in (401, 422, 429) else 400
        return render_template("web/login.html", errors=domain_refusal(refused), username=username,
                               next_page=next_page), status
    return redirect(landing_for(user, fresh=True) or next_page or home_for(user.role))


@web.post("/logout")
def logout():
    kept = {key: session[key] for key in PREFERENCES if key in session}
    end_session()
    session.update(kept)
    flash(gettext("您已经退出登录。"), "success")
    return redirect(url_for("web.login"))


@web.get("/preferences")
def preferences():
    """Language and 大字模式, kept in the session cookie (they survive login and logout).

    Plain links, like any site's language switch: they change only how this browser shows pages, so
    anonymous visitors of the public pages get no cookie until they choose.
    """
    lang = request.args.get("lang")
    if lang in LANGUAGES:
        session["lang"] = lang
    large = request.args.get("large_text")
    if large in ("0", "1"):
        session["large_text"] = large == "1"
    return redirect(safe_next(request.args.get("next")) or "/")
