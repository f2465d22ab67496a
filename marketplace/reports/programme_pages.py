"""The staff programme page `/staff/programmes/<id>`: the dashboard (ledger bar, burn rate and the day the
money runs out at that rate, redemptions by item, provider and day, the reserved share), the budget
and its amendments, activating and closing, the enrolled providers, applications to join, how many
recipients chose each provider per item, and last month's switching per provider (换机构).

Admins in the programme's region and auditors read it; only admins act, and the action routes refuse
anyone else (403) — an auditor's page draws no form. Every action calls the same service as its API
route (`POST /api/v1/programmes/{id}/budget|activate|close`, `POST /api/v1/programme-applications/{id}/
accept|refuse`), reads the form through the API's schema, and carries a form key so a double click acts
once. Activating and closing are confirmed on a page of their own that says what will follow.
"""

import re
from datetime import timedelta
from urllib.parse import quote

from flask import Blueprint, Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from marshmallow import ValidationError, fields, post_load, validate

from marketplace import spreadsheets
from marketplace.auth.access import require_actor, role_required
from marketplace.db import db, transaction, utcnow
from marketplace.errors import DomainError, NotFound
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.programmes import ledger
from marketplace.programmes import service as programmes
from marketplace.programmes.integrity import SEVERITY_NAMES
from marketplace.programmes.schemas import BudgetAmendmentSchema
from marketplace.recipients.pages import SWITCH_REASON_NAMES
from marketplace.reports import programme_view
from marketplace.reports.pages import KIND_NAMES
from marketplace.reports.staff_pages import PROGRAMME_STATUS_NAMES
from marketplace.schemas import ReasonSchema
from marketplace.web import charts
from marketplace.web.format import day, money
from marketplace.web.forms import domain_refusal, form_input
from providers.models import ProgrammeApplication
from providers.schemas import AcceptanceSchema
from providers.service import applications

staff_programmes = Blueprint("staff_programmes", __name__, template_folder="templates",
                             url_prefix="/staff/programmes")

PROVIDER_STATUS_NAMES = {"pending": _l("待审核"), "approved": _l("已通过审核"), "suspended": _l("已暂停"),
                         "revoked": _l("已取消资格")}
APPLICATION_STATUS_NAMES = {"pending": _l("等待处理"), "accepted": _l("已同意"), "refused": _l("已拒绝")}
DIRECTIONS = {"add": _l("追加预算"), "take_back": _l("收回未用的预算")}
YUAN_RE = re.compile(r"^(\d{1,10})(?:\.(\d{1,2}))?$")
# An accept refused by enrolment's rules: the application stays pending, and refusing it is the way on.
ENROLMENT_REFUSALS = {"provider_not_approved", "no_matching_items", "no_matching_regions", "already_enrolled",
                      "programme_closed"}


class Yuan(fields.Field):
    """An amount typed in yuan (5000, 5,000.50, ¥5000) read as integer fen; more than two decimals is refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = str(value).replace(",", "").replace("，", "").replace("¥", "").replace("￥", "").strip()
        found = YUAN_RE.match(text)
        if not found:
            raise ValidationError(gettext("请填写金额（元），例如 5000 或 5000.50。"))
        fen = int(found.group(1)) * 100 + int((found.group(2) or "0").ljust(2, "0"))
        if not 0 < fen <= programmes.MAX_AMENDMENT_FEN:
            raise ValidationError(gettext("金额应大于 0，且不超过 100 亿元。"))
        return fen


class BudgetAmendmentForm(BudgetAmendmentSchema):
    """The API's amendment (amount_fen, reason) as a form: an amount in yuan and which way it goes."""

    class Meta:
        exclude = ("amount_fen",)

    direction = fields.String(required=True, validate=validate.OneOf(tuple(DIRECTIONS)))
    amount = Yuan(required=True)

    @post_load
    def _to_fen(self, data, **_kwargs):
        amount = data.pop("amount")
        return {"amount_fen": amount if data.pop("direction") == "add" else -amount, **data}


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


@staff_programmes.context_processor
def _context() -> dict:
    return {"status_names": PROGRAMME_STATUS_NAMES, "kind_names": KIND_NAMES, "directions": DIRECTIONS,
            "form_key_field": form_key_field, "severity_names": SEVERITY_NAMES,
            "switch_reason_names": SWITCH_REASON_NAMES,
            "provider_status_names": PROVIDER_STATUS_NAMES, "application_status_names": APPLICATION_STATUS_NAMES}


