"""The provider's settlements in the console (/provider/settlements…), on both databases: its own only,
newest period first, with the figures each holds; the score worked out with those very numbers; the
services of the month left out and why; the statements as CSV and XLSX; another provider's → 404."""

import csv
import io

import pytest
from openpyxl import load_workbook

from tests.conftest import PASSWORD
from tests.support.console import login_page, visible_text
from vouchers.serials import serial_for
from vouchers.service import settlement_view
from vouchers.statements import HEADERS


@pytest.fixture
def full(build):
    """The full scenario, and a settlement of this month for p1 as well (its newest)."""
    scene = build.full_scenario()
    newest = build.settle(scene.programme, build.period(0))
    assert len(newest) == 1
    return scene, newest[0]


def _staff_of(build, client, provider):
    """Log *client* in as a scanning staff login of *provider* (not its manager)."""
    staff = build.user(role="provider", provider_id=provider.id)
    assert login_page(client, staff.username, PASSWORD).status_code == 302
    return staff


def test_the_list_shows_only_its_own_settlements_newest_first_with_their_figures(build, client, full):
    scene, newest = full
    p1 = scene.providers[0]
    _staff_of(build, client, p1)
    answer = client.get("/provider/settlements")
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    text = visible_text(answer)
    this_month, last_month = build.settlement(newest), build.settlement(scene.paid)
    # Newest period first: this month's settlement, then last month's.
    assert body.index(f"/provider/settlements/{newest}") < body.index(f"/provider/settlements/{scene.paid}")
    assert f"/provider/settlements/{scene.approved}" not in body
    assert f"/provider/settlements/{scene.draft}" not in body
    # Last month's, paid: 3 meals at ¥11.75 and a bath at ¥39.99; score 94, paid in full.
    assert last_month.gross_fen == 3 * 1175 + 3999 == last_month.net_fen
    assert "服务次数 4 次 服务金额 ¥75.24 考核得分 94 分 支付比例 100% 应付金额 ¥75.24" in text
    assert "已支付" in text
    assert "国库集中支付-全流程-001" in text
    assert this_month.status == "draft"
    assert "草稿" in text
    assert "蒲江县居家养老服务券（全流程）" in text
    assert "最低一档" not in text


def test_an_approved_settlement_in_the_lowest_band_says_so_plainly(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[1])
    text = visible_text(client.get("/provider/settlements"))
    assert "已审核" in text
    assert "已支付" not in text
    assert "服务金额 ¥57.38 考核得分 45 分 支付比例 60% 应付金额 ¥34.42" in text
    assert "得分在最低一档：民政部门会据此考虑是否解除服务协议。" in text
    detail = visible_text(client.get(f"/provider/settlements/{scene.approved}"))
    assert "这次考核得分在最低一档" in detail
    assert "下一步：民政部门付款" in detail


def test_the_detail_works_the_score_out_with_an_evaluation(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[1])
    answer = client.get(f"/provider/settlements/{scene.approved}")
    assert answer.status_code == 200
    text = visible_text(answer)
    # One bath rated 2 → S 25; no upheld complaint → K 100; the evaluation 40.
    assert "得分 = 0.5 × S + 0.2 × K + 0.3 × E" in text
    assert "有 1 次老人打了分，平均 2 分（满分 5 分）" in text
    assert "（2 − 1）÷ 4 × 100 = 25" in text
    assert "这个月没有查实（成立）的投诉，所以 K = 100。" in text
    assert "E = 40" in text
    assert "得分 = 0.5 × 25 + 0.2 × 100 + 0.3 × 40 = 44.5，四舍五入为 45 分。" in text
    assert "0 到 59 分：付服务金额的 60% ← 这次在这一档" in text
    assert "60 到 79 分：付服务金额的 85%" in text
    assert "80 分及以上：付服务金额的 100%" in text
    assert "应付金额 = 服务金额 × 支付比例 = ¥57.38 × 60% = ¥34.42（不足一分的零头不计）" in text
    assert "比服务金额少付 ¥22.96" in text
    assert "另一位工作人员审核通过" in text


