"""The provider's settlements (结算): `/provider/settlements`, one settlement with its lines and its score
explained, and its statements as CSV and XLSX — the same statement functions as the API's, served under
the page's address so that a refusal is an HTML page, never JSON, and sent with their length.

Any login of the provider reads them; another provider's settlement does not exist (404).
"""

import os
import tempfile
from datetime import datetime
from fractions import Fraction
from zoneinfo import ZoneInfo

from babel.dates import format_datetime
from flask import Blueprint, current_app, render_template, request, send_file
from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l

from marketplace.auth.access import require_actor, role_required
from marketplace.errors import NotFound
from marketplace.programmes.integrity import RULE_NAMES
from vouchers import statements
from vouchers.serials import serial_for
from vouchers.service import anomalies, settlement_view
from vouchers.service.settlement import get_settlement

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
STATUS_WORDS = {"draft": _l("草稿"), "approved": _l("已审核"), "paid": _l("已支付")}
# What each step means for the provider, said once in the list and the history.
STATUS_MEANINGS = {
    "draft": _l("民政部门已经算好，正在等另一位工作人员审核。审核前可能会重新计算。"),
    "approved": _l("已经审核，金额不会再变，等待付款。"),
    "paid": _l("钱已经付给贵机构。"),
}
FLAGS_SHOWN = 20
HELD_WORDS = {
    "complaint_open": _l("有投诉正在处理：处理完以后再结算"),
    "flag_confirmed": _l("民政部门核实了异常情况：暂不结算，撤销后再结算"),
    "later": _l("结算时还没有算进来：会算进下一次结算"),
}

provider_settlements = Blueprint("provider_settlements", __name__, template_folder="templates",
                                 url_prefix="/provider/settlements")


def number(value) -> str:
    """An exact number as people write it (91.25, 87.5, 100); one that needs more places, to two after 约."""
    value = Fraction(value)
    rounded = round(value, 2)
    text = f"{float(rounded):.2f}".rstrip("0").rstrip(".")
    return text if rounded == value else gettext("约 %(number)s", number=text)


def day_and_time(value: datetime) -> str:
    """A service's local day and time within its settlement's month (the heading says the year and month):
    11月2日 10:00 (zh), 2 Nov, 10:00 (en) — short enough for a phone's table."""
    local = value.astimezone(ZoneInfo(current_app.config["LOCAL_TIMEZONE"]))
    locale = get_locale()
    if locale is None or locale.language == "zh":
        return f"{local.month}月{local.day}日 {local:%H:%M}"
    return format_datetime(local, "d MMM, HH:mm", locale="en")


MAX_PAGE = 1_000_000  # as the API's PageArgs: no database is asked for an absurd offset


def _page_number() -> int:
    """?page= (1 when absent or not a number). :raises NotFound: 0, negative or past MAX_PAGE."""
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= MAX_PAGE:
        raise NotFound("No such page.")
    return page


@provider_settlements.get("")
@role_required("provider")
def index():
    actor = require_actor()
    found = settlement_view.provider_settlements(actor=actor, page=_page_number())
    # Confirmed anomaly flags about this provider (never open or dismissed ones): what holds services back.
    flags = anomalies.list_flags(actor=actor, page=1, per_page=FLAGS_SHOWN)
    return render_template("provider_settlements/index.html", found=found, status_words=STATUS_WORDS,
                           status_meanings=STATUS_MEANINGS, flags=flags, rule_names=RULE_NAMES)


@provider_settlements.get("/<int:settlement_id>")
@role_required("provider")
def detail(settlement_id):
    shown = settlement_view.settlement_page(settlement_id, actor=require_actor(), page=_page_number())
    return render_template("provider_settlements/detail.html", shown=shown, status_words=STATUS_WORDS,
                           status_meanings=STATUS_MEANINGS, held_words=HELD_WORDS, serial_for=serial_for,
                           number=number, day_and_time=day_and_time)


def _download(handle, *, mimetype: str, name: str):
    """A statement written to a temporary file, sent with its length: on a slow county line the phone
    shows how much of the download is left (a stream could not say)."""
    handle.flush()
    size = os.fstat(handle.fileno()).st_size
    handle.seek(0)
    response = send_file(handle, mimetype=mimetype, as_attachment=True, download_name=name)
    response.content_length = size
    return response


@provider_settlements.get("/<int:settlement_id>/statement.csv")
@role_required("provider")
def statement_csv(settlement_id):
    found = get_settlement(settlement_id, actor=require_actor())
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the response that sends it
    for chunk in statements.csv_chunks(found):
        handle.write(chunk.encode("utf-8"))
    return _download(handle, mimetype="text/csv", name=f"settlement-{found.period}-{found.id}.csv")


@provider_settlements.get("/<int:settlement_id>/statement.xlsx")
@role_required("provider")
def statement_xlsx(settlement_id):
    found = get_settlement(settlement_id, actor=require_actor())
    return _download(statements.xlsx_file(found), mimetype=XLSX, name=f"settlement-{found.period}-{found.id}.xlsx")
