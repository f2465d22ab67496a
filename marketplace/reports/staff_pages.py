"""The staff home `/staff`: programmes in scope with their ledger bars, and what needs attention."""

from flask import Blueprint, current_app, render_template, url_for
from flask_babel import lazy_gettext as _l

from marketplace.auth.access import require_actor, role_required
from marketplace.db import utcnow
from marketplace.programmes.integrity import SEVERITY_NAMES
from marketplace.programmes.pages import programme_address
from marketplace.reports.overview import staff_overview

PROGRAMME_STATUS_NAMES = {"draft": _l("草稿"), "active": _l("进行中"), "closed": _l("已结束")}

staff_home = Blueprint("staff_home", __name__, template_folder="templates")


def link_to(endpoint: str) -> str | None:
    """The address of a work queue, once its page exists (the staff pages are built one by one)."""
    return url_for(endpoint) if endpoint in current_app.view_functions else None


@staff_home.get("/staff")
@role_required("admin", "auditor")
def home():
    return render_template("staff_home/home.html", status_names=PROGRAMME_STATUS_NAMES, link_to=link_to,
                           programme_address=programme_address, severity_names=SEVERITY_NAMES,
                           **staff_overview(actor=require_actor(), now=utcnow()))
