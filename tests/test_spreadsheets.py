"""marketplace.spreadsheets: every CSV and XLSX the product writes neutralises formulas (OWASP CSV injection),
keeps numbers numbers; a settlement statement carrying a provider's note comes out harmless (both databases)."""

import csv
import io
from datetime import timedelta

import openpyxl
import pytest

from marketplace import spreadsheets
from marketplace.auth.models import User
from marketplace.db import db
from vouchers.service import redemption as redemption_service

API = "/api/v1"
HYPERLINK = '=HYPERLINK("http://example.invalid/x","点此领取")'


@pytest.mark.parametrize("text", [HYPERLINK, "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1+1", "\r=1+1", "=", "-", "-1-1"])
def test_a_text_a_spreadsheet_would_run_gets_a_leading_apostrophe(text):
    assert spreadsheets.neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["助餐", "李=王", " =1+1", "'=1", "", "12.50", "-12.50", "+3", 0, -5, 12.5, None])
def test_other_text_numbers_and_blanks_stay_as_they_are(value):
    assert spreadsheets.neutralise(value) == value


def test_numbers_stay_numbers_in_the_xlsx_and_formulas_stay_text():
    handle = spreadsheets.xlsx_file("表", ["数", "字"], [[-5, HYPERLINK], [12, "@cmd"]], footer=[["=1+1"]])
    sheet = openpyxl.load_workbook(handle).worksheets[0]
    handle.close()
    assert [[cell.value for cell in row] for row in sheet.iter_rows()] == [
        ["数", "字"], [-5, "'" + HYPERLINK], [12, "'@cmd"], ["'=1+1", None]]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_the_csv_starts_with_a_bom_and_comes_in_chunks():
    chunks = list(spreadsheets.csv_chunks(["编号", "备注"], ([n, "=A1"] for n in range(5)), batch=2))
    assert len(chunks) == 3
    assert chunks[0].startswith("\ufeff编号,备注")
    rows = list(csv.reader(io.StringIO("".join(chunks).removeprefix("\ufeff"))))
    assert rows[1:] == [[str(n), "'=A1"] for n in range(5)]


def test_a_statement_with_a_formula_in_a_note_is_neutralised_in_csv_and_xlsx(build, client):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    delivered = build.in_month(-1, 3, hour=10)

    def scan():
        at = min(delivered + timedelta(minutes=5), build.now())
        code = redemption_service.create_presence_code(recipient_id=world.alice.id, now=at)
        return redemption_service.redeem(actor=db.session.get(User, world.p1.user.id), now=at, delivered_at=delivered,
                                         presence_token=code["token"], item_code=world.meal, notes=HYPERLINK).id

    noted = build.run(scan)
    [settlement] = build.settle(world.programme, build.period(-1))
    headers = build.headers(world.p1.user)

    text = client.get(f"{API}/settlements/{settlement}/statement.csv", headers=headers).data.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-1] == "备注"
    line = next(row for row in rows if row and row[0] == str(noted))
    assert line[-1] == "'" + HYPERLINK

    response = client.get(f"{API}/settlements/{settlement}/statement.xlsx", headers=headers)
    data = response.data
    response.close()
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    found = next(row for row in sheet.iter_rows() if row[0].value == noted)  # the id is a number
    assert found[len(rows[0]) - 1].value == "'" + HYPERLINK
    assert found[len(rows[0]) - 1].data_type == "s"
