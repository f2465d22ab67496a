"""Staff pages for recipients (`/staff/recipients…`): search and look-up by ID number, the list's exports, a
recipient's page, recording a death or a move, and the CSV import.

The full ID number is posted (never put in an address, where logs and history would keep it), looked
up through the blind index and dropped; the page then opens the recipient for acting on their behalf.

A recipient's vouchers, choices, services and complaints belong to higher domains this kernel package may
not import: the page asks for them through `marketplace.signals` (`recipient_record`,
`recipient_departure_preview`), which the vouchers domain answers.

Auditors read the list and a recipient's page as the existing list lets them (docs: tests/test_privacy.py's
table), and see no control that changes anything; a posted change is refused (403) by the role guard.

The import answers its POST with the result page itself instead of redirecting: the bad rows hold the ID
numbers the admin typed, which the system never stores, so nothing is kept between requests. The bad rows
travel in the result page as a signed (itsdangerous) hidden field that the download posts back. A second
post of the same form (a reload) imports nothing and goes back to the import page.
"""

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup
from marshmallow import fields, validate
from sqlalchemy.orm import selectinload

from marketplace import spreadsheets
from marketplace.auth.access import require_actor, role_required
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.errors import DomainError, NotFound, ValidationFailed
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.recipients import service
from marketplace.recipients.models import RECIPIENT_STATUSES, TAGS, Recipient
from marketplace.recipients.schemas import RecipientLookupSchema, RecipientQuerySchema, RecipientUpdateSchema
from marketplace.schemas import Day
from marketplace.scope import may_act_on
from marketplace.signals import recipient_departure_preview, recipient_record
from marketplace.web.format import money
from marketplace.web.forms import domain_refusal, field_errors, form_input, say_field_message

PER_PAGE = 25
TAG_NAMES = {"disabled": _l("失能"), "low_income": _l("低保"), "extreme_poverty": _l("特困"),
             "advanced_age": _l("高龄"), "living_alone": _l("独居")}
STATUS_NAMES = {"active": _l("在册"), "moved": _l("已迁出"), "deceased": _l("已故")}
SEX_NAMES = {"male": _l("男"), "female": _l("女")}
ACT_ENDPOINT = "staff_acting.home"  # the vouchers domain's pages for acting on a recipient's behalf (代办)
DEPARTURES = ("moved", "deceased")
VOUCHER_STATUS_NAMES = {"issued": _l("未使用"), "redeemed": _l("已使用"), "expired": _l("已过期"),
                        "revoked": _l("已作废")}
SERVICE_STATUS_NAMES = {"completed": _l("已完成"), "reversed": _l("已撤销")}
SWITCH_REASON_NAMES = {"service_quality": _l("服务质量"), "staff_attitude": _l("服务人员态度"),
                       "timeliness": _l("不准时"), "price": _l("自付太多"), "moved": _l("搬家"), "other": _l("其他")}
ACTED_AS_NAMES = {"recipient": _l("老人自己"), "admin": _l("工作人员代办")}
RATING_SOURCE_NAMES = {"phone_followup": _l("电话回访")}
COMPLAINT_STATUS_NAMES = {"open": _l("正在处理"), "resolved": _l("已处理")}
EXPORT_HEADERS = ("编号", "姓名", "身份证号码（隐去中间）", "性别", "出生日期", "电话", "区域代码", "地址", "类别",
                  "状态")

# The import: columns as the service reads them, their names for people, the column the bad rows get.
IMPORT_COLUMNS = {"name": _l("姓名"), "id_number": _l("身份证号码"), "phone": _l("电话"),
                  "region_code": _l("区域代码"), "address": _l("地址"), "tags": _l("类别"), "row": _l("整行"),
                  "file": _l("文件")}
