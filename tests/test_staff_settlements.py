"""Settlements in the staff console (/staff/settlements…), on both databases: the list by period and
programme with who drafted each, filtered, exported as CSV and XLSX with the same filter; drafting a
period; a settlement's page; approval by a second admin only (the drafter is told and offered no
button, and a posted approve is refused plainly); payment with its reference; statements; auditors
read everything and change nothing; a region-limited admin sees only its region."""

import csv
import io
import re

from openpyxl import load_workbook

from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from vouchers.models import Settlement

FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')


def _login(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def _keys(client, path: str) -> dict:
    body = client.get(path).get_data(as_text=True)
    return {"csrf_token": csrf_from(body), "form_key": FORM_KEY_RE.search(body).group(1)}


def _served_last_month(build):
    """The world with last month issued and served: p1 three meals for alice, p2 a bath for bob."""
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.bath, world.p2)
    for day in (3, 5, 7):
        build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, day))
    build.redeem(world.p2, world.bob, world.bath, delivered_at=build.in_month(-1, 9))
    return world


def test_an_admin_drafts_a_period_and_the_list_shows_who_drafted_it(build, client):
    world = _served_last_month(build)
    clerk = build.admin()
    _login(client, clerk)
    preview = f"/staff/settlements/draft?programme_id={world.programme.id}&period={build.period(-1)}"
    form = {**_keys(client, preview), "programme_id": world.programme.id, "period": build.period(-1)}
    answer = client.post("/staff/settlements/draft", data=form)
    assert answer.status_code == 303
    assert client.post("/staff/settlements/draft", data=form).location == answer.location  # a double click
    drafted = build.settlements()
    assert len(drafted) == 2
    assert {s.created_by for s in drafted} == {clerk.id}
    text = visible_text(client.get(answer.location))
    assert "已起草 2 份结算" in text
    assert "共 2 份。" in text
    assert text.count(clerk.username) >= 2
    assert "草稿，待审核" in text


def test_the_list_filters_by_status_and_exports_what_it_shows(build, client):
    world = _served_last_month(build)
    ids = build.settle(world.programme, build.period(-1))
    build.approve(ids[0], by=build.admin())
    _login(client, build.admin())
    drafts = client.get("/staff/settlements?status=draft")
    text = visible_text(drafts)
    assert "共 1 份。" in text
    body = drafts.get_data(as_text=True)
    assert f"/staff/settlements/{ids[1]}" in body
    assert f"/staff/settlements/{ids[0]}\"" not in body
    exported = client.get("/staff/settlements.csv?status=draft")
    assert exported.status_code == 200
    content = exported.get_data(as_text=True)
    assert content.startswith("\ufeff结算编号,结算月份,项目,服务机构")
    rows = list(csv.reader(io.StringIO(content.lstrip("\ufeff"))))
    assert len(rows) == 2
    assert rows[1][0] == str(ids[1])
    assert rows[1][9] == "草稿"
    workbook = load_workbook(io.BytesIO(client.get("/staff/settlements.xlsx").get_data()))
    sheet = workbook.active
    assert sheet.max_row == 3  # headers and both settlements
    assert {sheet.cell(row=r, column=10).value for r in (2, 3)} == {"草稿", "已审核"}


def test_the_drafter_is_told_a_colleague_approves_and_a_posted_approve_is_refused(build, client):
    world = _served_last_month(build)
    drafter = build.admin()
    [first, _second] = build.settle(world.programme, build.period(-1), by=drafter)
    _login(client, drafter)
    page = client.get(f"/staff/settlements/{first}")
    assert page.status_code == 200
    text = visible_text(page)
    assert "需要另一位工作人员审核" in text
    assert "审核通过" not in text
    csrf = csrf_from(page.get_data(as_text=True))
    refused = client.post(f"/staff/settlements/{first}/approve", data={"csrf_token": csrf, "form_key": "a" * 24})
    assert refused.status_code == 403
    assert "结算需要另一位工作人员审核" in visible_text(refused)
    assert build.settlement(first).status == "draft"