def _programme(programme_id: int):
    """:raises NotFound, Forbidden: as the API's GET /programmes/{id} (scope included)."""
    return programmes.get_programme(programme_id, actor=require_actor())


# --- the dashboard ---------------------------------------------------------------------------------------

def _show(programme, *, errors=None, form=None, status: int = 200):
    view = programme_view.programme_page(programme, actor=require_actor(), now=utcnow())
    return render_template("staff_programmes/show.html", **view, **_charts(view), errors=errors or {},
                           form=form or {}), status


def _burn_chart(view: dict) -> Markup:
    """Spent so far (solid), the recent rate carried on (dashed) until the money or the programme ends, and
    the whole budget (dotted): where the dashed line meets the dotted one, the money is gone."""
    programme, burn = view["programme"], view["burn"]
    start, end, today = programme.starts_on, programme.ends_on, burn.today
    whole = burn.spent_fen + burn.unspent_fen
    spent = [(start, 0), *view["cumulative"]] if not view["cumulative"] or view["cumulative"][0][0] > start \
        else view["cumulative"]
    lines = [charts.Line(gettext("已花费（实线）"), [*spent, (min(today, end), burn.spent_fen)], "actual")]
    if burn.exhaustion_date is not None and start <= today <= end:
        if burn.exhaustion_date <= end:
            projected = [(today, burn.spent_fen), (burn.exhaustion_date, whole)]
        else:
            projected = [(today, burn.spent_fen), (end, burn.spent_fen + burn.rate_fen_per_day * (end - today).days)]
        lines.append(charts.Line(gettext("按最近 %(days)s 天的速度预计（虚线）", days=burn.window_days), projected,
                                 "projection"))
    lines.append(charts.Line(gettext("全部预算（点线）"), [(start, whole), (end, whole)], "limit"))
    return charts.line_chart(lines, start=start, end=end, top=max(whole, burn.spent_fen), top_shown=money(whole),
                             start_shown=day(start), end_shown=day(end), today=today)


def _days_chart(view: dict) -> Markup:
    """Face value served per day over the last RECENT_DAYS_SHOWN days (days without service at zero)."""
    since, today = view["recent_since"], view["burn"].today
    served = {row["date"]: row["face_value_fen"] for row in view["recent_days"]}
    points = [(since + timedelta(days=n), served.get((since + timedelta(days=n)).isoformat(), 0))
              for n in range((today - since).days + 1)]
    top = max([value for _day, value in points] + [1])
    return charts.line_chart([charts.Line(gettext("每天政府支付的金额"), points, "actual")], start=since, end=today,
                             top=top, top_shown=money(top), start_shown=day(since), end_shown=day(today))


def _charts(view: dict) -> dict:
    board = view["board"]
    share = board["reserved_share"]
    return {
        "burn_chart": _burn_chart(view),
        "days_chart": _days_chart(view),
        "items_chart": charts.bar_chart([
            charts.Bar(view["item_names"].get(row["item_code"], row["item_code"]), row["face_value_fen"],
                       money(row["face_value_fen"])) for row in board["redemptions_by_item"]]),
        "providers_chart": charts.bar_chart([
            charts.Bar(gettext("%(name)s（社会组织）", name=row["name"]) if row["kind"] == "social_organisation"
                       else row["name"], row["face_value_fen"], money(row["face_value_fen"]),
                       "social" if row["kind"] == "social_organisation" else "")
            for row in board["redemptions_by_provider"]]),
        "share_chart": charts.bar_chart([
            charts.Bar(gettext("目标"), share["target_percent"], f"{share['target_percent']}%", "target"),
            charts.Bar(gettext("实际"), round(share["actual_percent"] or 0),
                       "—" if share["actual_percent"] is None else f"{share['actual_percent']}%", "actual")],
            top=100),
        "choice_charts": {item.item_code: charts.bar_chart([
            charts.Bar(line.provider_name, line.recipients, gettext("%(count)s 人", count=line.recipients))
            for line in item.providers]) for item in view["choices"]},
    }


@staff_programmes.get("/<int:programme_id>")
@role_required("admin", "auditor")
def show(programme_id: int):
    return _show(_programme(programme_id))


