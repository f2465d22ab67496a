"""Settlement statements, streamed: CSV (UTF-8 with a BOM, so Excel opens the Chinese headers) and
XLSX (openpyxl's write-only mode into a temporary file). Neither holds the lines in memory; both are
written by marketplace.spreadsheets, so no cell (a provider's note, say) is ever run as a formula."""

from collections.abc import Iterator
from zoneinfo import ZoneInfo

from flask import current_app

from marketplace import spreadsheets
from marketplace.db import db
from vouchers.models import Settlement
from vouchers.serials import serial_for
from vouchers.service.settlement import lines_of

HEADERS = ["核销编号", "凭单编号", "服务项目", "服务时间", "面值（元）", "自付（元）", "服务时长（分钟）", "备注"]
BATCH = spreadsheets.BATCH


def _rows(settlement: Settlement) -> Iterator[list]:
    local = ZoneInfo(current_app.config["LOCAL_TIMEZONE"])  # people read local times
    for redemption in db.session.scalars(lines_of(settlement).execution_options(yield_per=BATCH)):
        yield [redemption.id, serial_for(redemption.voucher_id), redemption.item_code,
               redemption.delivered_at.astimezone(local).strftime("%Y-%m-%d %H:%M"),
               f"{redemption.face_value_fen / 100:.2f}",
               f"{redemption.copay_fen / 100:.2f}", redemption.duration_minutes or "", redemption.notes or ""]


def _summary(settlement: Settlement) -> list[list]:
    return [[], ["合计", settlement.redemptions_count, "", "", f"{settlement.gross_fen / 100:.2f}"],
            ["绩效得分", settlement.performance_score], ["支付比例", f"{settlement.pay_percent}%"],
            ["应付金额（元）", f"{settlement.net_fen / 100:.2f}"]]


def csv_chunks(settlement: Settlement) -> Iterator[str]:
    return spreadsheets.csv_chunks(HEADERS, _rows(settlement), footer=_summary(settlement), batch=BATCH)


def xlsx_file(settlement: Settlement):
    """The statement as an .xlsx in a temporary file (rewound), written row by row."""
    return spreadsheets.xlsx_file(f"结算{settlement.period}", HEADERS, _rows(settlement), footer=_summary(settlement))
