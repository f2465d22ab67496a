"""Providers for the bureau's staff, `/staff/providers`: the approval queue (pending, oldest first), every
provider with filters and paging, the list as CSV or XLSX; a provider's page (particulars, ratings,
complaints with its answers, logins, programmes, applications, the history of decisions); and the four
qualification decisions — approve, suspend, reinstate, revoke — each confirmed with what will follow.

Admins in scope decide; auditors read every page and get no form (a posted decision is 403). The
decisions are the API's (`POST /api/v1/providers/{id}/approve` …): the same service, the same reason
schema, the same refusals.
"""

from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup

from marketplace import scope, spreadsheets
from marketplace.accounts import service as accounts
from marketplace.auth.access import require_actor, role_required
from marketplace.catalogue import service as catalogue
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError, ValidationFailed
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.recipients.pages import SWITCH_REASON_NAMES
from marketplace.schemas import ReasonSchema
from marketplace.web.forms import field_errors, form_input
from providers.models import KINDS, STATUSES
from providers.schemas import ProviderQuerySchema
from providers.service import qualification, registry
from providers.service.staff_view import decision_preview, provider_dossier

PER_PAGE = 25
QUEUE_SHOWN = 50
EXPORT_BATCH = 500
ACTIONS = ("approve", "suspend", "reinstate", "revoke")

KIND_NAMES = {
    "social_organisation": _l("社会组织"), "enterprise": _l("企业"), "public_institution": _l("事业单位"),
    "community_organisation": _l("社区组织"), "rural_collective": _l("农村集体经济组织"),
}
STATUS_NAMES = {"pending": _l("待审核"), "approved": _l("已通过审核"), "suspended": _l("已暂停"),
                "revoked": _l("已取消资格")}
ACTION_NAMES = {"approve": _l("批准"), "suspend": _l("暂停服务"), "reinstate": _l("恢复服务"),
                "revoke": _l("取消资格")}
# What each decision's confirmation is headed with and what its button says.
HEADINGS = {"approve": _l("批准 %(name)s"), "suspend": _l("暂停 %(name)s 的服务"),
            "reinstate": _l("恢复 %(name)s 的服务"), "revoke": _l("取消 %(name)s 的资格")}
BUTTONS = {"approve": _l("确认批准"), "suspend": _l("确认暂停"), "reinstate": _l("确认恢复"),
           "revoke": _l("确认取消资格")}
DONE = {"approve": _l("已批准 %(name)s。它的账号下次登录时会看到审核结果和您写的理由。"),
        "suspend": _l("已暂停 %(name)s 的服务。"), "reinstate": _l("已恢复 %(name)s 的服务。"),
        "revoke": _l("已取消 %(name)s 的资格。")}
APPLICATION_STATUS_NAMES = {"pending": _l("待处理"), "accepted": _l("已同意"), "refused": _l("未同意")}
COMPLAINT_STATUS_NAMES = {"open": _l("正在处理"), "resolved": _l("已处理")}

# The exports are for the bureau's files: Chinese headers and words, whatever the locale.
EXPORT_HEADERS = ["编号", "名称", "类型", "统一社会信用代码", "法定代表人", "电话", "地址", "服务项目", "服务地区",
                  "每月服务能力", "状态", "状态说明", "登记时间", "评价人数", "平均分", "满意率"]
EXPORT_KINDS = {"social_organisation": "社会组织", "enterprise": "企业", "public_institution": "事业单位",
                "community_organisation": "社区组织", "rural_collective": "农村集体经济组织"}
EXPORT_STATUSES = {"pending": "待审核", "approved": "已通过审核", "suspended": "已暂停", "revoked": "已取消资格"}
FILTERS = ("status", "kind", "item_code", "region_code")

staff_providers = Blueprint("staff_providers", __name__, template_folder="templates")


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn): a double click decides once."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


@staff_providers.context_processor
def _context() -> dict:
    return {"kind_names": KIND_NAMES, "status_names": STATUS_NAMES, "action_names": ACTION_NAMES,
            "form_key_field": form_key_field}


# --- the list ----------------------------------------------------------------------------------------

def _query(source) -> dict:
    """The list's filters and page. :raises ValidationFailed: as the API's query schema refuses them."""
    query = form_input(ProviderQuerySchema(), source=source)
    query.pop("per_page", None)
    return query


def _items() -> dict[str, str]:
    return {item.code: item.name for item in catalogue.list_items()}


@staff_providers.get("/staff/providers")
@role_required("admin", "auditor")
def index():
    """The approval queue, then every provider the actor may see, filtered and paged."""
    actor = require_actor()
    queue = registry.list_providers(actor=actor, status="pending", page=1, per_page=QUEUE_SHOWN)
    errors, query, found = {}, {}, None
    try:
        query = _query(request.args)
        found = registry.list_providers(actor=actor, per_page=PER_PAGE, **query)
    except ValidationFailed as refused:
        errors = field_errors(refused)
    args = {name: request.args[name] for name in FILTERS if request.args.get(name)}
    return render_template("staff_providers/index.html", queue=queue, found=found, query=query, errors=errors,
                           args=args, items=_items(), kinds=KINDS, statuses=STATUSES,
                           openable=lambda p: scope.may_act_on_any(actor, p.region_codes)), 422 if errors else 200