@staff_programmes.post("/<int:programme_id>/budget")
@role_required("admin")
def amend_budget(programme_id: int):
    """Allocate more or take unspent budget back, with a reason; the page again with the refusal beside it."""
    actor = require_actor()
    programme = _programme(programme_id)
    try:
        data = form_input(BudgetAmendmentForm())
        with transaction():
            once_per_form(lambda: _amend(programme_id, data, actor))
    except DomainError as refused:
        errors = domain_refusal(refused)
        if refused.code in ("budget_below_committed", "programme_closed"):
            errors = {"amount": errors.pop("_form")}
        return _show(_programme(programme_id), errors=errors, form=request.form, status=refused.status)
    flash(gettext("预算已经调整。"), "success")
    return redirect(url_for(".show", programme_id=programme.id, _anchor="budget"), 303)


def _amend(programme_id: int, data: dict, actor) -> str:
    programme = programmes.get_programme(programme_id, actor=actor)
    programmes.amend_budget(programme=programme, **data, actor=actor, now=utcnow())
    return url_for(".show", programme_id=programme_id, _anchor="budget")


# --- activate and close: a confirmation that says what follows ---------------------------------------------

def _confirm(programme, action: str, *, errors=None, status: int = 200):
    preview = programme_view.close_preview(programme.id) if action == "close" else None
    balances = ledger.balances(programme.id)
    return render_template("staff_programmes/confirm.html", programme=programme, action=action, preview=preview,
                           ledger=balances, errors=errors or {}), status


@staff_programmes.get("/<int:programme_id>/activate")
@role_required("admin")
def confirm_activation(programme_id: int):
    return _confirm(_programme(programme_id), "activate")


@staff_programmes.get("/<int:programme_id>/close")
@role_required("admin")
def confirm_closing(programme_id: int):
    return _confirm(_programme(programme_id), "close")


@staff_programmes.post("/<int:programme_id>/activate")
@role_required("admin")
def activate(programme_id: int):
    return _act(programme_id, "activate", gettext("项目已经启动，可以发放服务券了。"))


@staff_programmes.post("/<int:programme_id>/close")
@role_required("admin")
def close(programme_id: int):
    return _act(programme_id, "close", gettext("项目已经结束：未使用的服务券已作废，钱已退回预算。"))


def _act(programme_id: int, action: str, said: str):
    actor = require_actor()
    _programme(programme_id)
    change = programmes.activate if action == "activate" else programmes.close

    def run() -> str:
        change(programme=programmes.get_programme(programme_id, actor=actor), actor=actor, now=utcnow())
        return url_for(".show", programme_id=programme_id)

    try:
        with transaction():
            address = once_per_form(run)
    except DomainError as refused:
        return _confirm(_programme(programme_id), action, errors=domain_refusal(refused), status=refused.status)
    flash(said, "success")
    return redirect(address, 303)


# --- applications to join -----------------------------------------------------------------------------------

def _application(programme, application_id: int) -> ProgrammeApplication:
    """One application to this programme (404 for another programme's: addresses are not guessed across)."""
    found = db.session.get(ProgrammeApplication, application_id)
    if found is None or found.programme_id != programme.id:
        raise NotFound("No such application.")
    return found


def _decision(programme, application_id: int, *, errors=None, reason: str = "", suggest_refusal: bool = False,
              status: int = 200):
    application = _application(programme, application_id)
    detail = programme_view.application_detail(application)
    return render_template("staff_programmes/application.html", programme=programme, detail=detail,
                           errors=errors or {}, reason=reason, suggest_refusal=suggest_refusal), status


@staff_programmes.get("/<int:programme_id>/applications/<int:application_id>")
@role_required("admin")
def application(programme_id: int, application_id: int):
    return _decision(_programme(programme_id), application_id)


@staff_programmes.post("/<int:programme_id>/applications/<int:application_id>/accept")
@role_required("admin")
def accept(programme_id: int, application_id: int):
    return _decide(programme_id, application_id, "accept")


@staff_programmes.post("/<int:programme_id>/applications/<int:application_id>/refuse")
@role_required("admin")
def refuse(programme_id: int, application_id: int):
    return _decide(programme_id, application_id, "refuse")


