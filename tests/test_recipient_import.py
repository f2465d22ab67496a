"""CSV import of recipients (POST /api/v1/recipients/import, format in docs/domain.md#api-conventions; and `flask
import-recipients FILE`).

Row numbers are those a spreadsheet shows: the header is row 1, so the first data row is row 2, and a
quoted cell spanning several lines is still one row. Every test runs on SQLite and PostgreSQL.
"""

import csv
import io
import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from marketplace.app import create_app
from marketplace.audit.models import AuditEvent
from marketplace.db import db, transaction, utcnow
from marketplace.recipients import service
from marketplace.recipients.models import Recipient, RecipientTag
from tests.conftest import PASSWORD, error_code
from tests.support.apps import app_config
from tests.support.databases import empty_database
from tests.test_idnumber import make_id_number, with_check_x
from tests.test_recipients import assert_never_stored

URL = "/api/v1/recipients/import"
HEADER = ["name", "id_number", "phone", "region_code", "address", "tags"]
BOM = "\ufeff"


def row(sequence: int, *, name: str = "李桂兰", phone: str = "13812345678", region_code: str = "510131",
        address: str = "蒲江县鹤山镇1村2组", tags: str = "living_alone", id_number: str | None = None,
        birth: date = date(1940, 5, 6)) -> list[str]:
    return [name, id_number or make_id_number("510131", birth, sequence), phone, region_code, address, tags]


def generated_rows(count: int, *, address: str = "蒲江县鹤山镇1村2组") -> list[list[str]]:
    """*count* rows with distinct valid ID numbers (1000 sequences per birth date)."""
    return [row(index % 1000, birth=date(1930, 1, 1) + timedelta(days=index // 1000), address=address,
                tags="advanced_age;living_alone" if index % 3 == 0 else "")
            for index in range(count)]


def wrong_check(number: str) -> str:
    return number[:17] + ("0" if number[17] != "0" else "1")


def csv_text(rows, *, header=HEADER, line_terminator: str = "\r\n") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=line_terminator)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def upload(client, headers, content: bytes | str, *, filename: str = "recipients.csv"):
    if isinstance(content, str):
        content = content.encode("utf-8")
    # Encoded here, in memory: the test client spools bodies over 500 KB to a temporary file it never closes.
    boundary, body = encode_multipart({"file": FileStorage(io.BytesIO(content), filename, content_type="text/csv")})
    return client.post(URL, data=body, headers=headers, content_type=f'multipart/form-data; boundary="{boundary}"')


def imported(client, headers, content) -> dict:
    response = upload(client, headers, content)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def recipient_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Recipient))


def import_events(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.action == "recipients.imported"))


@pytest.fixture
def admin_headers(make_user, auth):
    return auth(make_user(role="admin"))


# --- what gets created -----------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["", BOM], ids=["without-bom", "with-bom"])
@pytest.mark.parametrize("line_terminator", ["\r\n", "\n"], ids=["crlf", "lf"])
def test_valid_rows_are_created_from_utf8_with_or_without_a_bom(app, client, admin_headers, prefix,
                                                                 line_terminator):
    content = prefix + csv_text([row(1), row(2, tags=""), row(3, phone="")], line_terminator=line_terminator)
    result = imported(client, admin_headers, content)
    assert (result["created"], result["duplicates"], result["errors"]) == (3, 0, [])
    assert recipient_count(app) == 3
    with app.app_context():
        names = set(db.session.scalars(select(Recipient.name)))
    assert names == {"李桂兰"}  # the BOM did not stick to anything


def test_imported_recipients_have_the_derived_fields_and_their_tags(app, client, admin_headers):
    number = make_id_number("510131", date(1938, 11, 30), 457)  # 17th digit 7: a man
    content = csv_text([row(0, id_number=number, tags="living_alone;disabled; advanced_age", address="鹤山镇, 3组")])
    assert imported(client, admin_headers, content)["created"] == 1
    listing = client.get("/api/v1/recipients", headers=admin_headers).get_json()
    [recipient] = listing["items"]
    assert recipient["id_number_masked"] == number[:6] + "********" + number[-4:]
    assert recipient["birth_date"] == "1938-11-30"
    assert recipient["sex"] == "male"
    assert recipient["tags"] == ["advanced_age", "disabled", "living_alone"]
    assert recipient["address"] == "鹤山镇, 3组"
    assert recipient["status"] == "active"
    assert_never_stored(app, number)


