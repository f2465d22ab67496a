"""The staff programme page /staff/programmes/<id>: the dashboard with its charts and data tables, budget
amendments, activating and closing with a confirmation that says what follows, applications to join,
choice statistics and the exports — for admins; read-only for auditors (both databases)."""

import io
import re
from types import SimpleNamespace

import pytest
from openpyxl import load_workbook

from marketplace.auth.models import User
from marketplace.db import db
from marketplace.programmes.models import BudgetAmendment, Programme
from providers.models import Enrolment, ProgrammeApplication
from providers.service import applications
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from vouchers.models import Voucher

FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')


def money(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def log_in(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def page_of(client, programme_id: int, suffix: str = "") -> str:
    answer = client.get(f"/staff/programmes/{programme_id}{suffix}")
    assert answer.status_code == 200, answer.status_code
    return answer.get_data(as_text=True)


def submit(client, page_path: str, action: str, data: dict, *, form_index: int = 0):
    """Post *data* to *action* with the CSRF token and the form key of form number *form_index* of the page."""
    page = client.get(page_path).get_data(as_text=True)
    keys = FORM_KEY_RE.findall(page)
    fields = {**data, "csrf_token": csrf_from(page), "form_key": keys[form_index]}
    return client.post(action, data=fields), fields


@pytest.fixture
def scene(build):
    """alice chose p1 for meals and was served twice this month; bob chose p2; a newcomer applied to join."""
    world = build.world(budget_fen=10_000_000)
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    served = [build.redeem(world.p1, world.alice, world.meal) for _ in range(2)]
    newcomer = build.provider(items=[world.meal], name="鹤山助餐服务社", kind="enterprise")
    application_id = build.run(lambda: applications.apply(
        programme_id=world.programme.id, note="我们有 12 名助餐员。", actor=db.session.get(User, newcomer.user.id),
        now=build.now()).id)
    return SimpleNamespace(world=world, programme=world.programme, served=served, newcomer=newcomer,
                           application_id=application_id)


def test_the_dashboard_shows_the_ledger_burn_rate_charts_and_their_tables(build, client, scene):
    log_in(client, build.admin())
    page = page_of(client, scene.programme.id)
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    ledger = build.ledger(scene.programme)
    spent = sum(r.face_value_fen for r in scene.served)
    assert "¥100,000.00" in text  # the budget bar's whole
    assert money(ledger.available_fen) in text
    assert f"已花费（全部已完成的服务） {money(spent)}" in text
    assert "按最近的使用速度，预算可用到" in text
    # charts are SVG drawn on the server, hidden from screen readers, each followed by a table
    assert page.count('class="chart line-chart" aria-hidden="true"') == 2
    assert 'class="chart bar-chart" aria-hidden="true"' in page
    assert "<polyline" in page
    assert f"助餐 2 {money(spent)}" in text  # by item: count and money
    assert f"{scene.world.p1.name} 社会组织 2 {money(spent)}" in text  # by provider
    assert "目标 30%" in text
    assert "实际 100.0%" in text
    # enrolment, the pending application, choice statistics
    assert scene.world.p1.name in text
    assert scene.world.p2.name in text
    assert "等待处理的加入申请（1 份）" in text
    assert "鹤山助餐服务社" in text
    assert "我们有 12 名助餐员。" in text
    assert "助餐：2 位老人已选择" in text
    assert f"{scene.world.p1.name} 1 50.0%" in text
    assert "助浴：0 位老人已选择" in text


def test_an_auditor_sees_the_same_page_without_any_action_control(build, client, scene):
    log_in(client, build.auditor())
    page = page_of(client, scene.programme.id)
    assert "鹤山助餐服务社" in page
    forms = re.findall(r'<form[^>]*action="([^"]+)"', page)
    assert forms == ["/logout"]
    assert "/activate" not in page
    assert "/close" not in page
    assert "/applications/" not in page


@pytest.mark.parametrize(("path", "data"), [
    ("/budget", {"direction": "add", "amount": "100", "reason": "追加预算"}),
    ("/activate", {}), ("/close", {}),
    ("/applications/{application}/accept", {}), ("/applications/{application}/refuse", {"reason": "不符合"}),
])
def test_an_auditors_posted_action_is_refused(build, client, scene, path, data):
    log_in(client, build.auditor())
    token = csrf_from(client.get(f"/staff/programmes/{scene.programme.id}").get_data(as_text=True))
    target = f"/staff/programmes/{scene.programme.id}" + path.format(application=scene.application_id)
    answer = client.post(target, data={**data, "csrf_token": token, "form_key": "k" * 24})
    assert answer.status_code == 403
    assert build.ledger(scene.programme).allocated_fen == 10_000_000
    assert build.read(lambda: db.session.get(Programme, scene.programme.id).status) == "active"
    assert build.read(lambda: db.session.get(ProgrammeApplication, scene.application_id).status) == "pending"


def test_an_admin_of_another_region_cannot_open_the_programme(build, client, scene):
    log_in(client, build.admin(region_code="510132"))
    assert client.get(f"/staff/programmes/{scene.programme.id}").status_code == 403
    assert client.get(f"/staff/programmes/{scene.programme.id}/items.csv").status_code == 403


def test_an_unknown_programme_is_not_found(build, client):
    log_in(client, build.admin())
    assert client.get("/staff/programmes/999999").status_code == 404


def test_a_budget_amendment_with_its_reason_changes_the_budget_once(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}"
    answer, fields = submit(client, path, f"{path}/budget",
                            {"direction": "add", "amount": "5,000.5", "reason": "县财政追加拨款"})
    assert answer.status_code == 303
    assert client.post(f"{path}/budget", data=fields).status_code == 303  # the same form again: a double click
    assert build.ledger(scene.programme).allocated_fen == 10_000_000 + 500_050
    text = visible_text(client.get(path))
    assert "预算已经调整。" in text
    assert "追加 ¥5,000.50 县财政追加拨款" in text


def test_taking_back_unspent_budget_is_recorded_as_a_negative_amendment(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}"
    answer, _ = submit(client, path, f"{path}/budget", {"direction": "take_back", "amount": "100", "reason": "收回"})
    assert answer.status_code == 303
    amounts = build.read(lambda: [a.amount_fen for a in db.session.query(BudgetAmendment).filter_by(
        programme_id=scene.programme.id)])
    assert -10_000 in amounts
    assert "收回 ¥100.00" in visible_text(client.get(path))


@pytest.mark.parametrize(("data", "status", "said"), [
    ({"direction": "add", "amount": "12.345", "reason": "追加"}, 422, "请填写金额（元）"),
    ({"direction": "add", "amount": "0", "reason": "追加"}, 422, "金额应大于 0"),
    ({"direction": "add", "amount": "100", "reason": " "}, 422, "请填写这一项。"),
    ({"direction": "take_back", "amount": "99999999", "reason": "收回"}, 409,
     "预算不能低于已经发放、核销和结算的金额。"),
])
def test_a_refused_amendment_shows_the_form_again_with_the_reason_beside_the_field(build, client, scene, data,
                                                                                   status, said):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}"
    before = build.ledger(scene.programme)
    answer, _ = submit(client, path, f"{path}/budget", data)
    assert answer.status_code == status
    page = answer.get_data(as_text=True)
    assert said in visible_text(answer)
    assert 'class="error-summary"' in page
    assert 'aria-invalid="true"' in page
    assert build.ledger(scene.programme) == before


def test_closing_says_how_many_vouchers_are_revoked_and_how_much_is_released_then_does_it(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}"
    open_vouchers = build.count(Voucher, Voucher.programme_id == scene.programme.id, Voucher.status == "issued")
    committed = build.ledger(scene.programme).committed_fen
    assert open_vouchers > 0
    text = visible_text(client.get(f"{path}/close"))
    assert f"{open_vouchers} 张还没使用的服务券会作废" in text
    assert f"这些券的 {money(committed)} 退回项目预算" in text
    answer, fields = submit(client, f"{path}/close", f"{path}/close", {})
    assert answer.status_code == 303
    assert client.post(f"{path}/close", data=fields).status_code == 303  # a double click closes once
    assert build.count(Voucher, Voucher.programme_id == scene.programme.id, Voucher.status == "issued") == 0
    assert build.ledger(scene.programme).committed_fen == 0
    page = page_of(client, scene.programme.id)
    assert "已结束" in page
    assert f"{path}/budget" not in page


def test_closing_a_closed_programme_again_says_so(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}"
    page = client.get(f"{path}/close").get_data(as_text=True)
    build.close(scene.programme)  # someone else closed it meanwhile
    key = FORM_KEY_RE.findall(page)[0]
    answer = client.post(f"{path}/close", data={"csrf_token": csrf_from(page), "form_key": key})
    assert answer.status_code == 409
    assert "当前状态下不能这样改" in visible_text(answer)


def test_a_draft_programme_is_activated_after_a_confirmation(build, client):
    programme = build.programme(items=[build.item()], status="draft", budget_fen=50_000, name="新的草稿项目")
    log_in(client, build.admin())
    path = f"/staff/programmes/{programme.id}"
    assert f'href="{path}/activate"' in page_of(client, programme.id)
    assert "项目的预算是 ¥500.00" in visible_text(client.get(f"{path}/activate"))
    answer, _ = submit(client, f"{path}/activate", f"{path}/activate", {})
    assert answer.status_code == 303
    assert build.read(lambda: db.session.get(Programme, programme.id).status) == "active"


def test_a_draft_without_budget_cannot_be_activated(build, client):
    programme = build.programme(items=[build.item()], status="draft", budget_fen=0)
    log_in(client, build.admin())
    path = f"/staff/programmes/{programme.id}"
    page = client.get(f"{path}/activate").get_data(as_text=True)
    assert "项目还没有预算，不能启动" in page
    answer = client.post(f"{path}/activate", data={"csrf_token": csrf_from(page), "form_key": "a" * 24})
    assert answer.status_code == 409
    assert "项目还没有预算，不能启动。" in visible_text(answer)
    assert build.read(lambda: db.session.get(Programme, programme.id).status) == "draft"


def test_accepting_an_application_enrols_the_provider(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}/applications/{scene.application_id}"
    answer, _ = submit(client, path, f"{path}/accept", {"reason": ""})
    assert answer.status_code == 303
    assert build.count(Enrolment, Enrolment.programme_id == scene.programme.id,
                       Enrolment.provider_id == scene.newcomer.id) == 1
    text = visible_text(client.get(answer.location))
    assert "已同意申请" in text
    assert "没有等待处理的申请。" in text


def test_refusing_needs_a_reason_and_records_it(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}/applications/{scene.application_id}"
    answer, _ = submit(client, path, f"{path}/refuse", {"reason": ""}, form_index=1)
    assert answer.status_code == 422
    assert "请填写这一项。" in visible_text(answer)
    answer, _ = submit(client, path, f"{path}/refuse", {"reason": "本项目助餐机构已经足够"}, form_index=1)
    assert answer.status_code == 303
    row = build.read(lambda: db.session.get(ProgrammeApplication, scene.application_id))
    assert (row.status, row.reason) == ("refused", "本项目助餐机构已经足够")


def test_an_application_someone_decided_first_says_so(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}/applications/{scene.application_id}"
    page = client.get(path).get_data(as_text=True)
    other = build.admin()
    build.run(lambda: applications.refuse(application_id=scene.application_id, reason="名额已满",
                                          actor=db.session.get(User, other.id), now=build.now()))
    answer = client.post(f"{path}/accept", data={"csrf_token": csrf_from(page),
                                                 "form_key": FORM_KEY_RE.findall(page)[0]})
    assert answer.status_code == 409
    text = visible_text(answer)
    assert "另一位工作人员已经先处理了这份申请" in text
    assert "已拒绝" in text
    assert "名额已满" in text
    assert other.username in text
    assert build.count(Enrolment, Enrolment.provider_id == scene.newcomer.id) == 0


def test_an_accept_refused_by_enrolment_suggests_refusing_with_the_reason(build, client, scene):
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}/applications/{scene.application_id}"
    page = client.get(path).get_data(as_text=True)
    build.set_provider_status(scene.newcomer, "suspend")
    answer = client.post(f"{path}/accept", data={"csrf_token": csrf_from(page),
                                                 "form_key": FORM_KEY_RE.findall(page)[0]})
    assert answer.status_code == 409
    text = visible_text(answer)
    assert "服务机构还没有通过审核或已被暂停" in text
    assert "建议选择“不同意”" in text
    assert f"{path}/accept" not in answer.get_data(as_text=True)  # only the refusal is offered now
    assert build.read(lambda: db.session.get(ProgrammeApplication, scene.application_id).status) == "pending"


