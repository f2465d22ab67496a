"""/staff/recipients/import: the template, an upload through the API's import service, the result page
(created, duplicates, bad rows with row numbers and reasons), the bad rows as a CSV to fix and upload again.
Both databases."""

import csv
import io
import re
from datetime import date

from sqlalchemy import func, select

from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text

HEADER = "name,id_number,phone,region_code,address,tags"


def _as(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def _id(serial: int, birth: date = date(1940, 5, 6)) -> str:
    first17 = f"510131{birth:%Y%m%d}{serial:03d}"
    return first17 + check_character(first17)


def _upload(client, text: str, *, page: str = "/staff/recipients/import", encoding="utf-8"):
    html = client.get(page).get_data(as_text=True)
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    data = {"csrf_token": csrf_from(html), "form_key": key, "file": (io.BytesIO(text.encode(encoding)), "people.csv")}
    return client.post("/staff/recipients/import", data=data, content_type="multipart/form-data"), key


def _count(app) -> int:
    with app.app_context():
        from marketplace.db import db
        return db.session.scalar(select(func.count()).select_from(Recipient))


def test_the_template_has_the_header_the_import_expects(build, client):
    _as(client, build.admin())
    answer = client.get("/staff/recipients/import/template.csv")
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "\ufeff" + HEADER + "\r\n"


def test_an_import_with_bad_rows_reports_them_and_hands_them_back_to_fix(build, client, app):
    build.recipient(name="已在册")  # nothing to do with the file
    _as(client, build.admin())
    good, phone_bad, id_bad = _id(1), _id(2), _id(3)[:-1] + ("0" if _id(3)[-1] != "0" else "1")
    text = "\n".join([HEADER,
                      f"王秀英,{good},13800001111,510131,鹤山街道,low_income;living_alone",
                      f"刘德华,{phone_bad},12345,510131,,",
                      f"陈阿婆,{id_bad},,510131,,",
                      f"王秀英,{good},13800001111,510131,鹤山街道,",
                      "赵,x,y", ""])
    answer, _key = _upload(client, text)
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    shown = visible_text(answer)
    html = answer.get_data(as_text=True)
    assert re.search(r'id="created-count">1<', html)
    assert re.search(r'id="duplicates-count">1<', html)
    assert re.search(r'id="error-count">3<', html)
    assert "手机号应为 1 开头的 11 位数字" in shown
    assert "身份证号码的最后一位（校验码）不对" in shown
    assert "应有 6 列，这一行有 3 列" in shown
    assert _count(app) == 2

    bad_rows = re.search(r'name="bad_rows" value="([^"]+)"', html).group(1)
    download = client.post("/staff/recipients/import/errors.csv",
                           data={"csrf_token": csrf_from(html), "bad_rows": bad_rows})
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == [*HEADER.split(","), "错误原因"]
    assert [row[0] for row in rows[1:]] == ["刘德华", "陈阿婆", "赵"]
    assert rows[1][1] == phone_bad
    assert rows[1][-1].startswith("电话：")

    # Fixed in a spreadsheet and uploaded again as it is, 错误原因 column and all.
    rows[1][2] = "13900002222"
    rows[2][1] = _id(4)
    rows[3] = ["赵大娘", _id(5), "", "510131", "", "", rows[3][-1]]
    fixed = io.StringIO()
    csv.writer(fixed).writerows(rows)
    again, _ = _upload(client, "\ufeff" + fixed.getvalue())
    assert again.status_code == 200
    html = again.get_data(as_text=True)
    assert re.search(r'id="created-count">3<', html)
    assert re.search(r'id="error-count">0<', html)
    assert 'name="bad_rows"' not in html
    assert _count(app) == 5


def test_a_reload_of_the_upload_imports_nothing_twice(build, client, app):
    _as(client, build.admin())
    html = client.get("/staff/recipients/import").get_data(as_text=True)
    key = re.search(r'name="form_key" value="([^"]+)"', html).group(1)
    text = f"{HEADER}\n王秀英,{_id(1)},,510131,,\n"

    def post():
        return client.post("/staff/recipients/import", content_type="multipart/form-data", data={
            "csrf_token": csrf_from(html), "form_key": key, "file": (io.BytesIO(text.encode()), "people.csv")})

    assert post().status_code == 200
    second = post()
    assert second.status_code == 303
    assert "这份文件刚才已经导入过了" in visible_text(client.get(second.location))
    assert _count(app) == 1


def test_a_wrong_header_or_encoding_or_no_file_is_refused_beside_the_field(build, client, app):
    _as(client, build.admin())
    wrong, _ = _upload(client, "姓名,身份证\n王,1\n")
    assert wrong.status_code == 422
    assert 'id="error-file"' in wrong.get_data(as_text=True)
    assert "第一行必须是表头" in visible_text(wrong)
    gbk, _ = _upload(client, f"{HEADER}\n王秀英,{_id(1)},,510131,,\n", encoding="gbk")
    assert gbk.status_code == 422
    assert "文件不是 UTF-8 编码" in visible_text(gbk)
    html = client.get("/staff/recipients/import").get_data(as_text=True)
    none = client.post("/staff/recipients/import", data={"csrf_token": csrf_from(html)},
                       content_type="multipart/form-data")
    assert none.status_code == 422
    assert "请选择要导入的 CSV 文件" in visible_text(none)
    assert _count(app) == 0


def test_rows_outside_the_admins_region_are_refused(build, client, app):
    _as(client, build.admin(region_code="510131"))
    answer, _ = _upload(client, f"{HEADER}\n王秀英,{_id(1)},,510132,,\n")
    assert "这个区域不归您管" in visible_text(answer)
    assert _count(app) == 0


def test_a_forged_list_of_bad_rows_is_refused(build, client):
    _as(client, build.admin())
    html = client.get("/staff/recipients/import").get_data(as_text=True)
    forged = client.post("/staff/recipients/import/errors.csv", data={"csrf_token": csrf_from(html),
                                                                      "bad_rows": "e30.forged.sig"})
    assert forged.status_code == 422
    assert "已经过期" in visible_text(forged)


def test_auditors_and_recipients_may_not_import(build, client):
    _as(client, build.auditor())
    assert client.get("/staff/recipients/import").status_code == 403
    assert client.get("/staff/recipients/import/template.csv").status_code == 403
    page = client.get("/staff/recipients").get_data(as_text=True)
    assert "/staff/recipients/import" not in page
    refused = client.post("/staff/recipients/import", data={"csrf_token": csrf_from(page)},
                          content_type="multipart/form-data")
    assert refused.status_code == 403
