"""Settlement statements, streamed: CSV (UTF-8 with a BOM, so Excel opens the Chinese headers) and
XLSX (openpyxl's write-only mode into a temporary file). Neither holds the lines in memory."""

import csv
import io
import tempfile
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from flask import current_app
from openpyxl import Workbook

from marketplace.db import db
from vouchers.models import Settlement
from vouchers.serials import serial_for
from vouchers.service.settlement import lines_of

HEADERS = ["核销编号", "凭单编号", "服务项目", "服务时间", "面值（元）", "自付（元）", "服务时长（分钟）"]
BATCH = 2000


def _rows(settlement: Settlement) -> Iterator[list]:
    local = ZoneInfo(current_app.config["LOCAL_TIMEZONE"])  # people read local times
    for redemption in db.session.scalars(lines_of(settlement).execution_options(yield_per=BATCH)):
        yield [redemption.id, serial_for(redemption.voucher_id), redemption.item_code,
               redemption.delivered_at.astimezone(local).strftime("%Y-%m-%d %H:%M"),
               f"{redemption.face_value_fen / 100:.2f}",
               f"{redemption.copay_fen / 100:.2f}", redemption.duration_minutes or ""]


def _summary(settlement: Settlement) -> list[list]:
    return [[], ["合计", settlement.redemptions_count, "", "", f"{settlement.gross_fen / 100:.2f}"],
            ["绩效得分", settlement.performance_score], ["支付比例", f"{settlement.pay_percent}%"],
            ["应付金额（元）", f"{settlement.net_fen / 100:.2f}"]]


def csv_chunks(settlement: Settlement) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write("\ufeff")
    writer.writerow(HEADERS)
    for count, row in enumerate(_rows(settlement), start=1):
        writer.writerow(row)
        if count % BATCH == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    writer.writerows(_summary(settlement))
    yield buffer.getvalue()


def xlsx_file(settlement: Settlement):
    """The statement as an .xlsx in a temporary file (rewound), written row by row."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(f"结算{settlement.period}")
    sheet.append(HEADERS)
    for row in _rows(settlement):
        sheet.append(row)
    for row in _summary(settlement):
        sheet.append(row)
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - closed by the response that streams it
    workbook.save(handle)
    handle.seek(0)
    return handle
