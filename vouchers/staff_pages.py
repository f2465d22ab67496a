"""The monthly cycle for civil-affairs staff: issue a month's vouchers and expire the old ones
(`/staff/programmes/<id>/issue`, `/expire`), then settle (`/staff/settlements`): draft a period (its preview
names each provider's services and takes its third-party evaluation), read a settlement's lines, approve it
(a second admin only) or delete it while a draft, pay it, download its statement.

Each action is the API's: the same look-ups (scope included) and the same service functions, so a
refusal reads the same everywhere. A run shows what it will do before it runs (the services' own
previews, which count with the very selection the run uses) and, after the POST, its result on the
same page: a reload shows the state. Every form carries a form key (once_per_form), so a double click
runs once; the services themselves are idempotent too (a period is issued once, a provider settled once
a period, a settlement approved and paid once).

Auditors read every page; no form that changes anything is drawn for them, and a posted action is
refused (403) by `role_required("admin")`.
"""

import re
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError, fields, validate

from marketplace import metrics, spreadsheets
from marketplace.auth.access import require_actor, role_required
from marketplace.db import local_date, transaction, utcnow
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound, ValidationFailed
from marketplace.idempotency import once_per_form
from marketplace.programmes.service import get_programme
from marketplace.schemas import ID_RANGE, InputSchema, Period
from marketplace.web.forms import domain_refusal, field_errors, form_input, say_field_message
from vouchers import statements
from vouchers.pages import form_key_field
from vouchers.schemas import IssuanceInputSchema, PaymentSchema, SettlementInputSchema
from vouchers.serials import serial_for
from vouchers.service import issuance, revocation, settlement, settlement_view, staff_cycle_view
from vouchers.service.settlement import WEIGHTS_WITH_EVALUATION, WEIGHTS_WITHOUT_EVALUATION
from vouchers.service.staff_cycle_view import SettlementFilter
from vouchers.settlement_pages import HELD_WORDS, day_and_time, number

STATUS_WORDS = {"draft": _l("草稿，待审核"), "approved": _l("已审核，待付款"), "paid": _l("已付款")}
PROGRAMME_STATUS_WORDS = {"draft": _l("草稿"), "active": _l("进行中"), "closed": _l("已结束")}
PERIOD_REFUSALS = {"A month as YYYY-MM, from 1970-01 to 2199-12.": _l("请填写年月，例如 2026-12。")}
PROGRAMME_ENDPOINT = "staff_programmes.show"  # the programme's page (another part of the console)
# The exports are for the bureau's accounts: Chinese headers and words, whatever the locale.
EXPORT_HEADERS = ["结算编号", "结算月份", "项目", "服务机构", "服务次数", "服务金额（元）", "考核得分", "支付比例",
                  "应付金额（元）", "状态", "起草人", "起草时间", "审核人", "审核时间", "付款凭证号", "付款时间",
                  "建议解除协议"]
EXPORT_STATUS = {"draft": "草稿", "approved": "已审核", "paid": "已付款"}

staff_cycle = Blueprint("staff_cycle", __name__, template_folder="templates", url_prefix="/staff/programmes")
staff_settlements = Blueprint("staff_settlements", __name__, template_folder="templates")


def _context() -> dict:
    endpoint_exists = PROGRAMME_ENDPOINT in current_app.view_functions
    return {"form_key_field": form_key_field, "status_words": STATUS_WORDS,
            "programme_status_words": PROGRAMME_STATUS_WORDS,
            "programme_url": (lambda programme_id: url_for(PROGRAMME_ENDPOINT, programme_id=programme_id))
            if endpoint_exists else (lambda _programme_id: None)}


staff_cycle.context_processor(_context)
staff_settlements.context_processor(_context)


def _said(errors: dict) -> dict:
    """The period's refusals in plain words (a month outside the programme names its dates)."""
    said = {}
    for name, messages in errors.items():
        said[name] = []
        for message in messages:
            if message.startswith("Outside the programme's dates"):
                message = gettext("这个月不在项目的起止日期之内。")
            said[name].append(str(PERIOD_REFUSALS.get(message, message)))
    return said