def _decide(programme_id: int, application_id: int, decision: str):
    actor = require_actor()
    _application(_programme(programme_id), application_id)
    schema = AcceptanceSchema() if decision == "accept" else ReasonSchema()
    decide = applications.accept if decision == "accept" else applications.refuse

    def run(data) -> str:
        decide(application_id=application_id, reason=data.get("reason"), actor=actor, now=utcnow())
        return url_for(".show", programme_id=programme_id, _anchor="applications")

    try:
        data = form_input(schema)
        with transaction():
            address = once_per_form(lambda: run(data))
    except DomainError as refused:
        programme = _programme(programme_id)
        if refused.code == "invalid_transition":
            errors = {"_form": [gettext("另一位工作人员已经先处理了这份申请，下面是现在的结果。")]}
            return _decision(programme, application_id, errors=errors, status=refused.status)
        if decision == "accept" and refused.code in ENROLMENT_REFUSALS:
            said = domain_refusal(refused)["_form"][0]
            errors = {"_form": [said, gettext("这份申请不能同意。建议选择“不同意”，并把原因告诉服务机构。")]}
            return _decision(programme, application_id, errors=errors, reason=said, suggest_refusal=True,
                             status=refused.status)
        errors = domain_refusal(refused)
        field = "accept_reason" if decision == "accept" else "reason"
        errors = {field: errors.pop("reason", []) + errors.pop("_form", []), **errors}
        return _decision(programme, application_id, errors=errors, reason=request.form.get("reason", ""),
                         status=refused.status)
    if decision == "accept":
        flash(gettext("已同意申请，这家服务机构已加入项目。"), "success")
    else:
        flash(gettext("已拒绝申请，服务机构会看到您写的原因。"), "success")
    return redirect(address, 303)


# --- exports: each table of the dashboard, as shown ----------------------------------------------------------

EXPORTS = {
    "items": ("按服务项目", ["服务项目编码", "服务项目", "服务次数", "政府支付（元）"]),
    "providers": ("按服务机构", ["服务机构编号", "服务机构", "类型", "服务次数", "政府支付（元）"]),
    "days": ("按日", ["日期", "服务次数", "政府支付（元）"]),
    "choices": ("选择统计", ["服务项目", "服务机构", "选择的老人数", "占比（%）"]),
}
KIND_WORDS_ZH = {"social_organisation": "社会组织", "enterprise": "企业", "public_institution": "事业单位",
                 "community_organisation": "社区社会组织", "rural_collective": "农村集体经济组织"}


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


def _export_rows(programme, table: str):
    view = programme_view.programme_page(programme, actor=require_actor(), now=utcnow())
    board = view["board"]
    if table == "items":
        return [[row["item_code"], view["item_names"].get(row["item_code"], row["item_code"]), row["count"],
                 _yuan(row["face_value_fen"])] for row in board["redemptions_by_item"]]
    if table == "providers":
        return [[row["provider_id"], row["name"], KIND_WORDS_ZH.get(row["kind"], row["kind"]), row["count"],
                 _yuan(row["face_value_fen"])] for row in board["redemptions_by_provider"]]
    if table == "days":
        return [[row["date"], row["count"], _yuan(row["face_value_fen"])] for row in board["redemptions_by_day"]]
    return [[item.item_name, line.provider_name, line.recipients, line.percent]
            for item in view["choices"] for line in item.providers]


def _export(programme_id: int, table: str, kind: str):
    """One of the dashboard's tables as CSV (UTF-8 with BOM) or XLSX, Chinese headers, streamed."""
    programme = _programme(programme_id)
    title, headers = EXPORTS[table]
    rows = _export_rows(programme, table)
    if kind == "csv":
        chunks, mimetype = spreadsheets.csv_chunks(headers, rows), spreadsheets.CSV_MIMETYPE
    else:
        chunks, mimetype = spreadsheets.xlsx_chunks(title, headers, rows), spreadsheets.XLSX_MIMETYPE
    name = f"项目{programme.id}-{title}.{kind}"
    disposition = f"attachment; filename=\"programme-{programme.id}-{table}.{kind}\"; filename*=UTF-8''{quote(name)}"
    return Response(stream_with_context(chunks), mimetype=mimetype, headers={"Content-Disposition": disposition})


def _export_view(table: str, kind: str):
    def view(programme_id: int):
        return _export(programme_id, table, kind)

    view.__name__ = f"export_{table}_{kind}"
    return role_required("admin", "auditor")(view)


# One address per table and format (`…/providers.csv`), with the programme as its only argument.
for _table in EXPORTS:
    for _kind in ("csv", "xlsx"):
        staff_programmes.add_url_rule(f"/<int:programme_id>/{_table}.{_kind}", endpoint=f"export_{_table}_{_kind}",
                                      view_func=_export_view(_table, _kind))
