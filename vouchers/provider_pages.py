"""The provider staff's home `/provider` (any login of the provider: its manager or scanning staff):
today's services and the month so far, the list of its redemptions filtered by item and dates and
paged, a reversal with its confirmation, and the list as CSV or XLSX.

The filter is a GET form (it works without JavaScript and can be bookmarked); the exports take the
same query string. A reversal is the API's (`POST /api/v1/redemptions/{id}/reverse`): the same
look-up (another provider's redemption is 404) and the same service; the form carries a form key so
a double tap reverses once.
"""

from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import fields, validate

from marketplace import spreadsheets
from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow
from marketplace.errors import DomainError, ValidationFailed
from marketplace.idempotency import once_per_form
from marketplace.schemas import Day, InputSchema, ReasonSchema
from marketplace.web.forms import domain_refusal, field_errors, form_input
from vouchers.pages import form_key_field
from vouchers.service import lookup, reversal
from vouchers.service.workday import (
    WorkFilter,
    export_rows,
    provider_items,
    provider_workday,
    redemption_page,
    reversal_preview,
    work_filter,
)

PRESENCE_WORDS = {"presence_code": _l("扫码"), "typed_code": _l("输入数字码"), "voucher_card": _l("纸质服务券")}
STATUS_WORDS = {"completed": _l("已完成"), "reversed": _l("已撤销")}
# Said on the home of a provider that may not serve now (it may still look at its work and settlements).
PROVIDER_STATUS_WORDS = {"pending": _l("您的服务机构还在等待民政部门审核，审核通过前不能扫码服务。"),
                         "suspended": _l("您的服务机构已被暂停服务，暂停期间不能扫码服务。"),
                         "revoked": _l("您的服务机构已被取消资格，不能再扫码服务。")}
# The workday service words its refusals for the API; these are the same refusals said plainly.
FILTER_REFUSALS = {"The last day is before the first.": _l("结束日期不能早于开始日期。"),
                   "At most 366 days at a time.": _l("一次最多查 366 天，请缩短日期范围。")}
# The exports are for the bureau's and the provider's accounts: Chinese headers and words, whatever the locale.
EXPORT_HEADERS = ["核销编号", "服务时间", "服务项目", "凭单编号", "核实方式", "面值（元）", "自付（元）", "状态",
                  "撤销原因", "服务时长（分钟）", "备注"]
EXPORT_PRESENCE = {"presence_code": "扫码", "typed_code": "输入数字码", "voucher_card": "纸质服务券"}
EXPORT_STATUS = {"completed": "已完成", "reversed": "已撤销"}

provider_pages = Blueprint("provider_pages", __name__, template_folder="templates")


@provider_pages.context_processor
def _context() -> dict:
    return {"presence_words": PRESENCE_WORDS, "status_words": STATUS_WORDS, "form_key_field": form_key_field,
            "provider_status_words": PROVIDER_STATUS_WORDS}


class WorkQuery(InputSchema):
    """The list's filter as its GET form sends it: an item, the first and last local days, the page."""

    item = fields.String(load_default=None, validate=validate.Length(max=32))
    first = Day(data_key="from", load_default=None)
    last = Day(data_key="to", load_default=None)
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


def _filter_from(source) -> tuple[WorkFilter, int]:
    """The filter and page asked for in *source* (the query string, or a form that kept it).

    :raises ValidationFailed: as the schema or the workday service refuse it.
    """
    query = form_input(WorkQuery(), source=source)
    return work_filter(now=utcnow(), item_code=query["item"], first=query["first"], last=query["last"]), query["page"]


def _said(errors: dict) -> dict:
    return {name: [str(FILTER_REFUSALS.get(message, message)) for message in messages]
            for name, messages in errors.items()}


@provider_pages.get("/provider")
@role_required("provider")
def home():
    """The figures, the filter, a page of redemptions, the export links."""
    actor = require_actor()
    figures = provider_workday(actor=actor, now=utcnow())
    items = provider_items(actor=actor)
    try:
        chosen, page = _filter_from(request.args)
    except ValidationFailed as refused:
        return render_template("provider_pages/home.html", items=items, errors=_said(field_errors(refused)),
                               asked=request.args, listed=None, **figures), 422
    listed = redemption_page(actor=actor, chosen=chosen, page=page, now=utcnow())
    asked = chosen.as_args()
    return render_template("provider_pages/home.html", items=items, errors={}, asked=asked, chosen=chosen,
                           listed=listed, list_args=asked | ({"page": page} if page > 1 else {}), **figures)