def _refused(error: DomainError) -> dict:
    errors = domain_refusal(error)
    return _said(errors) if isinstance(error, ValidationFailed) else errors


# --- issuance ----------------------------------------------------------------------------------------------

# How fast a monthly run writes vouchers on a busy server, for the page's "about N seconds": bench/ measured
# 215,000 a second on SQLite and more on PostgreSQL (docs/performance.md); a quarter of that leaves room for
# a loaded host. Only the estimate shown while the run is going depends on it.
ISSUED_VOUCHERS_PER_SECOND = 50_000


def expected_seconds(vouchers: int) -> int:
    """About how long a run of *vouchers* takes, rounded up to whole seconds (at least one)."""
    return max(1, -(-vouchers // ISSUED_VOUCHERS_PER_SECOND))


def _issue_page(programme_id: int, *, period: str | None, errors: dict | None = None, status: int = 200,
                refused: DomainError | None = None):
    actor = require_actor()
    programme = get_programme(programme_id, actor=actor)
    errors = dict(errors or {})
    period = period or f"{local_date(utcnow()):%Y-%m}"
    preview = None
    if "period" not in errors:
        try:
            preview = issuance.preview_monthly(programme=programme, period=period)
        except ValidationFailed as invalid:
            errors.update(_said(field_errors(invalid)))
            status = 422
    runs = staff_cycle_view.monthly_issuances(programme=programme)
    run_by = {row.issuance.id: row.run_by for row in runs}
    return render_template("staff_cycle/issue.html", programme=programme, period=period, preview=preview,
                           runs=runs, run_by=run_by, errors=errors, refused=refused,
                           expected_seconds=expected_seconds(preview.vouchers) if preview else None), status


@staff_cycle.get("/<int:programme_id>/issue")
@role_required("admin", "auditor")
def issue(programme_id: int):
    """The preview of a month's issue (recipients, vouchers, cost against what is available), or its result."""
    try:
        period = form_input(IssuanceInputSchema(), source=request.args)["period"] if request.args.get(
            "period") else None
    except ValidationFailed as invalid:
        return _issue_page(programme_id, period=request.args.get("period"), errors=_said(field_errors(invalid)),
                           status=422)
    return _issue_page(programme_id, period=period)


@staff_cycle.post("/<int:programme_id>/issue")
@role_required("admin")
def run_issue(programme_id: int):
    """Issue the period's vouchers (all or nothing), once per form and once per period; back to its result."""
    actor = require_actor()
    try:
        data = form_input(IssuanceInputSchema())
        with transaction():
            address = once_per_form(lambda: _issue(actor, programme_id, data["period"]))
    except DomainError as refused:
        return _issue_page(programme_id, period=request.form.get("period"), errors=_refused(refused),
                           status=refused.status, refused=refused)
    return redirect(address, 303)


def _issue(actor, programme_id: int, period: str) -> str:
    programme = get_programme(programme_id, actor=actor)
    with metrics.timed_run("issuance"):  # here, not around the form: a repeated form runs nothing
        result = issuance.issue_monthly(programme=programme, period=period, actor=actor, now=utcnow())
    if result.already_issued:
        flash(gettext("这个月的服务券已经发过了，这次没有再发。"), "info")
    else:
        flash(gettext("已发放 %(vouchers)s 张服务券给 %(recipients)s 位老人，占用预算 %(money)s。",
                      vouchers=f"{result.vouchers:,}", recipients=f"{result.recipients:,}",
                      money=_money(result.committed_fen)), "success")
    return url_for("staff_cycle.issue", programme_id=programme_id, period=period)


def _money(fen: int) -> str:
    return current_app.jinja_env.filters["money"](fen)


def _period(period: str) -> str:
    return current_app.jinja_env.filters["period"](period)


# --- expiry ------------------------------------------------------------------------------------------------

def _expire_page(programme_id: int, *, errors: dict | None = None, status: int = 200):
    programme = get_programme(programme_id, actor=require_actor())
    now = utcnow()
    days = revocation.preview_expiry(programme=programme, now=now)
    return render_template("staff_cycle/expire.html", programme=programme, days=days, today=local_date(now),
                           count=sum(day[1] for day in days), total_fen=sum(day[2] for day in days),
                           errors=errors or {}), status


@staff_cycle.get("/<int:programme_id>/expire")
@role_required("admin", "auditor")
def expire(programme_id: int):
    """How many issued vouchers are past their validity and how much expiring them releases."""
    return _expire_page(programme_id)


@staff_cycle.post("/<int:programme_id>/expire")
@role_required("admin")
def run_expire(programme_id: int):
    """Expire them and release their value, once per form; back to the page, which then shows none left."""
    actor = require_actor()
    try:
        with transaction():
            address = once_per_form(lambda: _expire(actor, programme_id))
    except DomainError as refused:
        return _expire_page(programme_id, errors=_refused(refused), status=refused.status)
    return redirect(address, 303)


def _expire(actor, programme_id: int) -> str:
    programme = get_programme(programme_id, actor=actor)
    result = revocation.expire_vouchers(programme=programme, actor=actor, now=utcnow())
    flash(gettext("已把 %(count)s 张过期的服务券作废，%(money)s 回到可用预算。", count=f"{result['expired']:,}",
                  money=_money(result["released_fen"])), "success")
    return url_for("staff_cycle.expire", programme_id=programme_id)


# --- settlements: the list, its exports, drafting ------------------------------------------------------------

class SettlementListQuery(InputSchema):
    """The list's filter as its GET form sends it."""

    programme_id = fields.Integer(load_default=None, validate=ID_RANGE)
    period = Period(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(["draft", "approved", "paid"]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


class DraftForm(SettlementInputSchema):
    """Drafting from the console: the API's input, with the programme chosen in the form."""

    programme_id = fields.Integer(required=True, validate=ID_RANGE)


def _list_page(*, errors: dict | None = None, status: int = 200):
    actor = require_actor()
    errors = dict(errors or {})
    found, chosen = None, SettlementFilter()
    if not errors:
        try:
            query = form_input(SettlementListQuery(), source=request.args)
        except ValidationFailed as invalid:
            errors, status = _said(field_errors(invalid)), 422
        else:
            chosen = SettlementFilter(programme_id=query["programme_id"], period=query["period"],
                                      status=query["status"])
            found = staff_cycle_view.settlement_list(actor=actor, chosen=chosen, page=query["page"])
    programmes = staff_cycle_view.programmes_in_scope(actor=actor)
    default_period = f"{_last_month():%Y-%m}"  # settling is done early in the month, for the month before
    return render_template("staff_settlements/index.html", found=found, chosen=chosen, asked=request.args,
                           args=chosen.as_args(), errors=errors, programmes=programmes,
                           default_period=default_period), status


def _last_month():
    first = local_date(utcnow()).replace(day=1)
    return first.replace(year=first.year - 1, month=12) if first.month == 1 else first.replace(month=first.month - 1)


@staff_settlements.get("/staff/settlements")
@role_required("admin", "auditor")
def index():
    """Settlements by period and programme, filtered, with who drafted them; drafting a period (admins)."""
    return _list_page()


def _export(kind: str):
    actor = require_actor()
    try:
        query = form_input(SettlementListQuery(), source=request.args)
    except ValidationFailed as invalid:
        return _list_page(errors=_said(field_errors(invalid)), status=422)
    chosen = SettlementFilter(programme_id=query["programme_id"], period=query["period"], status=query["status"])
    local = ZoneInfo(current_app.config["LOCAL_TIMEZONE"])

    def when(instant):
        return instant.astimezone(local).strftime("%Y-%m-%d %H:%M") if instant else ""

    def lines():
        for row in staff_cycle_view.settlement_export(actor=actor, chosen=chosen):
            s = row.settlement
            yield [s.id, s.period, row.programme_name, row.provider_name, s.redemptions_count,
                   f"{s.gross_fen / 100:.2f}", s.performance_score, f"{s.pay_percent}%", f"{s.net_fen / 100:.2f}",
                   EXPORT_STATUS.get(s.status, s.status), row.drafted_by or "", when(s.created_at),
                   row.approved_by or "", when(s.approved_at), s.payment_reference or "", when(s.paid_at),
                   "是" if s.flagged_for_termination else ""]

    name = "settlements" + "".join(f"-{value}" for value in chosen.as_args().values())
    return spreadsheets.download(kind, "结算", EXPORT_HEADERS, lines(), name)


@staff_settlements.get("/staff/settlements.csv")
@role_required("admin", "auditor")
def export_csv():
    """The list as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers)."""
    return _export("csv")


@staff_settlements.get("/staff/settlements.xlsx")
@role_required("admin", "auditor")
def export_xlsx():
    """The list as filtered, every page, as an Excel workbook."""
    return _export("xlsx")


# --- drafting: the preview with each provider's third-party evaluation, then the draft ----------------------

# A provider's third-party evaluation E in the drafting form: the API's EvaluationSchema.score, from text.
EVALUATION_FIELD = re.compile(r"^evaluation-([1-9][0-9]{0,9})$")
EVALUATION_SCORE = fields.Integer(validate=validate.Range(min=0, max=100))


def _evaluations(form) -> dict[int, int]:
    """{provider id: E} from the fields that are filled in (a blank one: no evaluation for that provider).

    :raises ValidationFailed: beside each field that is not a whole number from 0 to 100.
    """
    found, errors = {}, {}
    for name, value in form.items():
        matched = EVALUATION_FIELD.match(name)
        if not matched or not value.strip():
            continue
        try:
            found[int(matched.group(1))] = EVALUATION_SCORE.deserialize(value.strip())
        except ValidationError as invalid:
            errors[name] = [say_field_message(message) for message in invalid.messages]
    if errors:
        raise ValidationFailed(fields=errors)
    return found


def _percent(weight) -> int:
    return int(weight * 100)


def _draft_page(source, *, errors: dict | None = None, status: int = 200):
    """The drafting page for the programme and month in *source* (the query, or the posted form)."""
    actor = require_actor()
    errors = dict(errors or {})
    programme = preview = period = None
    try:
        data = form_input(DraftForm(), source=source)
        period = data["period"]
        programme = get_programme(data["programme_id"], actor=actor)
    except ValidationFailed as invalid:
        errors = {**_said(field_errors(invalid)), **errors}
        status = status if status >= 400 else invalid.status
    except (NotFound, Forbidden) as refused:
        errors = {"programme_id": domain_refusal(refused)["_form"], **errors}
        status = status if status >= 400 else refused.status
    else:
        preview = settlement.draft_preview(programme=programme, period=period)
    # The error summary names whose E each message is about.
    names = {f"evaluation-{line.provider_id}": line.provider_name for line in preview.lines} if preview else {}
    return render_template(
        "staff_settlements/draft.html", programme=programme, period=period, preview=preview, errors=errors,
        values=source, names=names, programmes=staff_cycle_view.programmes_in_scope(actor=actor),
        weights_with=[_percent(weight) for weight in WEIGHTS_WITH_EVALUATION],
        weights_without=[_percent(weight) for weight in WEIGHTS_WITHOUT_EVALUATION if weight is not None]), status


@staff_settlements.get("/staff/settlements/draft")
@role_required("admin")
def draft_preview():
    """Before drafting a month: each provider's settleable services and their worth, and a field for its E."""
    return _draft_page(request.args)


@staff_settlements.post("/staff/settlements/draft")
@role_required("admin")
def draft():
    """Draft a period of a programme (one settlement per provider with settleable services), once per form."""
    actor = require_actor()
    try:
        data, evaluations = _draft_input()
        with transaction():
            address = once_per_form(lambda: _draft(actor, data["programme_id"], data["period"], evaluations))
    except DomainError as refused:
        return _draft_page(request.form, errors=_refused(refused), status=refused.status)
    return redirect(address, 303)


def _draft_input() -> tuple[dict, dict[int, int]]:
    """The posted programme and month, and the evaluations. :raises ValidationFailed: every field's at once."""
    errors, data, evaluations = {}, {}, {}
    try:
        data = form_input(DraftForm())
    except ValidationFailed as invalid:
        errors.update(field_errors(invalid))
    try:
        evaluations = _evaluations(request.form)
    except ValidationFailed as invalid:
        errors.update(field_errors(invalid))
    if errors:
        raise ValidationFailed(fields=errors)
    return data, evaluations


def _draft(actor, programme_id: int, period: str, evaluations: dict[int, int]) -> str:
    programme = get_programme(programme_id, actor=actor)
    with metrics.timed_run("settlement"):  # here, not around the form: a repeated form runs nothing
        drafted = settlement.create_settlements(programme=programme, period=period, evaluations=evaluations,
                                                actor=actor, now=utcnow())
    if drafted:
        flash(gettext("已起草 %(count)s 份结算，共应付 %(money)s。请另一位工作人员审核。", count=len(drafted),
                      money=_money(sum(s.net_fen for s in drafted))), "success")
    else:
        flash(gettext("这个月没有可以结算的服务：可能已经结算过，或还没有完成的服务。"), "info")
    return url_for("staff_settlements.index", programme_id=programme_id, period=period)


# --- one settlement: approve, pay, statements -----------------------------------------------------------------

def _detail_page(settlement_id: int, *, errors: dict | None = None, status: int = 200, reference: str = ""):
    actor = require_actor()
    page = request.args.get("page", 1, type=int)
    shown = settlement_view.settlement_page(settlement_id, actor=actor, page=max(1, page))
    s = shown.settlement
    return render_template("staff_settlements/detail.html", shown=shown, people=staff_cycle_view.settlement_people(s),
                           provider_name=staff_cycle_view.provider_name(s.provider_id),
                           may_approve=actor.role == "admin" and settlement.may_approve(s, actor),
                           errors=errors or {}, reference=reference, serial_for=serial_for, number=number,
                           day_and_time=day_and_time, held_words=HELD_WORDS), status


@staff_settlements.get("/staff/settlements/<int:settlement_id>")
@role_required("admin", "auditor")
def detail(settlement_id: int):
    """A settlement with its figures, its lines, who drafted and approved it, and the next step."""
    return _detail_page(settlement_id)


@staff_settlements.post("/staff/settlements/<int:settlement_id>/approve")
@role_required("admin")
def approve(settlement_id: int):
    """Approve a draft (four eyes: 403 `four_eyes_required` for its drafter), once per form."""
    actor = require_actor()
    try:
        with transaction():
            address = once_per_form(lambda: _approve(actor, settlement_id))
    except DomainError as refused:
        return _detail_page(settlement_id, errors=_refused(refused), status=refused.status)
    return redirect(address, 303)


def _approve(actor, settlement_id: int) -> str:
    found = settlement.approve(settlement=settlement.get_settlement(settlement_id, actor=actor), actor=actor,
                               now=utcnow())
    flash(gettext("已审核。%(money)s 可以付给服务机构了。", money=_money(found.net_fen)), "success")
    return url_for("staff_settlements.detail", settlement_id=settlement_id)


@staff_settlements.post("/staff/settlements/<int:settlement_id>/pay")
@role_required("admin")
def pay(settlement_id: int):
    """Record the payment of an approved settlement with its payment reference, once per form."""
    actor = require_actor()
    try:
        data = form_input(PaymentSchema())
        with transaction():
            address = once_per_form(lambda: _pay(actor, settlement_id, data["payment_reference"]))
    except DomainError as refused:
        return _detail_page(settlement_id, errors=_refused(refused), status=refused.status,
                            reference=request.form.get("payment_reference", ""))
    return redirect(address, 303)


def _pay(actor, settlement_id: int, reference: str) -> str:
    settlement.pay(settlement=settlement.get_settlement(settlement_id, actor=actor), payment_reference=reference,
                   actor=actor, now=utcnow())
    flash(gettext("已记录付款，付款凭证号 %(reference)s。", reference=reference), "success")
    return url_for("staff_settlements.detail", settlement_id=settlement_id)


# --- discarding a draft: a confirmation that says what follows ------------------------------------------------

NOT_A_DRAFT = _l("只有草稿可以删除。这份结算已经审核，不能再删除。")


@staff_settlements.get("/staff/settlements/<int:settlement_id>/discard")
@role_required("admin")
def confirm_discard(settlement_id: int):
    """What deleting a draft does (its services become settleable again; the deletion is recorded)."""
    actor = require_actor()
    found = settlement.get_settlement(settlement_id, actor=actor)
    return render_template("staff_settlements/discard.html", s=found,
                           programme=get_programme(found.programme_id, actor=actor),
                           provider_name=staff_cycle_view.provider_name(found.provider_id),
                           not_a_draft=NOT_A_DRAFT)


@staff_settlements.post("/staff/settlements/<int:settlement_id>/discard")
@role_required("admin")
def discard(settlement_id: int):
    """Delete a draft, once per form; back to the list of its programme and month. Not a draft: 409."""
    actor = require_actor()
    try:
        with transaction():
            address = once_per_form(lambda: _discard(actor, settlement_id))
    except InvalidTransition as refused:
        return _detail_page(settlement_id, errors={"_form": [str(NOT_A_DRAFT)]}, status=refused.status)
    except DomainError as refused:
        return _detail_page(settlement_id, errors=_refused(refused), status=refused.status)
    return redirect(address, 303)


def _discard(actor, settlement_id: int) -> str:
    found = settlement.get_settlement(settlement_id, actor=actor)
    programme_id, period, count = found.programme_id, found.period, found.redemptions_count
    name = staff_cycle_view.provider_name(found.provider_id)
    settlement.discard(settlement=found, actor=actor, now=utcnow())
    flash(gettext("已删除 %(provider)s %(period)s 的结算草稿：其中的 %(count)s 次服务回到未结算，可以重新起草。",
                  provider=name, period=_period(period), count=f"{count:,}"), "success")
    return url_for("staff_settlements.index", programme_id=programme_id, period=period)


@staff_settlements.get("/staff/settlements/<int:settlement_id>/statement.csv")
@role_required("admin", "auditor")
def statement_csv(settlement_id: int):
    """The statement as CSV (UTF-8 with a BOM, Chinese headers), streamed."""
    found = settlement.get_settlement(settlement_id, actor=require_actor())
    return Response(stream_with_context(statements.csv_chunks(found)), mimetype=spreadsheets.CSV_MIMETYPE,
                    headers={"Content-Disposition": f'attachment; filename="settlement-{found.period}-{found.id}.csv"'})


@staff_settlements.get("/staff/settlements/<int:settlement_id>/statement.xlsx")
@role_required("admin", "auditor")
def statement_xlsx(settlement_id: int):
    """The statement as an Excel workbook."""
    found = settlement.get_settlement(settlement_id, actor=require_actor())
    handle = statements.xlsx_file(found)

    def chunks():
        try:
            while chunk := handle.read(64 * 1024):
                yield chunk
        finally:
            handle.close()

    name = f"settlement-{found.period}-{found.id}.xlsx"
    return Response(chunks(), mimetype=spreadsheets.XLSX_MIMETYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