def test_an_import_is_recorded_in_the_audit_trail_with_its_counts(app, client, admin_headers):
    imported(client, admin_headers, csv_text([row(1), row(1), row(2, phone="bad")]))
    events = client.get("/api/v1/audit", query_string={"entity": "recipient"}, headers=admin_headers).get_json()
    [event] = [event for event in events["items"] if event["action"] == "recipients.imported"]
    assert event["data"] == {"rows": 3, "created": 1, "duplicates": 1, "error_rows": 1}


# --- errors and their row numbers ------------------------------------------------------------------

def test_bad_rows_are_reported_with_spreadsheet_row_numbers_and_skipped(app, client, admin_headers):
    rows = [
        row(1),                                        # row 2: fine
        row(2, phone="12345"),                         # row 3: bad phone
        row(3, address="第一行\n第二行\n第三行"),         # row 4: fine, one cell over three lines
        row(4, id_number=wrong_check(make_id_number(sequence=4))),  # row 5: wrong check character
        row(6, region_code="99999"),                   # row 6: bad region code
        ["只有", "三列", "而已"],                        # row 7: wrong number of columns
        row(7, tags="living_alone;vip"),               # row 8: unknown tag
        row(8, name=""),                               # row 9: no name
        row(9),                                        # row 10: fine
    ]
    result = imported(client, admin_headers, csv_text(rows))
    assert result["created"] == 3
    assert result["duplicates"] == 0
    assert [(error["row"], error["field"]) for error in result["errors"]] == [
        (3, "phone"), (5, "id_number"), (6, "region_code"), (7, "row"), (8, "tags"), (9, "name")]
    assert all(error["message"] for error in result["errors"])
    assert recipient_count(app) == 3
    with app.app_context():
        assert "第一行\n第二行\n第三行" in db.session.scalars(select(Recipient.address)).all()


def test_a_row_with_several_problems_reports_each_field(client, admin_headers):
    result = imported(client, admin_headers, csv_text([row(1, phone="x", region_code="1", tags="vip")]))
    assert result["created"] == 0
    assert sorted((error["row"], error["field"]) for error in result["errors"]) == [
        (2, "phone"), (2, "region_code"), (2, "tags")]


def test_blank_lines_are_skipped_but_keep_their_row_numbers(client, admin_headers):
    content = csv_text([row(1), [], [""] * 6, row(2, phone="bad")])  # rows 2, 3 (empty), 4 (empty cells), 5
    assert content.count("\r\n") == 5
    result = imported(client, admin_headers, content)
    assert result["created"] == 1
    assert [(error["row"], error["field"]) for error in result["errors"]] == [(5, "phone")]


@pytest.mark.parametrize("field", ["name", "address"])
def test_a_nul_character_in_a_cell_is_a_row_error_not_a_server_error(app, client, admin_headers, field):
    # PostgreSQL cannot store NUL in text; the row must be refused, the rest imported, on both databases.
    rows = [row(1), row(2, **{field: "王\x00秀英"}), row(3)]
    response = upload(client, admin_headers, csv_text(rows))
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    assert result["created"] == 2
    assert [(error["row"], error["field"]) for error in result["errors"]] == [(3, field)]
    assert recipient_count(app) == 2


def test_at_most_1000_problems_are_listed_but_every_refused_row_is_counted(app, client, admin_headers):
    rows = [row(1)] + [[*fields[:2], "bad phone", *fields[3:]] for fields in generated_rows(1200)]
    result = imported(client, admin_headers, csv_text(rows))
    assert result["created"] == 1
    assert result["rows"] == 1201
    assert result["error_rows"] == 1200
    assert len(result["errors"]) == 1000
    assert [error["row"] for error in result["errors"]] == list(range(3, 1003))