def test_an_application_of_another_programme_is_not_found_here(build, client, scene):
    other = build.programme(items=[scene.world.meal], name="另一个项目")
    log_in(client, build.admin())
    assert client.get(f"/staff/programmes/{other.id}/applications/{scene.application_id}").status_code == 404


def test_the_tables_export_as_csv_with_chinese_headers_and_neutralised_names(build, client, scene):
    hostile = build.provider(items=[scene.world.meal, scene.world.bath], enrol_in=[scene.programme],
                             name='=HYPERLINK("x")服务社')
    build.choose(scene.world.alice, scene.programme, scene.world.bath, hostile)
    log_in(client, build.admin())
    path = f"/staff/programmes/{scene.programme.id}"
    answer = client.get(f"{path}/providers.csv")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    body = answer.get_data(as_text=True)
    assert body.startswith("\ufeff服务机构编号,服务机构,类型,服务次数,政府支付（元）")
    spent = sum(r.face_value_fen for r in scene.served)
    assert f"{scene.world.p1.name},社会组织,2,{spent // 100}.{spent % 100:02d}" in body
    choices = client.get(f"{path}/choices.csv").get_data(as_text=True)
    assert "'=HYPERLINK" in choices
    workbook = load_workbook(io.BytesIO(client.get(f"{path}/items.xlsx").get_data()))
    rows = list(workbook.active.iter_rows(values_only=True))
    assert rows[0] == ("服务项目编码", "服务项目", "服务次数", "政府支付（元）")
    assert rows[1][1:3] == ("助餐", 2)