REASON_HEADER = "错误原因"
BAD_ROWS_SALT = "recipient-import-bad-rows"
BAD_ROWS_MAX_AGE = 24 * 3600
# The service words its refusals for the API; these are the same refusals said plainly (patterns keep numbers).
IMPORT_MESSAGES = [
    (re.compile(r"^A name of 1 to 50 characters is required\.$"), _l("要写姓名，最多 50 个字。")),
    (re.compile(r"^Text may not contain NUL"), _l("含有不能保存的特殊字符，请删掉后重写。")),
    (re.compile(r"^Not a GB/T 2260 region code"), _l("区域代码应为 6 位数字，例如 510131。")),
    (re.compile(r"^Outside your region\.$"), _l("这个区域不归您管，不能导入。")),
    (re.compile(r"^A mobile number"), _l("手机号应为 1 开头的 11 位数字；座机要带区号，例如 028-12345678。")),
    (re.compile(r"^At most 200 characters\.$"), _l("最多 200 个字。")),
    (re.compile(r"^Unknown tags: (?P<tags>.*); allowed"), _l("不认识的类别：%(tags)s。")),
    (re.compile(r"^Expected (?P<expected>\d+) columns, found (?P<found>\d+)\.$"),
     _l("应有 %(expected)s 列，这一行有 %(found)s 列。地址里有英文逗号时，请把地址用英文双引号括起来。")),
    (re.compile(r"^An ID number has 18 characters, not (?P<count>\d+)\.$"),
     _l("身份证号码应为 18 位，这里是 %(count)s 位。")),
    (re.compile(r"^Seventeen digits, then a digit or X\.$"), _l("身份证号码应为 17 位数字，最后一位是数字或 X。")),
    (re.compile(r"is not a province-level region code\.$"), _l("身份证号码的前两位不是省份代码。")),
    (re.compile(r"is not a calendar date\.$"), _l("身份证号码里的出生日期不存在。")),
    (re.compile(r"^The birth date is in the future\.$"), _l("身份证号码里的出生日期在今天以后。")),
    (re.compile(r"^The birth date is before 1900\.$"), _l("身份证号码里的出生日期早于 1900 年。")),
    (re.compile(r"^The check character does not match"), _l("身份证号码的最后一位（校验码）不对，可能有数字抄错了。")),
    (re.compile(r"^The first row must be the header"),
     _l("第一行必须是表头 name,id_number,phone,region_code,address,tags。请用下载的模板。")),
    (re.compile(r"^The file is not UTF-8 text\.$"), _l("文件不是 UTF-8 编码。在 Excel 里请选“另存为 → CSV UTF-8”。")),
    (re.compile(r"^Not readable as CSV"), _l("读不懂这个 CSV 文件。请用下载的模板。")),
]

staff_recipients = Blueprint("staff_recipients", __name__, template_folder="templates")


@staff_recipients.url_value_preprocessor
def _allow_large_imports(endpoint, _values):
    # Runs before the app's CSRF check reads the form, so the upload may be as large as the API's import.
    if endpoint == "staff_recipients.import_file":
        request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]


