"""The audit trail for staff `/staff/audit` (admins and auditors, both only read here): the events newest
first, filtered by action, entity, actor, the recipient acted for (代办) and local dates, a page at a
time, the same list as CSV or XLSX; and the verification of the whole chain with the head hash to
publish (the same service as GET /api/v1/audit/verify: it changes nothing, so auditors may run it).
"""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, render_template, request, url_for
from marshmallow import ValidationError, fields, validate, validates_schema
from werkzeug.routing import BuildError

from marketplace import metrics, spreadsheets
from marketplace.audit import service
from marketplace.audit.schemas import AuditQuerySchema
from marketplace.auth.access import require_actor, role_required
from marketplace.db import local_date, utcnow
from marketplace.errors import ValidationFailed
from marketplace.schemas import Day
from marketplace.web.forms import field_errors, form_input

PER_PAGE = 50
# The exports are for the bureau's files: Chinese headers whatever the locale.
EXPORT_HEADERS = ["编号", "时间", "操作人", "动作", "对象类型", "对象编号", "代办对象（服务对象编号）", "区域", "内容",
                  "前一哈希", "哈希"]

staff_audit = Blueprint("staff_audit", __name__, template_folder="templates")


class AuditPageQuery(AuditQuerySchema):
    """The page's GET form: the API's filters, plus an action, an actor and a range of local days."""

    action = fields.String(validate=validate.Length(max=80))
    actor = fields.String(validate=validate.Length(max=64))
    first = Day(data_key="from")
    last = Day(data_key="to")
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))

    @validates_schema
    def _days_in_order(self, data, **_kwargs):
        first, last = data.get("first"), data.get("last")
        if first and last and last < first:
            raise ValidationError("The last day is before the first.", field_name="to")


def _local_start(day) -> datetime:
    return datetime.combine(day, time.min, tzinfo=ZoneInfo(current_app.config["LOCAL_TIMEZONE"]))


def _filters(query: dict) -> dict:
    """The service's filters for the page's query: local days become instants, [from 00:00, day after to)."""
    filters = {name: query[name] for name in ("entity", "entity_id", "on_behalf_of", "action") if name in query}
    if "actor" in query:
        filters["actor_name"] = query["actor"]
    if "first" in query:
        filters["since"] = _local_start(query["first"])
    if "last" in query:
        filters["before"] = _local_start(query["last"] + timedelta(days=1))
    return filters


def _asked(query: dict) -> dict:
    """The filters as they go back into addresses (paging, exports)."""
    asked = {name: query[name] for name in ("action", "entity", "entity_id", "actor", "on_behalf_of") if name in query}
    if "first" in query:
        asked["from"] = query["first"].isoformat()
    if "last" in query:
        asked["to"] = query["last"].isoformat()
    return asked


def _said(errors: dict) -> dict:
    if "to" in errors:
        errors["to"] = [message.replace("The last day is before the first.", "结束日期不能早于开始日期。")
                        for message in errors["to"]]
    return errors


def _recipient_link(recipient_id: int | None) -> str | None:
    """The recipient's staff page, once the recipients' pages have it."""
    if recipient_id is None or "staff_recipients.show" not in current_app.view_functions:
        return None
    for argument in ("recipient_id", "id"):
        try:
            return url_for("staff_recipients.show", **{argument: recipient_id})
        except BuildError:
            continue
    return None


def _render(*, status: int = 200, **context):
    context.setdefault("verification", None)
    return render_template("staff_audit/index.html", raw=request.args, recipient_link=_recipient_link,
                           **context), status


@staff_audit.get("/staff/audit")
@role_required("admin", "auditor")
def index():
    actor = require_actor()
    try:
        query = form_input(AuditPageQuery(), source=request.args)
    except ValidationFailed as refused:
        return _render(status=422, errors=_said(field_errors(refused)), found=None, asked={})
    query.pop("per_page", None)
    found = service.event_page(actor=actor, page=query.pop("page"), per_page=PER_PAGE, **_filters(query))
    return _render(errors={}, found=found, asked=_asked(query))


@staff_audit.get("/staff/audit/verify")
@role_required("admin", "auditor")
def verify():
    """Re-hash the whole chain (it changes nothing); the result and, when whole, the head hash to publish."""
    verification = service.verify_chain()
    metrics.record_audit_verification(verification.ok)
    return _render(errors={}, found=None, asked={}, verification=verification, checked_at=utcnow())


def _local_time(instant: datetime) -> str:
    return instant.astimezone(ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).strftime("%Y-%m-%d %H:%M:%S")


def _export(kind: str):
    actor = require_actor()
    try:
        query = form_input(AuditPageQuery(), source=request.args)
    except ValidationFailed:
        return index()  # the list with the refusal beside its field (422)
    query.pop("per_page", None)
    query.pop("page", None)
    rows = ([event.id, _local_time(event.at), event.actor, event.action, event.entity, event.entity_id,
             event.on_behalf_of or "", event.region_code or "", event.data, event.prev_hash, event.hash]
            for event in service.iter_events(actor=actor, **_filters(query)))
    return spreadsheets.download(kind, "审计记录", EXPORT_HEADERS, rows, f"audit-{local_date(utcnow()):%Y%m%d}")


@staff_audit.get("/staff/audit.csv")
@role_required("admin", "auditor")
def export_csv():
    """The events as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers)."""
    return _export("csv")


@staff_audit.get("/staff/audit.xlsx")
@role_required("admin", "auditor")
def export_xlsx():
    """The events as filtered, every page, as an Excel workbook."""
    return _export("xlsx")