# --- exports ---------------------------------------------------------------------------------------------

def _export_lines(actor, chosen: WorkFilter):
    local = ZoneInfo(current_app.config["LOCAL_TIMEZONE"])  # people read local times
    for r, item_name, serial in export_rows(actor=actor, chosen=chosen):
        yield [r.id, r.delivered_at.astimezone(local).strftime("%Y-%m-%d %H:%M"), item_name, serial,
               EXPORT_PRESENCE.get(r.presence, r.presence), f"{r.face_value_fen / 100:.2f}",
               f"{r.copay_fen / 100:.2f}", EXPORT_STATUS.get(r.status, r.status), r.reversal_reason or "",
               r.duration_minutes or "", r.notes or ""]


def _export(kind: str):
    actor = require_actor()
    try:
        chosen, _page = _filter_from(request.args)
    except ValidationFailed:
        return home()  # the list with the refusal beside its field (422)
    lines = _export_lines(actor, chosen)
    return spreadsheets.download(kind, "服务记录", EXPORT_HEADERS, lines,
                                 f"redemptions-{chosen.first:%Y%m%d}-{chosen.last:%Y%m%d}")


@provider_pages.get("/provider/redemptions.csv")
@role_required("provider")
def export_csv():
    """The list as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers)."""
    return _export("csv")


@provider_pages.get("/provider/redemptions.xlsx")
@role_required("provider")
def export_xlsx():
    """The list as filtered, every page, as an Excel workbook."""
    return _export("xlsx")


# --- a reversal --------------------------------------------------------------------------------------------

def _back_to_list(source) -> str:
    """The list as it was filtered when the reversal was opened (this month's when that is unreadable)."""
    try:
        chosen, page = _filter_from(source)
    except ValidationFailed:
        return url_for(".home")
    args = chosen.as_args() | ({"page": page} if page > 1 else {})
    return f"{url_for('.home')}?{urlencode(args)}"


def _reversal_page(redemption, *, errors: dict, status: int = 200, reason: str = ""):
    preview = reversal_preview(redemption=redemption, now=utcnow())
    return render_template("provider_pages/reverse.html", preview=preview, errors=errors, reason=reason,
                           back=_back_to_list(request.values), kept=_kept(request.values)), status


def _kept(source) -> dict:
    """The list's filter, carried through the confirmation so the provider lands where they were."""
    return {name: source.get(name) for name in ("item", "from", "to", "page") if source.get(name)}


@provider_pages.get("/provider/redemptions/<int:redemption_id>/reverse")
@role_required("provider")
def confirm_reversal(redemption_id: int):
    """What a reversal will do, and the reason to give: one redemption of this provider's (404 otherwise)."""
    return _reversal_page(lookup.get_redemption(redemption_id, actor=require_actor()), errors={})


@provider_pages.post("/provider/redemptions/<int:redemption_id>/reverse")
@role_required("provider")
def reverse(redemption_id: int):
    """Reverse it with the reason, once per form; back to the list with a message."""
    actor = require_actor()
    found = lookup.get_redemption(redemption_id, actor=actor)
    back = _back_to_list(request.form)
    try:
        data = form_input(ReasonSchema())
        with transaction():
            once_per_form(lambda: _reverse(actor, redemption_id, data["reason"], back))
    except DomainError as refused:
        errors = domain_refusal(refused)
        errors = {"reason": errors.pop("_form", []) + errors.pop("reason", []), **errors}
        return _reversal_page(found, errors=errors, status=refused.status, reason=request.form.get("reason", ""))
    said = gettext("已撤销这次服务。如果向老人收了自付的钱，请退还给老人。")
    if ("success", said) not in session.get("_flashes", []):  # a double tap's second answer says it no twice
        flash(said, "success")
    return redirect(back, 303)


def _reverse(actor, redemption_id: int, reason: str, back: str) -> str:
    found = lookup.get_redemption(redemption_id, actor=actor)
    reversal.reverse_redemption(redemption=found, reason=reason, actor=actor, now=utcnow())
    return back