def test_a_second_admin_approves_then_pays_with_a_reference(build, client):
    world = _served_last_month(build)
    drafter, colleague = build.admin(), build.admin()
    [first, _second] = build.settle(world.programme, build.period(-1), by=drafter)
    before = build.ledger(world.programme)
    settlement = build.settlement(first)
    _login(client, colleague)
    path = f"/staff/settlements/{first}"
    text = visible_text(client.get(path))
    assert drafter.username in text
    assert "审核通过" in text
    keys = _keys(client, path)
    approved = client.post(f"{path}/approve", data=keys)
    assert approved.status_code == 303
    assert client.post(f"{path}/approve", data=keys).status_code == 303  # a double click: once
    assert build.settlement(first).status == "approved"
    assert build.settlement(first).approved_by == colleague.id
    assert build.ledger(world.programme).settled_fen == before.settled_fen + settlement.net_fen
    after = visible_text(client.get(approved.location))
    assert "付款凭证号" in after
    assert "审核通过" not in after

    blank = client.post(f"{path}/pay", data={**_keys(client, path), "payment_reference": ""})
    assert blank.status_code == 422
    assert "请填写这一项" in visible_text(blank)
    paid = client.post(f"{path}/pay", data={**_keys(client, path), "payment_reference": "国库-2026-0042"})
    assert paid.status_code == 303
    assert build.settlement(first).payment_reference == "国库-2026-0042"
    assert "已记录付款，付款凭证号 国库-2026-0042" in visible_text(client.get(paid.location))


def test_paying_a_draft_is_refused_plainly(build, client):
    world = _served_last_month(build)
    [first, _second] = build.settle(world.programme, build.period(-1))
    _login(client, build.admin())
    path = f"/staff/settlements/{first}"
    csrf = csrf_from(client.get(path).get_data(as_text=True))
    answer = client.post(f"{path}/pay", data={"csrf_token": csrf, "form_key": "p" * 24, "payment_reference": "X-1"})
    assert answer.status_code == 409
    assert "结算还没有审核通过，不能付款。" in visible_text(answer)
    assert build.settlement(first).status == "draft"


def test_statements_download_as_csv_and_xlsx(build, client):
    world = _served_last_month(build)
    [first, _second] = build.settle(world.programme, build.period(-1))
    _login(client, build.auditor())
    as_csv = client.get(f"/staff/settlements/{first}/statement.csv")
    assert as_csv.status_code == 200
    assert as_csv.get_data(as_text=True).startswith("\ufeff核销编号")
    as_xlsx = client.get(f"/staff/settlements/{first}/statement.xlsx")
    assert as_xlsx.status_code == 200
    assert load_workbook(io.BytesIO(as_xlsx.get_data())).active.cell(row=1, column=1).value == "核销编号"


def test_an_auditor_reads_without_action_controls_and_a_posted_action_is_refused(build, client):
    world = _served_last_month(build)
    [first, second] = build.settle(world.programme, build.period(-1))
    build.approve(second, by=build.admin())
    _login(client, build.auditor())
    for path in ("/staff/settlements", f"/staff/settlements/{first}", f"/staff/settlements/{second}"):
        answer = client.get(path)
        assert answer.status_code == 200
        main = answer.get_data(as_text=True).split("</header>", 1)[1]
        assert 'method="post"' not in main
    csrf = csrf_from(client.get("/staff").get_data(as_text=True))
    for path, data in ((f"/staff/settlements/{first}/approve", {}),
                       (f"/staff/settlements/{second}/pay", {"payment_reference": "X"}),
                       ("/staff/settlements/draft", {"programme_id": world.programme.id, "period": build.period(0)})):
        assert client.post(path, data={"csrf_token": csrf, "form_key": "z" * 24, **data}).status_code == 403
    assert [s.status for s in build.settlements()] == ["draft", "approved"]


def test_a_region_limited_admin_sees_only_its_regions_settlements(build, client):
    world = _served_last_month(build)
    ids = build.settle(world.programme, build.period(-1))
    _login(client, build.admin(region_code="510132"))
    text = visible_text(client.get("/staff/settlements"))
    assert "共 0 份。" in text
    assert client.get(f"/staff/settlements/{ids[0]}").status_code == 403
    assert "结算编号" in client.get("/staff/settlements.csv").get_data(as_text=True)
    assert len(list(csv.reader(io.StringIO(client.get("/staff/settlements.csv").get_data(as_text=True))))) == 1


def test_a_bad_filter_is_refused_beside_its_field(build, client):
    _login(client, build.admin())
    answer = client.get("/staff/settlements?period=13-2026")
    assert answer.status_code == 422
    assert "请填写年月" in visible_text(answer)
    assert build.count(Settlement) == 0