def test_the_detail_lists_its_lines_and_the_score_from_ratings(build, client, full):
    scene, _newest = full
    p1 = scene.providers[0]
    _staff_of(build, client, p1)
    answer = client.get(f"/provider/settlements/{scene.paid}")
    text = visible_text(answer)
    # Three of its four services rated 5, 4, 5: mean 14/3, S 91.67, score 94.17 → 94.
    assert "有 3 次老人打了分，平均 约 4.67 分" in text
    assert "= 约 91.67" in text
    assert "得分 = 0.7 × 约 91.67 + 0.3 × 100 = 约 94.17，四舍五入为 94 分。" in text
    assert "80 分及以上：付服务金额的 100% ← 这次在这一档" in text
    assert "（不足一分的零头不计）" not in text
    assert "少付" not in text
    assert "服务明细（共 4 次）" in text
    lines = build.redemptions()
    mine = [line for line in lines if line.settlement_id == scene.paid]
    assert len(mine) == 4
    for line in mine:
        assert serial_for(line.voucher_id) in text
    assert text.count("¥11.75") == 3
    assert "¥39.99" in text
    assert "已付款，付款凭证号 国库集中支付-全流程-001。" in text
    # No recipient is named on the page.
    assert not any(recipient.name in text for recipient in scene.recipients)


def test_a_draft_says_what_happens_next(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[2])
    text = visible_text(client.get(f"/provider/settlements/{scene.draft}"))
    assert "草稿" in text
    assert "下一步：另一位工作人员审核" in text
    # One meal of two rated 3 → S 50; 0.7 × 50 + 0.3 × 100 = 65 → 85 %.
    assert "得分 = 0.7 × 50 + 0.3 × 100 = 65，四舍五入为 65 分。" in text
    assert "60 到 79 分：付服务金额的 85% ← 这次在这一档" in text
    assert "¥19.78 × 85% = ¥16.81" in text


def test_services_held_by_an_open_complaint_are_shown_with_the_reason(build, client):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    upheld, held, plain = (build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, day))
                           for day in (3, 10, 17))
    build.resolve(build.complain(world.p1, redemption=upheld), upheld=True)
    build.complain(world.p1, redemption=held)
    settled = build.settle(world.programme, build.period(-1))
    assert len(settled) == 1
    assert build.settlement(settled[0]).redemptions_count == 2
    _staff_of(build, client, world.p1)
    text = visible_text(client.get(f"/provider/settlements/{settled[0]}"))
    assert "服务明细（共 2 次）" in text
    assert "这个月没有算进这次结算的服务（1 次）" in text
    assert "有投诉正在处理：处理完以后再结算" in text
    # Nobody rated anything: S is 75; one upheld complaint in 2 services is 50 per 100 → K 0, not −400.
    assert "这次结算的服务都还没有老人打分" in text
    assert "S = 75" in text
    assert "100 − 10 × 1 ÷ 2 × 100 = −400，低于 0 分，所以 K = 0。" in text
    assert "得分 = 0.7 × 75 + 0.3 × 0 = 52.5，四舍五入为 53 分。" in text
    assert serial_for(build.redemption(held.id).voucher_id) not in text  # held: not a line of the settlement
    assert serial_for(build.redemption(plain.id).voucher_id) in text


def test_an_upheld_complaint_takes_its_share_off_k(build, client):
    meal = build.item()
    programme = build.programme(items=[meal])  # a meal a day
    provider = build.provider(items=[meal], enrol_in=[programme])
    elder = build.recipient()
    build.issue(programme, build.period(-1))
    served = build.serve(provider, [elder], programme, meal,
                         delivered_at=[build.in_month(-1, day) for day in range(1, 21)])
    build.resolve(build.complain(provider, redemption=served[4]), upheld=True)
    settled = build.settle(programme, build.period(-1))
    _staff_of(build, client, provider)
    text = visible_text(client.get(f"/provider/settlements/{settled[0]}"))
    assert "这个月查实（成立）的投诉 1 件" in text
    assert "K = 100 − 10 × 1 ÷ 20 × 100 = 50。" in text
    assert "得分 = 0.7 × 75 + 0.3 × 50 = 67.5，四舍五入为 68 分。" in text
    assert "0 到 79 分：付服务金额的 60% ← 这次在这一档" in text