@staff_recipients.app_template_global()
def recipient_form_key() -> Markup:
    """The hidden field with this form's key (one per form as drawn)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


def _act_url(recipient_id: int) -> str | None:
    if ACT_ENDPOINT not in current_app.view_functions:
        return None
    return url_for(ACT_ENDPOINT, recipient_id=recipient_id)


def _render(*, status: int = 200, query: dict | None = None, found: dict | None = None, errors=None,
            lookup_errors=None):
    args = {k: v for k, v in request.args.items() if k != "page"}
    return render_template("staff_recipients/index.html", query=query or {}, found=found, errors=errors or {},
                           lookup_errors=lookup_errors or {}, tags=TAGS, statuses=RECIPIENT_STATUSES,
                           tag_names=TAG_NAMES, status_names=STATUS_NAMES, act_url=_act_url,
                           args=args), status


@staff_recipients.get("/staff/recipients")
@role_required("admin", "auditor")
def index():
    actor = require_actor()
    try:
        query = form_input(RecipientQuerySchema(), source=request.args)
    except ValidationFailed as refused:
        return _render(status=422, errors=field_errors(refused))
    query["per_page"] = PER_PAGE
    found = service.list_recipients(actor=actor, **query)
    return _render(query=query, found=found)


@staff_recipients.post("/staff/recipients/lookup")
@role_required("admin")
def lookup():
    actor = require_actor()
    try:
        data = form_input(RecipientLookupSchema())
        with transaction():
            recipient = service.lookup_by_id_number(id_number=data["id_number"], actor=actor, now=utcnow())
    except DomainError as refused:
        errors = domain_refusal(refused)
        if refused.code == "not_found":
            said = gettext("您的区域内没有登记这个身份证号码的老人。请核对号码，或用姓名、电话查找。")
            errors = {"id_number": [said]}
        elif refused.code == "invalid_id_number":
            errors = {"id_number": errors.get("_form") or errors.get("id_number")}
        return _render(status=refused.status, lookup_errors=errors)
    act = _act_url(recipient.id)
    if act is not None and recipient.status == "active":
        return redirect(act)
    # Nothing to act on (moved or deceased): show the one recipient found, as a search would.
    return _render(found={"items": [recipient], "page": 1, "per_page": PER_PAGE, "total": 1})


# --- the list's exports ----------------------------------------------------------------------------------

def _export_lines(statement) -> Iterator[list]:
    statement = statement.options(selectinload(Recipient.tag_rows)).execution_options(yield_per=1000)
    for r in db.session.scalars(statement):
        yield [r.id, r.name, r.id_number_masked, str(SEX_NAMES.get(r.sex, r.sex)), r.birth_date.isoformat(),
               r.phone or "", r.region_code, r.address or "", "、".join(str(TAG_NAMES.get(t, t)) for t in r.tags),
               str(STATUS_NAMES.get(r.status, r.status))]


def _export(kind: str):
    actor = require_actor()
    try:
        query = form_input(RecipientQuerySchema(), source=request.args)
    except ValidationFailed as refused:
        return _render(status=422, errors=field_errors(refused))
    query.pop("page", None)
    query.pop("per_page", None)
    lines = _export_lines(service.recipients_query(actor=actor, **query))
    return spreadsheets.download(kind, "服务对象", EXPORT_HEADERS, lines, "recipients")


@staff_recipients.get("/staff/recipients.csv")
@role_required("admin", "auditor")
def export_csv():
    """The list as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers; masked ID numbers only)."""
    return _export("csv")


@staff_recipients.get("/staff/recipients.xlsx")
@role_required("admin", "auditor")
def export_xlsx():
    """The list as filtered, every page, as an Excel workbook."""
    return _export("xlsx")


# --- a recipient's page ----------------------------------------------------------------------------------

def _readable(recipient_id: int, actor) -> Recipient:
    """The recipient for a reader: an admin in scope (403 outside), or an auditor, who reads every region as
    the list lets them.

    :raises NotFound: no such recipient.
    """
    if actor.role == "auditor":
        recipient = db.session.get(Recipient, recipient_id)
        if recipient is None:
            raise NotFound("No such recipient.")
        return recipient
    return service.get_recipient(recipient_id, actor=actor)


def _sections(signal, recipient, **kwargs) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for _receiver, answer in signal.send(recipient, **kwargs):
        found.update(answer or {})
    return found


def _may_change(actor, recipient: Recipient) -> bool:
    return actor.role == "admin" and may_act_on(actor, recipient.region_code)


@staff_recipients.get("/staff/recipients/<int:recipient_id>")
@role_required("admin", "auditor")
def show(recipient_id: int):
    """One recipient: details (masked ID), vouchers, choices and their history, services, ratings, complaints."""
    actor = require_actor()
    recipient = _readable(recipient_id, actor)
    sections = _sections(recipient_record, recipient, now=utcnow())
    may_change = _may_change(actor, recipient)
    act = _act_url(recipient.id) if may_change and recipient.status == "active" else None
    return render_template(
        "staff_recipients/show.html", recipient=recipient, record=sections.get("record"), may_change=may_change,
        act=act, departures=[s for s in DEPARTURES if s != recipient.status] if recipient.status != "deceased"
        else [], tag_names=TAG_NAMES, status_names=STATUS_NAMES, sex_names=SEX_NAMES,
        voucher_status_names=VOUCHER_STATUS_NAMES, service_status_names=SERVICE_STATUS_NAMES,
        switch_reason_names=SWITCH_REASON_NAMES, acted_as_names=ACTED_AS_NAMES,
        rating_source_names=RATING_SOURCE_NAMES, complaint_status_names=COMPLAINT_STATUS_NAMES)


# --- recording a death or a move ---------------------------------------------------------------------------

class StatusForm(RecipientUpdateSchema):
    """The API's update, for the one change this form makes: a death or a move, and the day it took effect
    (asked for here; the API takes today's when a client leaves it out)."""

    status = fields.String(required=True, validate=validate.OneOf(DEPARTURES))
    effective_on = Day(required=True)


# The service's and the Day field's words for the date, said plainly (marketplace.web.forms says the rest).
EFFECTIVE_ON_MESSAGES = [
    (re.compile(r"^The date it took effect cannot be in the future\.$"), _l("日期不能晚于今天。")),
    (re.compile(r"^The date it took effect cannot be before the recipient was born\.$"),
     _l("日期不能早于老人的出生日期。")),
    (re.compile(r"^A date from 1970-01-01 to 2199-12-31\.$"), _l("请填写一个有效的日期，例如 2026-11-03。")),
]


def _said(errors: dict) -> dict:
    """The status form's refusals in the console's words."""
    def say(message: str) -> str:
        for pattern, said in EFFECTIVE_ON_MESSAGES:
            if pattern.match(message):
                return str(said)
        return say_field_message(message)

    return {name: [say(message) for message in messages] for name, messages in errors.items()}


def _status_page(recipient: Recipient, *, errors: dict, status: int = 200, chosen: str = "",
                 effective_on: str | None = None):
    preview = _sections(recipient_departure_preview, recipient)
    choices = [(s, STATUS_NAMES[s]) for s in DEPARTURES if s != recipient.status]
    if effective_on is None:
        effective_on = local_date(utcnow()).isoformat()
    return render_template("staff_recipients/status.html", recipient=recipient, preview=preview, errors=errors,
                           choices=choices if recipient.status != "deceased" else [], chosen=chosen,
                           effective_on=effective_on, today=local_date(utcnow()).isoformat(),
                           status_names=STATUS_NAMES), status


def _changeable(recipient_id: int, actor) -> Recipient:
    return service.get_recipient(recipient_id, actor=actor)  # admins in scope only (403 else)


@staff_recipients.get("/staff/recipients/<int:recipient_id>/status")
@role_required("admin")
def confirm_status(recipient_id: int):
    """What recording a death or a move will end (open vouchers, money back to the budget), and the form."""
    recipient = _changeable(recipient_id, require_actor())
    chosen = request.args.get("to", "")
    return _status_page(recipient, errors={}, chosen=chosen if chosen in DEPARTURES else "")


@staff_recipients.post("/staff/recipients/<int:recipient_id>/status")
@role_required("admin")
def change_status(recipient_id: int):
    """Record the death or the move, and the day it took effect, through the API's service (open vouchers
    revoked, value released), once."""
    actor = require_actor()
    recipient = _changeable(recipient_id, actor)
    try:
        data = form_input(StatusForm(only=("status", "effective_on")))
        with transaction():
            address = once_per_form(lambda: _change_status(actor, recipient_id, data["status"],
                                                           data["effective_on"]))
    except DomainError as refused:
        db.session.refresh(recipient)
        errors = domain_refusal(refused)
        if set(errors) - {"effective_on"}:  # a refusal about no field of its own belongs beside the choice
            errors = _beside(errors, "status")
        return _status_page(recipient, errors=_said(errors), status=refused.status,
                            chosen=request.form.get("status", ""), effective_on=request.form.get("effective_on", ""))
    return redirect(address, 303)


def _beside(errors: dict, name: str) -> dict:
    """A refusal that belongs to no field is said beside the one field of the form."""
    return {name: errors.pop("_form", []) + errors.pop(name, []), **errors}


def _change_status(actor, recipient_id: int, status: str, effective_on) -> str:
    recipient = service.get_recipient(recipient_id, actor=actor)
    preview = _sections(recipient_departure_preview, recipient)
    service.update_recipient(recipient=recipient, status=status, effective_on=effective_on, actor=actor,
                             now=utcnow())
    flash(gettext("已登记为%(status)s。作废了 %(count)s 张未使用的服务券，%(money)s 退回项目预算。",
                  status=STATUS_NAMES[status], count=preview.get("vouchers", 0),
                  money=money(preview.get("released_fen", 0))), "success")
    return url_for(".show", recipient_id=recipient_id)


# --- the CSV import ----------------------------------------------------------------------------------------

def say_import_message(message: str) -> str:
    """The service's import refusal in the console's words (shown as the service says it when unknown)."""
    for pattern, said in IMPORT_MESSAGES:
        matched = pattern.search(message)
        if matched:
            return str(said) % matched.groupdict() if matched.groupdict() else str(said)
    return message


def _import_page(*, errors: dict | None = None, status: int = 200, result=None, bad_rows: str | None = None,
                 reasons: list | None = None):
    response = current_app.make_response((render_template(
        "staff_recipients/import.html", errors=errors or {}, result=result, bad_rows=bad_rows, reasons=reasons or [],
        columns=service.CSV_HEADER, column_names=IMPORT_COLUMNS, tags=TAGS, tag_names=TAG_NAMES), status))
    if result is not None:
        response.headers["Cache-Control"] = "no-store"  # the answer to an upload: not kept by the browser
    return response


@staff_recipients.get("/staff/recipients/import")
@role_required("admin")
def import_form():
    """The upload form, what the file must hold, and its template."""
    return _import_page()


@staff_recipients.get("/staff/recipients/import/template.csv")
@role_required("admin")
def import_template():
    """An empty CSV with the header the import expects (UTF-8 with a BOM, which the import accepts)."""
    return Response(spreadsheets.csv_chunks(service.CSV_HEADER, []), mimetype=spreadsheets.CSV_MIMETYPE,
                    headers={"Content-Disposition": 'attachment; filename="recipients-template.csv"'})


def _records(stream) -> Iterator[list[str]]:
    """The uploaded CSV's records, without the 错误原因 column a downloaded list of bad rows carries (so it can
    be fixed and uploaded as it is). One record out for each record in: row numbers stay the file's."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        drop = None
        for index, row in enumerate(csv.reader(text)):
            if index == 0 and row and row[-1].strip() == REASON_HEADER:
                drop = len(row) - 1
            if drop is not None and len(row) > drop:
                row = row[:drop] + row[drop + 1:]
            yield row
    finally:
        text.detach()  # the upload's stream stays open for the second reading


def _as_lines(records: Iterator[list[str]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in records:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _bad_rows(stream, errors: list[dict]) -> tuple[list[list[str]], list[tuple[int, str, str]]]:
    """The refused rows as uploaded, each with its reasons in a last column; and (row, column, reason) for the
    page."""
    reasons: dict[int, list[tuple[str, str]]] = {}
    for error in errors:
        reasons.setdefault(error["row"], []).append(
            (str(IMPORT_COLUMNS.get(error["field"], error["field"])), say_import_message(error["message"])))
    stream.seek(0)
    rows = []
    for index, row in enumerate(_records(stream)):
        said = reasons.get(index + 1)
        if said:
            cells = (row + [""] * len(service.CSV_HEADER))[:max(len(row), len(service.CSV_HEADER))]
            rows.append([*cells, "；".join(f"{column}：{reason}" for column, reason in said)])
    listed = [(row, column, reason) for row, said in sorted(reasons.items()) for column, reason in said]
    return rows, listed


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=BAD_ROWS_SALT)


@staff_recipients.post("/staff/recipients/import")
@role_required("admin")
def import_file():
    """Import the uploaded CSV through the API's service; answer with the result (created, duplicates, bad rows
    with their reasons) and the bad rows to download, fix and upload again."""
    actor = require_actor()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _import_page(errors={"file": [gettext("请选择要导入的 CSV 文件。")]}, status=422)
    outcome: dict = {}

    def run() -> str:
        outcome["result"] = service.import_recipients(text=_as_lines(_records(upload.stream)), actor=actor,
                                                      now=utcnow())
        return url_for(".import_form")

    try:
        with transaction():
            address = once_per_form(run)
    except ValidationFailed as refused:
        messages = [say_import_message(str(m)) for ms in (refused.details.get("fields") or {}).values()
                    for m in (ms if isinstance(ms, list) else [ms])]
        return _import_page(errors={"file": messages or domain_refusal(refused).get("_form", [])}, status=422)
    except DomainError as refused:
        return _import_page(errors=_beside(domain_refusal(refused), "file"), status=refused.status)
    if "result" not in outcome:  # the same form posted again (a reload): it was imported the first time
        flash(gettext("这份文件刚才已经导入过了，没有重复导入。"), "success")
        return redirect(address, 303)
    result = outcome["result"]
    rows, listed = _bad_rows(upload.stream, result.errors)
    bad_rows = _serializer().dumps(rows) if rows else None
    return _import_page(result=result, bad_rows=bad_rows, reasons=listed)


@staff_recipients.post("/staff/recipients/import/errors.csv")
@role_required("admin")
def import_errors():
    """The bad rows of an import just made, as the result page carried them: a CSV to fix and upload again."""
    try:
        rows = _serializer().loads(request.form.get("bad_rows", ""), max_age=BAD_ROWS_MAX_AGE)
    except BadSignature:
        return _import_page(errors={"file": [gettext("这份有误的行的清单已经过期。请重新导入文件。")]}, status=422)
    return Response(spreadsheets.csv_chunks([*service.CSV_HEADER, REASON_HEADER], rows),
                    mimetype=spreadsheets.CSV_MIMETYPE,
                    headers={"Content-Disposition": 'attachment; filename="recipients-errors.csv"',
                             "Cache-Control": "no-store"})
