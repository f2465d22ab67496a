"""Staff pages for market-integrity flags (admins decide, auditors read):

- `/staff/anomalies`: the queue — open flags first by default, the most severe first, each with its rule, the
  provider, the month and its plain explanation; filters (programme, month, status, rule), paging, and the same
  list as CSV or XLSX.
- `/staff/anomalies/<id>`: one flag — the explanation, the evidence, the services it is about, and the
  decision: confirm (its unsettled services are held out of settlement until a dismissal) or dismiss, each
  with a reason; the same service as POST /api/v1/anomalies/{id}/confirm|dismiss. Auditors see no form and a
  posted one is 403.
"""

from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate

from marketplace import metrics, spreadsheets
from marketplace.auth.access import require_actor, role_required
from marketplace.db import local_date, transaction, utcnow
from marketplace.errors import DomainError, ValidationFailed
from marketplace.idempotency import once_per_form
from marketplace.programmes.integrity import RULE_NAMES, SEVERITY_NAMES
from marketplace.programmes.service import get_programme
from marketplace.schemas import ID_RANGE, ReasonSchema
from marketplace.web.forms import domain_refusal, field_errors, form_input
from vouchers.anomaly_schemas import AnomalyQuerySchema
from vouchers.pages import form_key_field
from vouchers.schemas import AnomalyDetectionInputSchema
from vouchers.service import anomalies, anomaly_detection, anomaly_view
from vouchers.service.staff_cycle_view import programmes_in_scope

STATUS_WORDS = {"open": _l("待核实"), "confirmed": _l("已确认"), "dismissed": _l("已排除")}
# The exports are for the bureau's files: Chinese headers and words, whatever the locale.
EXPORT_HEADERS = ["编号", "严重程度", "规则", "说明", "服务机构", "项目", "月份", "涉及服务（次）", "状态", "处理意见",
                  "处理时间", "发现时间"]
EXPORT_STATUS = {"open": "待核实", "confirmed": "已确认", "dismissed": "已排除"}
EXPORT_SEVERITY = {"high": "严重", "medium": "中等", "low": "轻微"}

staff_anomalies = Blueprint("staff_anomalies", __name__, template_folder="templates")


@staff_anomalies.context_processor
def _context() -> dict:
    return {"status_words": STATUS_WORDS, "rule_names": RULE_NAMES, "severity_names": SEVERITY_NAMES,
            "form_key_field": form_key_field}