def test_the_lines_come_a_page_at_a_time(build, client, full, monkeypatch):
    scene, _newest = full
    monkeypatch.setattr(settlement_view, "LINES_PER_PAGE", 3)
    _staff_of(build, client, scene.providers[0])
    first = client.get(f"/provider/settlements/{scene.paid}")
    second = client.get(f"/provider/settlements/{scene.paid}?page=2")
    assert first.status_code == second.status_code == 200
    assert "第 1 页，共 2 页" in visible_text(first)
    assert "第 2 页，共 2 页" in visible_text(second)
    serials = {serial_for(line.voucher_id) for line in build.redemptions() if line.settlement_id == scene.paid}
    on_first = {serial for serial in serials if serial in first.get_data(as_text=True)}
    on_second = {serial for serial in serials if serial in second.get_data(as_text=True)}
    assert len(on_first) == 3
    assert len(on_second) == 1
    assert on_first | on_second == serials
    for page in ("3", "0", "-1", str(10**30)):
        assert client.get(f"/provider/settlements/{scene.paid}?page={page}").status_code == 404, page
        assert client.get(f"/provider/settlements?page={page}").status_code == 404, page


def test_the_csv_statement(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[0])
    answer = client.get(f"/provider/settlements/{scene.paid}/statement.csv")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    assert f"settlement-{build.period(-1)}-{scene.paid}.csv" in answer.headers["Content-Disposition"]
    raw = answer.get_data()
    answer.close()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == HEADERS
    lines = [row for row in rows[1:] if row and row[0].isdigit()]
    assert len(lines) == 4
    assert sorted(row[4] for row in lines) == ["11.75", "11.75", "11.75", "39.99"]
    assert ["应付金额（元）", "75.24"] in rows


def test_the_xlsx_statement(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[1])
    answer = client.get(f"/provider/settlements/{scene.approved}/statement.xlsx")
    assert answer.status_code == 200
    assert answer.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert f"settlement-{build.period(-1)}-{scene.approved}.xlsx" in answer.headers["Content-Disposition"]
    content = answer.get_data()
    answer.close()
    sheet = load_workbook(io.BytesIO(content)).active
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADERS
    assert len([row for row in rows[1:] if isinstance(row[0], int)]) == 2
    assert rows[-3][:2] == ["绩效得分", 45]
    assert rows[-1][:2] == ["应付金额（元）", "34.42"]


def test_another_providers_settlement_does_not_exist(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[0])
    for path in (f"/provider/settlements/{scene.approved}", f"/provider/settlements/{scene.approved}/statement.csv",
                 f"/provider/settlements/{scene.draft}/statement.xlsx", "/provider/settlements/999999"):
        answer = client.get(path)
        answer.close()
        assert answer.status_code == 404, path
        assert answer.mimetype == "text/html"  # the console's error page, never JSON
        assert "蒲江县" not in visible_text(answer)


def test_only_provider_logins_open_the_settlements(build, client, full):
    scene, _newest = full
    assert client.get("/provider/settlements").status_code == 302  # to the login
    login_page(client, scene.recipients[0].user.username, PASSWORD)
    assert client.get("/provider/settlements").status_code == 403
    assert client.get(f"/provider/settlements/{scene.paid}/statement.csv").status_code == 403


def test_a_provider_with_no_settlement_is_told_when_they_come(build, client):
    world = build.world()
    _staff_of(build, client, world.p1)
    text = visible_text(client.get("/provider/settlements"))
    assert "还没有结算" in text
    assert client.get("/provider/settlements?page=2").status_code == 404


def test_the_explanation_gives_the_stored_score_for_every_settlement(build, full):
    """The page redoes the formula from the stored parts: it must land on the score each settlement holds."""
    scene, newest = full
    from marketplace.programmes.models import Programme

    for settlement_id in (scene.paid, scene.approved, scene.draft, newest):
        def explain(settlement_id=settlement_id):
            from marketplace.db import db
            from vouchers.models import Settlement

            settlement = db.session.get(Settlement, settlement_id)
            return settlement_view.explain_score(settlement, db.session.get(Programme, settlement.programme_id))

        explained = build.read(explain)
        assert explained.confirmed, settlement_id
        assert explained.bands_confirmed, settlement_id


def test_the_statements_are_sent_with_their_length(build, client, full):
    scene, _newest = full
    _staff_of(build, client, scene.providers[0])
    for suffix in ("csv", "xlsx"):
        answer = client.get(f"/provider/settlements/{scene.paid}/statement.{suffix}")
        body = answer.get_data()
        answer.close()
        assert answer.status_code == 200
        assert int(answer.headers["Content-Length"]) == len(body) > 0