def _export_lines(actor, query: dict):
    local = ZoneInfo(current_app.config["LOCAL_TIMEZONE"])  # people read local times
    items = _items()
    page = 1
    while True:
        found = registry.list_providers(actor=actor, page=page, per_page=EXPORT_BATCH, **query)
        for profile in found["items"]:
            p, rating = profile.provider, profile.rating
            yield [p.id, p.name, EXPORT_KINDS.get(p.kind, p.kind), p.credit_code, p.legal_representative, p.phone,
                   p.address, "、".join(items.get(code, code) for code in p.item_codes), "、".join(p.region_codes),
                   p.capacity, EXPORT_STATUSES.get(p.status, p.status), p.status_reason or "",
                   p.created_at.astimezone(local).strftime("%Y-%m-%d %H:%M"), rating.count,
                   "" if rating.mean is None else f"{rating.mean:.2f}",
                   "" if rating.satisfaction_rate is None else f"{rating.satisfaction_rate * 100:.1f}%"]
        if page * EXPORT_BATCH >= found["total"]:
            return
        page += 1


def _export(kind: str):
    actor = require_actor()
    try:
        query = _query(request.args)
    except ValidationFailed:
        return index()  # the list with the refusal beside its field (422)
    query.pop("page", None)
    lines = _export_lines(actor, query)
    return spreadsheets.download(kind, "服务机构", EXPORT_HEADERS, lines, f"providers-{utcnow():%Y%m%d}")


@staff_providers.get("/staff/providers.csv")
@role_required("admin", "auditor")
def export_csv():
    """The list as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers)."""
    return _export("csv")


@staff_providers.get("/staff/providers.xlsx")
@role_required("admin", "auditor")
def export_xlsx():
    """The list as filtered, every page, as an Excel workbook."""
    return _export("xlsx")


# --- one provider ------------------------------------------------------------------------------------

def _show(provider_id: int, *, errors: dict | None = None, status: int = 200):
    actor = require_actor()
    dossier = provider_dossier(provider_id=provider_id, actor=actor, now=utcnow())
    logins = accounts.provider_logins(provider_id=provider_id, actor=actor)
    return render_template("staff_providers/show.html", d=dossier, p=dossier.provider, logins=logins,
                           items=_items(), errors=errors or {}, application_status_names=APPLICATION_STATUS_NAMES,
                           complaint_status_names=COMPLAINT_STATUS_NAMES,
                           switch_reason_names=SWITCH_REASON_NAMES), status


@staff_providers.get("/staff/providers/<int:provider_id>")
@role_required("admin", "auditor")
def show(provider_id: int):
    """A provider's particulars, ratings, complaints, logins, programmes and history (404/403 as the API)."""
    return _show(provider_id)


# --- decisions ---------------------------------------------------------------------------------------

def _confirm(provider_id: int, action: str, *, errors: dict | None = None, reason: str = "", status: int = 200):
    preview = decision_preview(provider_id=provider_id, action=action, actor=require_actor())
    if not preview.applies:  # someone decided first: the page says what the provider is now, and offers nothing
        errors, status = {"_form": [said_transition(preview.provider)]}, 409
    name = preview.provider.name
    return render_template("staff_providers/confirm.html", preview=preview, p=preview.provider, action=action,
                           heading=str(HEADINGS[action]) % {"name": name}, button=BUTTONS[action],
                           errors=errors or {}, reason=reason, back=_back(request.values)), status


def _back(source) -> str:
    """Back to the queue when the decision was opened from it, else to the provider's page."""
    return "queue" if source.get("from") == "queue" else "provider"


def confirm(provider_id: int, action: str):
    """What the decision will do, and the reason to give (admins in scope only)."""
    return _confirm(provider_id, action)


def decide(provider_id: int, action: str):
    """Decide with the reason, once per form; then back where the admin came from, with what was done."""
    actor = require_actor()
    registry.find_own_provider(provider_id, actor=actor)  # 404 or 403 before anything is read from the form
    back = _back(request.form)
    try:
        data = form_input(ReasonSchema())
        with transaction():
            address = once_per_form(lambda: _decide(actor, provider_id, action, data["reason"], back))
    except ValidationFailed as refused:
        return _confirm(provider_id, action, errors=field_errors(refused), reason=request.form.get("reason", ""),
                        status=refused.status)
    except DomainError as refused:
        if refused.code != "invalid_transition":
            raise  # 403, 404: the console's error page, as for any address out of reach
        return _confirm(provider_id, action)
    return redirect(address, 303)


def _decision_views(action: str) -> None:
    """`/staff/providers/<id>/<action>`: GET the confirmation (`.confirm_<action>`), POST the decision
    (`.decide_<action>`) — one fixed address per decision, as the API has."""

    def confirm_view(provider_id: int):
        return confirm(provider_id, action)

    def decide_view(provider_id: int):
        return decide(provider_id, action)

    for name, view, method in ((f"confirm_{action}", confirm_view, "GET"), (f"decide_{action}", decide_view, "POST")):
        view.__name__, view.__doc__ = name, (confirm if method == "GET" else decide).__doc__
        staff_providers.add_url_rule(f"/staff/providers/<int:provider_id>/{action}", name,
                                     role_required("admin")(view), methods=[method])


for _action in ACTIONS:
    _decision_views(_action)


def _decide(actor, provider_id: int, action: str, reason: str, back: str) -> str:
    changed = qualification.change_status(provider_id=provider_id, action=action, reason=reason, actor=actor,
                                          now=utcnow())
    flash(str(DONE[action]) % {"name": changed.provider.name}, "success")
    if back == "queue":
        return url_for(".index")
    return url_for(".show", provider_id=provider_id)


def said_transition(provider) -> str:
    """Someone decided first: what the provider is now, in one sentence."""
    return gettext("这家机构现在的状态是“%(status)s”，可能别的工作人员刚刚处理过，不能再这样改。",
                   status=STATUS_NAMES.get(provider.status, provider.status))