class QueueQuery(AnomalyQuerySchema):
    """The queue's GET form: the API's filters; open flags unless another status is asked for."""

    status = fields.String(load_default="open", validate=validate.OneOf(["open", "confirmed", "dismissed", "all"]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


def _filters(query: dict) -> dict:
    """The service's filters from the form ("all" statuses is no status filter)."""
    chosen = {name: query.get(name) for name in ("programme_id", "period", "rule", "provider_id")}
    chosen["status"] = None if query.get("status") == "all" else query.get("status")
    return chosen


def _asked(query: dict) -> dict:
    """The filters as they go back into addresses (paging, exports)."""
    return {name: query[name] for name in ("programme_id", "period", "status", "rule", "provider_id")
            if query.get(name) is not None}


@staff_anomalies.get("/staff/anomalies")
@role_required("admin", "auditor")
def index():
    """The queue of flags, most severe first."""
    actor = require_actor()
    programmes = [(programme.id, programme.name) for programme in programmes_in_scope(actor=actor)]
    try:
        query = form_input(QueueQuery(), source=request.args)
    except ValidationFailed as refused:
        return render_template("staff_anomalies/index.html", errors=field_errors(refused), query={}, asked={},
                               found=None, programme_choices=programmes, raw=request.args), 422
    found = anomaly_view.queue(actor=actor, page=query["page"], **_filters(query))
    if query["page"] > found["pages"]:
        found = anomaly_view.queue(actor=actor, page=found["pages"], **_filters(query))
    return render_template("staff_anomalies/index.html", errors={}, query=query, asked=_asked(query), found=found,
                           programme_choices=programmes, raw=request.args)


def _local_time(instant) -> str:
    if instant is None:
        return ""
    return instant.astimezone(ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).strftime("%Y-%m-%d %H:%M")


def _export(kind: str):
    actor = require_actor()
    try:
        query = form_input(QueueQuery(), source=request.args)
    except ValidationFailed:
        return index()  # the queue with the refusal beside its field (422)

    def rows():
        for line in anomaly_view.queue_export(actor=actor, **_filters(query)):
            flag = line.flag
            yield [flag.id, EXPORT_SEVERITY.get(flag.severity, flag.severity), flag.rule, flag.explanation,
                   line.provider_name, line.programme_name, flag.period, len(flag.redemption_ids),
                   EXPORT_STATUS.get(flag.status, flag.status), flag.reason or "", _local_time(flag.decided_at),
                   _local_time(flag.created_at)]

    return spreadsheets.download(kind, "异常情况", EXPORT_HEADERS, rows(), f"anomalies-{local_date(utcnow()):%Y%m%d}")


@staff_anomalies.get("/staff/anomalies.csv")
@role_required("admin", "auditor")
def export_csv():
    """The queue as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers)."""
    return _export("csv")


@staff_anomalies.get("/staff/anomalies.xlsx")
@role_required("admin", "auditor")
def export_xlsx():
    """The queue as filtered, every page, as an Excel workbook."""
    return _export("xlsx")


# --- detection now (it also runs before every settlement draft and on the 2nd of the month) --------------

class DetectForm(AnomalyDetectionInputSchema):
    programme_id = fields.Integer(required=True, validate=ID_RANGE)


@staff_anomalies.post("/staff/anomalies/detect")
@role_required("admin")
def detect():
    """Run every rule over a programme's month now, once per form; back to the queue of that month."""
    actor = require_actor()
    try:
        data = form_input(DetectForm())
        with transaction():
            address = once_per_form(lambda: _detected(actor, data["programme_id"], data["period"]))
    except DomainError as refused:
        programmes = [(programme.id, programme.name) for programme in programmes_in_scope(actor=actor)]
        found = anomaly_view.queue(actor=actor, page=1, status="open")
        return render_template("staff_anomalies/index.html", errors={}, detect_errors=domain_refusal(refused),
                               query={}, asked={}, found=found, programme_choices=programmes, raw={},
                               detect_values=request.form), refused.status
    return redirect(address, 303)


def _detected(actor, programme_id: int, period: str) -> str:
    programme = get_programme(programme_id, actor=actor)
    result = anomaly_detection.detect_anomalies(programme=programme, period=period, actor=actor, now=utcnow())
    metrics.record_anomalies(result.created_by_rule)
    flash(gettext("检查完了：新发现 %(created)s 条，这个月共 %(total)s 条。", created=result.flags_created,
                  total=result.flags_total), "success")
    return url_for(".index", programme_id=programme_id, period=period, status="all")


# --- one flag ------------------------------------------------------------------------------------------

def _flag_page(flag_id: int, *, errors: dict | None = None, status: int = 200, posted=None):
    detail = anomaly_view.flag_detail(flag_id, actor=require_actor())
    return render_template("staff_anomalies/show.html", detail=detail, flag=detail.line.flag, errors=errors or {},
                           posted=posted or {}), status


@staff_anomalies.get("/staff/anomalies/<int:flag_id>")
@role_required("admin", "auditor")
def show(flag_id: int):
    """One flag: explanation, evidence, its services, and (admins) confirm or dismiss with a reason."""
    return _flag_page(flag_id)


def _decide(flag_id: int, decision: str):
    actor = require_actor()
    anomalies.get_flag(flag_id, actor=actor)  # 404 / 403 before anything else
    try:
        data = form_input(ReasonSchema())
        with transaction():
            once_per_form(lambda: _decided(actor, flag_id, decision, data["reason"]))
    except DomainError as refused:
        return _flag_page(flag_id, errors=domain_refusal(refused), status=refused.status, posted=request.form)
    return redirect(url_for(".show", flag_id=flag_id), 303)


def _decided(actor, flag_id: int, decision: str, reason: str) -> str:
    change = anomalies.confirm if decision == "confirm" else anomalies.dismiss
    change(flag=anomalies.get_flag(flag_id, actor=actor), reason=reason, actor=actor, now=utcnow())
    flash(gettext("已确认：这些服务暂不结算，排除后再结算。") if decision == "confirm"
          else gettext("已排除：这些服务照常结算。"), "success")
    return url_for(".show", flag_id=flag_id)


@staff_anomalies.post("/staff/anomalies/<int:flag_id>/confirm")
@role_required("admin")
def confirm(flag_id: int):
    """Confirm the flag with a reason, once per form: its unsettled services are held out of settlement."""
    return _decide(flag_id, "confirm")


@staff_anomalies.post("/staff/anomalies/<int:flag_id>/dismiss")
@role_required("admin")
def dismiss(flag_id: int):
    """Dismiss the flag with a reason, once per form: its services are settled as usual."""
    return _decide(flag_id, "dismiss")