def test_errors_never_repeat_the_id_number(client, admin_headers):
    wrong = wrong_check(make_id_number(sequence=5))
    response = upload(client, admin_headers, csv_text([row(0, id_number=wrong, phone="bad")]))
    assert response.status_code == 200
    assert wrong not in response.get_data(as_text=True)
    assert wrong[:17] not in response.get_data(as_text=True)


# --- duplicates and re-imports ---------------------------------------------------------------------

def test_duplicates_are_counted_and_never_created(app, client, admin_headers):
    enrolled_number = with_check_x(birth=date(1944, 4, 4))
    response = client.post("/api/v1/recipients", headers=admin_headers, json={
        "name": "已登记", "id_number": enrolled_number, "phone": None, "region_code": "510131", "address": None,
        "tags": []})
    assert response.status_code == 201
    rows = [
        row(0, id_number=enrolled_number.lower(), name="再次登记"),  # row 2: already enrolled (lower-case x)
        row(1),                                                        # row 3: new
        row(1, name="同一个人"),                                         # row 4: repeats row 3
        row(2),                                                        # row 5: new
        row(2, name="又一次"),                                           # row 6: repeats row 5
        row(2, name="第三次"),                                           # row 7: repeats row 5 again
    ]
    result = imported(client, admin_headers, csv_text(rows))
    assert (result["created"], result["duplicates"], result["errors"]) == (2, 4, [])
    assert recipient_count(app) == 3
    with app.app_context():
        names = set(db.session.scalars(select(Recipient.name)))
    assert names == {"已登记", "李桂兰"}


def test_an_upper_and_a_lower_case_x_in_one_file_are_one_person(app, client, admin_headers):
    number = with_check_x(birth=date(1939, 9, 9))
    result = imported(client, admin_headers, csv_text([row(0, id_number=number), row(0, id_number=number.lower())]))
    assert (result["created"], result["duplicates"]) == (1, 1)
    assert recipient_count(app) == 1


def test_a_repeat_of_an_invalid_row_is_not_a_duplicate_of_anything(app, client, admin_headers):
    result = imported(client, admin_headers, csv_text([row(1, phone="bad"), row(1)]))
    assert (result["created"], result["duplicates"]) == (1, 0)
    assert [(error["row"], error["field"]) for error in result["errors"]] == [(2, "phone")]


def test_importing_the_same_file_again_creates_nothing(app, client, admin_headers):
    content = csv_text([row(1), row(2), row(3, phone="bad"), row(4)])
    first = imported(client, admin_headers, content)
    assert (first["created"], first["duplicates"]) == (3, 0)
    second = imported(client, admin_headers, content)
    assert (second["created"], second["duplicates"]) == (0, 3)
    assert second["errors"] == first["errors"]
    assert recipient_count(app) == 3


def test_two_overlapping_imports_of_the_same_rows_create_each_person_once(app):
    """The second import checks for existing rows while the first has inserted but not committed them."""
    content = csv_text(generated_rows(50))
    first_inserted = threading.Event()
    results, failures = {}, []

    def run(name, on_batch=None):
        try:
            with app.app_context(), transaction():
                results[name] = service.import_recipients(text=io.StringIO(content), actor=None, now=utcnow(),
                                                          on_batch=on_batch)
        except Exception as error:  # noqa: BLE001 - reported below
            failures.append(f"{name}: {error!r}")
        finally:
            first_inserted.set()

    def hold_the_transaction_open(_rows):
        first_inserted.set()
        time.sleep(0.5)  # the second import reads and inserts meanwhile (on SQLite it waits for the lock)

    first = threading.Thread(target=run, args=("first", hold_the_transaction_open))
    second = threading.Thread(target=lambda: (first_inserted.wait(10), run("second")))
    first.start()
    second.start()
    first.join(30)
    second.join(30)

    assert failures == []
    assert sorted((r.created, r.duplicates) for r in results.values()) == [(0, 50), (50, 0)]
    assert recipient_count(app) == 50


# --- refusing the whole file -----------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    ["name", "id_number", "phone", "region_code", "address"],                  # a column missing
    ["name", "phone", "id_number", "region_code", "address", "tags"],          # columns swapped
    ["姓名", "身份证号", "电话", "地区", "地址", "标签"],                          # another language
    ["name", "id_number", "phone", "region_code", "address", "tags", "note"],  # an extra column
])
def test_a_bad_header_refuses_the_file_and_creates_nothing(app, client, admin_headers, header):
    response = upload(client, admin_headers, csv_text([row(1)[:len(header)] + [""] * (len(header) - 6)],
                                                      header=header))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "file" in response.get_json()["error"]["details"]["fields"]
    assert recipient_count(app) == 0
    assert import_events(app) == 0


def test_an_empty_file_is_a_bad_header(app, client, admin_headers):
    response = upload(client, admin_headers, b"")
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_the_header_may_differ_in_case_and_spacing(app, client, admin_headers):
    content = csv_text([row(1)], header=["Name", " ID_Number", "phone ", "Region_Code", "address", "TAGS"])
    assert imported(client, admin_headers, content)["created"] == 1


def test_a_file_that_is_not_utf8_is_refused_with_nothing_written(app, client, admin_headers):
    # 1,500 good rows first, so that a whole batch has been inserted before the bad bytes are read.
    good = csv_text(generated_rows(1500)).encode("utf-8")
    bad_row = ",".join(["王秀英", make_id_number(sequence=999, birth=date(1929, 1, 1)), "13812345678", "510131",
                        "蒲江县", ""]).encode("gbk") + b"\r\n"
    assert len(good) > 64 * 1024
    response = upload(client, admin_headers, good + bad_row)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "file" in response.get_json()["error"]["details"]["fields"]
    assert recipient_count(app) == 0
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(RecipientTag)) == 0
    assert import_events(app) == 0


def test_a_file_that_is_not_readable_as_csv_is_refused_with_nothing_written(app, client, admin_headers):
    # 1,200 good rows, then a cell over the csv module's field limit.
    content = csv_text([*generated_rows(1200), row(999, address="长" * 140_000)])
    response = upload(client, admin_headers, content)
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "file" in response.get_json()["error"]["details"]["fields"]
    assert recipient_count(app) == 0


def test_a_gbk_file_from_a_chinese_spreadsheet_is_refused(app, client, admin_headers):
    response = upload(client, admin_headers, csv_text([row(1)]).encode("gbk"))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert recipient_count(app) == 0


def test_a_request_without_a_file_is_a_validation_error(client, admin_headers):
    response = client.post(URL, data={}, headers=admin_headers, content_type="multipart/form-data")
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "file" in response.get_json()["error"]["details"]["fields"]


# --- who may import --------------------------------------------------------------------------------

def test_anonymous_import_is_unauthenticated(app, client):
    response = upload(client, {}, csv_text([row(1)]))
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"
    assert recipient_count(app) == 0


def test_an_auditor_may_not_import(app, client, make_user, auth):
    response = upload(client, auth(make_user(role="auditor")), csv_text([row(1)]))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"
    assert recipient_count(app) == 0


def test_rows_outside_a_scoped_admins_region_are_reported_as_errors(app, client, make_user, auth):
    headers = auth(make_user(role="admin", region_code="510131"))
    rows = [row(1, region_code="510131"), row(2, region_code="310101"), row(3, region_code="510132"),
            row(4, region_code="510131")]
    result = imported(client, headers, csv_text(rows))
    assert result["created"] == 2
    assert [(error["row"], error["field"]) for error in result["errors"]] == [(3, "region_code"), (4, "region_code")]
    with app.app_context():
        assert set(db.session.scalars(select(Recipient.region_code))) == {"510131"}


# --- size limit ------------------------------------------------------------------------------------

def test_an_upload_over_import_max_bytes_is_payload_too_large(app, database_url, make_user, tmp_path):
    small = create_app(app_config(database_url, IMPORT_MAX_BYTES=4096, INSTANCE_PATH=str(tmp_path)))
    try:
        user = make_user(role="admin")
        client = small.test_client()
        token = client.post("/api/v1/auth/token", json={"username": user.username, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {token.get_json()['token']}"}

        too_big = csv_text(generated_rows(200)).encode("utf-8")
        assert len(too_big) > 4096
        response = upload(client, headers, too_big)
        assert response.status_code == 413
        assert error_code(response) == "payload_too_large"
        assert recipient_count(small) == 0

        fits = csv_text(generated_rows(10)).encode("utf-8")
        assert len(fits) < 3000
        assert imported(client, headers, fits)["created"] == 10
    finally:
        empty_database(small)
        with small.app_context():
            db.engine.dispose()


def test_the_import_limit_is_separate_from_the_json_body_limit(app, client, admin_headers):
    content = csv_text(generated_rows(2000, address="蒲江县鹤山镇" + "某村某组" * 45)).encode("utf-8")
    assert len(content) > app.config["MAX_CONTENT_LENGTH"]
    assert imported(client, admin_headers, content)["created"] == 2000


# --- the CLI ---------------------------------------------------------------------------------------

def test_the_cli_imports_a_file_and_prints_the_counts(app, runner, tmp_path):
    path = tmp_path / "recipients.csv"
    path.write_text(BOM + csv_text([row(1), row(2), row(2), row(3, phone="12345")]), encoding="utf-8")
    result = runner.invoke(args=["import-recipients", str(path)])
    assert result.exit_code == 0, result.output
    assert "rows 4, created 2, duplicates 1, refused 1" in result.output
    assert "row 5 phone" in result.output
    assert recipient_count(app) == 2

    again = runner.invoke(args=["import-recipients", str(path)])
    assert again.exit_code == 0, again.output
    assert "created 0, duplicates 3" in again.output
    assert recipient_count(app) == 2


def test_the_cli_refuses_a_bad_header_with_a_non_zero_exit(app, runner, tmp_path):
    path = tmp_path / "recipients.csv"
    path.write_text(csv_text([row(1)], header=["a", "b", "c", "d", "e", "f"]), encoding="utf-8")
    result = runner.invoke(args=["import-recipients", str(path)])
    assert result.exit_code != 0
    assert "header" in result.output
    assert recipient_count(app) == 0


def test_the_cli_refuses_a_file_that_is_not_utf8(app, runner, tmp_path):
    path = tmp_path / "recipients.csv"
    path.write_bytes(csv_text(generated_rows(1200)).encode("utf-8") + "王,1,2,3,4,5\r\n".encode("gbk"))
    result = runner.invoke(args=["import-recipients", str(path)])
    assert result.exit_code != 0
    assert "UTF-8" in result.output
    assert recipient_count(app) == 0


# --- volume ----------------------------------------------------------------------------------------

def test_five_thousand_rows_import_with_the_right_counts(app, client, admin_headers):
    rows = generated_rows(5000)
    rows[1234][2] = "not a phone"          # row 1236
    rows.append(list(rows[0]))              # row 5002: a repeat of row 2
    content = csv_text(rows).encode("utf-8")

    started = time.perf_counter()
    result = imported(client, admin_headers, content)
    elapsed = time.perf_counter() - started

    assert (result["created"], result["duplicates"]) == (4999, 1)
    assert [(error["row"], error["field"]) for error in result["errors"]] == [(1236, "phone")]
    assert recipient_count(app) == 4999
    with app.app_context():
        tagged = db.session.scalar(select(func.count()).select_from(RecipientTag))
    assert tagged == sum(len(tags.split(";")) for index, (*_, tags) in enumerate(rows[:5000])
                         if tags and index != 1234)
    assert elapsed < 30, f"5,000 rows took {elapsed:.1f} s"

    again = imported(client, admin_headers, content)
    assert (again["created"], again["duplicates"]) == (0, 5000)
    assert recipient_count(app) == 4999
