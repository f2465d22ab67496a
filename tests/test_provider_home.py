"""The provider staff's home /provider: today's and this month's figures, the list of its redemptions
(filters, paging), reversal with its confirmation, and the CSV/XLSX exports (both databases)."""

import csv
import io
import re
from datetime import timedelta

import openpyxl

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from vouchers.serials import serial_for
from vouchers.service import redemption as redemption_service
from vouchers.service import workday


def test_today_the_month_and_the_latest_services_of_this_provider_only(build, client):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    build.redeem(world.p1, world.alice, world.meal)
    build.redeem(world.p1, world.alice, world.meal)
    build.redeem(world.p2, world.bob, world.meal)
    staff = build.user(role="provider", provider_id=world.p1.id)
    answer = login_page(client, staff.username, PASSWORD)
    assert answer.location == "/provider"
    text = visible_text(client.get("/provider"))
    assert "今天完成的服务 2 次" in text
    assert "本月完成的服务 2 次" in text
    assert text.count("助餐") >= 2
    assert "李桂英" not in text  # no names on the list


def test_a_reversed_service_is_shown_as_such_and_leaves_the_totals(build, client):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    build.reverse(served)
    staff = build.user(role="provider", provider_id=world.p1.id)
    login_page(client, staff.username, PASSWORD)
    text = visible_text(client.get("/provider"))
    assert "今天完成的服务 0 次" in text
    assert "已撤销" in text


def test_only_provider_staff_open_it(build, client):
    world = build.world()
    login_page(client, world.alice.user.username, PASSWORD)
    assert client.get("/provider").status_code == 403


def test_a_provider_that_may_not_serve_is_told_so_and_still_sees_its_work(build, client):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    staff = _staff_of(build, world.p1)
    login_page(client, staff.username, PASSWORD)
    assert "审核状态" not in visible_text(client.get("/provider"))
    build.set_provider_status(world.p1, "suspend")
    page = client.get("/provider")
    assert page.status_code == 200
    assert "您的服务机构已被暂停服务" in visible_text(page)
    assert 'href="/provider/status"' in page.get_data(as_text=True)
    assert served.id in _listed(client)


# --- the list of redemptions: filters, paging ------------------------------------------------------------

def _served_over_two_months(build):
    """alice served by p1: a meal last month, a meal and a bath this month; bob by p2 (not p1's)."""
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.alice, world.programme, world.bath, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    earlier = build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, 3, hour=10))
    meal = build.redeem(world.p1, world.alice, world.meal)
    bath = build.redeem(world.p1, world.alice, world.bath)
    theirs = build.redeem(world.p2, world.bob, world.meal)
    return world, earlier, meal, bath, theirs


def _listed(client, address: str = "/provider") -> set[int]:
    page = client.get(address).get_data(as_text=True)
    return {int(found) for found in re.findall(r'id="redemption-(\d+)"', page)}


def _staff_of(build, provider):
    staff = build.user(role="provider", provider_id=provider.id)
    return staff


def test_the_list_shows_this_month_by_default_and_filters_by_item_and_dates(build, client):
    world, earlier, meal, bath, theirs = _served_over_two_months(build)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    assert _listed(client) == {meal.id, bath.id}
    assert _listed(client, f"/provider?item={world.bath}") == {bath.id}
    last_month = f"from={build.first_day(-1).isoformat()}&to={build.last_day(-1).isoformat()}"
    assert _listed(client, f"/provider?{last_month}") == {earlier.id}
    assert _listed(client, f"/provider?{last_month}&item={world.bath}") == set()
    text = visible_text(client.get(f"/provider?{last_month}"))
    assert serial_for(earlier.voucher_id) in text
    assert "完成 1 次服务" in text
    assert "扫码" in text
    assert "李" not in text.replace("李桂英", "")  # neither the name nor a masked one on the list
    assert theirs.id not in _listed(client, f"/provider?from={build.first_day(-1).isoformat()}")


def test_a_filter_that_makes_no_sense_is_refused_beside_its_field(build, client):
    world, *_rest = _served_over_two_months(build)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    backwards = client.get(f"/provider?from={build.today().isoformat()}&to={build.first_day(-1).isoformat()}")
    assert backwards.status_code == 422
    assert "结束日期不能早于开始日期" in visible_text(backwards)
    assert 'id="error-to"' in backwards.get_data(as_text=True)
    garbled = client.get("/provider?from=yesterday")
    assert garbled.status_code == 422
    assert "日期格式不对" in visible_text(garbled)
    assert client.get("/provider/redemptions.csv?from=yesterday").status_code == 422
    assert client.get("/provider?page=0").status_code == 422


def test_the_list_is_paged_newest_first(build, client, monkeypatch):
    monkeypatch.setattr(workday, "PER_PAGE", 2)
    world = build.world()
    build.issue(world.programme, build.period(0))
    served = build.serve(world.p1, [world.alice], world.programme, world.meal,
                         delivered_at=[build.now() - timedelta(minutes=10 * n) for n in range(4, 0, -1)])
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    first = client.get("/provider").get_data(as_text=True)
    assert [int(i) for i in re.findall(r'id="redemption-(\d+)"', first)] == [served[3].id, served[2].id]
    assert "page=2" in first
    assert "上一页" not in first
    second = client.get("/provider?page=2").get_data(as_text=True)
    assert [int(i) for i in re.findall(r'id="redemption-(\d+)"', second)] == [served[1].id, served[0].id]
    assert "上一页" in second
    assert "下一页" not in second


# --- reversal -----------------------------------------------------------------------------------------------

def _reverse_form(client, redemption_id: int, query: str = "") -> tuple[str, dict]:
    page = client.get(f"/provider/redemptions/{redemption_id}/reverse{query}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    fields = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', body))
    return body, fields


def test_the_confirmation_says_what_a_reversal_does_and_it_happens_once(build, client):
    world, _earlier, meal, _bath, _theirs = _served_over_two_months(build)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)
    assert f"/provider/redemptions/{meal.id}/reverse" in client.get("/provider").get_data(as_text=True)

    body, fields = _reverse_form(client, meal.id, f"?item={world.meal}")
    text = visible_text(client.get(f"/provider/redemptions/{meal.id}/reverse"))
    assert "服务券退回给老人" in text
    assert "政府不会为它付给您 ¥" in text
    assert "请把钱退还给老人" in text  # alice pays 5 % of a meal
    assert "撤销会被记录下来" in text
    assert "李*" in text
    assert "李桂英" not in text
    form = {**fields, "reason": "扫错了人"}
    first = client.post(f"/provider/redemptions/{meal.id}/reverse", data=form)
    again = client.post(f"/provider/redemptions/{meal.id}/reverse", data=form)  # a double tap

    assert first.status_code == again.status_code == 303
    assert first.location == again.location
    assert f"item={world.meal}" in first.location  # back to the list as it was filtered
    reversed_row = build.redemption(meal.id)
    assert reversed_row.status == "reversed"
    assert reversed_row.reversal_reason == "扫错了人"
    assert build.voucher(meal.voucher_id).status == "issued"
    assert build.count(AuditEvent, AuditEvent.action == "redemption.reversed") == 1
    listed = visible_text(client.get(first.location))
    assert listed.count("已撤销这次服务") == 1  # said once, however often the form was sent
    assert "已撤销 ：扫错了人" in listed


def test_a_reason_too_short_is_refused_beside_the_field_and_nothing_changes(build, client):
    world, _earlier, meal, _bath, _theirs = _served_over_two_months(build)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)
    _body, fields = _reverse_form(client, meal.id)

    refused = client.post(f"/provider/redemptions/{meal.id}/reverse", data={**fields, "reason": "错"})

    assert refused.status_code == 422
    assert 'id="error-reason"' in refused.get_data(as_text=True)
    assert "至少 2 个字" in visible_text(refused)
    assert build.redemption(meal.id).status == "completed"


def test_after_the_window_the_reversal_is_refused(build, client):
    world = build.world(reversal_window_hours=0)
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal, now=build.now() - timedelta(minutes=1))
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    assert f"/provider/redemptions/{served.id}/reverse" not in client.get("/provider").get_data(as_text=True)
    body, fields = _reverse_form(client, served.id)
    assert "已经过了可以撤销的时间" in visible_text(client.get(f"/provider/redemptions/{served.id}/reverse"))
    # A form left open from before the window closed is refused, the refusal beside its field.
    fields["form_key"] = "k" * 24
    refused = client.post(f"/provider/redemptions/{served.id}/reverse", data={**fields, "reason": "扫错了人"})
    assert refused.status_code == 409
    assert 'id="error-reason"' in refused.get_data(as_text=True)
    assert "已经过了可以撤销的时间" in visible_text(refused)
    assert build.redemption(served.id).status == "completed"


def test_a_settled_service_cannot_be_reversed(build, client):
    world, earlier, *_rest = _served_over_two_months(build)
    build.settle(world.programme, build.period(-1))
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    assert "已经结算" in visible_text(client.get(f"/provider/redemptions/{earlier.id}/reverse"))
    token = csrf_from(client.get("/provider").get_data(as_text=True))
    refused = client.post(f"/provider/redemptions/{earlier.id}/reverse",
                          data={"csrf_token": token, "form_key": "s" * 24, "reason": "扫错了人"})
    assert refused.status_code == 409
    assert "已经结算" in visible_text(refused)
    assert build.redemption(earlier.id).status == "completed"


def test_another_providers_redemption_is_not_found(build, client):
    world, _earlier, _meal, _bath, theirs = _served_over_two_months(build)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    assert client.get(f"/provider/redemptions/{theirs.id}/reverse").status_code == 404
    token = csrf_from(client.get("/provider").get_data(as_text=True))
    posted = client.post(f"/provider/redemptions/{theirs.id}/reverse",
                         data={"csrf_token": token, "form_key": "t" * 24, "reason": "扫错了人"})
    assert posted.status_code == 404
    assert build.redemption(theirs.id).status == "completed"


# --- exports ---------------------------------------------------------------------------------------------------

HYPERLINK = '=HYPERLINK("http://example.invalid/x","点此领取")'


def _noted(build, world):
    """p1 serves alice a meal this month with a note a spreadsheet would run as a formula."""
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)

    def scan():
        code = redemption_service.create_presence_code(recipient_id=world.alice.id, now=build.now())
        return redemption_service.redeem(actor=db.session.get(User, world.p1.user.id), now=build.now(),
                                         presence_token=code["token"], item_code=world.meal, notes=HYPERLINK).id

    return build.run(scan)


def test_the_csv_export_is_the_list_as_filtered_with_a_bom_and_chinese_headers(build, client):
    world, earlier, meal, bath, _theirs = _served_over_two_months(build)
    build.reverse(bath)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)
    assert "/provider/redemptions.csv?" in client.get("/provider").get_data(as_text=True)

    response = client.get("/provider/redemptions.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert rows[0][:4] == ["核销编号", "服务时间", "服务项目", "凭单编号"]
    by_id = {int(row[0]): row for row in rows[1:]}
    assert set(by_id) == {meal.id, bath.id}  # this month's, both statuses
    assert by_id[bath.id][7] == "已撤销"
    assert by_id[bath.id][8]
    assert by_id[meal.id][2] == "助餐"
    assert by_id[meal.id][3] == serial_for(meal.voucher_id)
    assert by_id[meal.id][5] == f"{meal.face_value_fen / 100:.2f}"
    last_month = f"from={build.first_day(-1).isoformat()}&to={build.last_day(-1).isoformat()}"
    again = client.get(f"/provider/redemptions.csv?{last_month}")
    assert [int(row[0]) for row in csv.reader(io.StringIO(again.data.decode("utf-8-sig")))
            if row and row[0].isdigit()] == [earlier.id]


def test_both_exports_neutralise_a_formula_in_the_notes(build, client):
    world = build.world()
    noted = _noted(build, world)
    login_page(client, _staff_of(build, world.p1).username, PASSWORD)

    rows = list(csv.reader(io.StringIO(client.get("/provider/redemptions.csv").data.decode("utf-8-sig"))))
    assert rows[1][0] == str(noted)
    assert rows[1][-1] == "'" + HYPERLINK

    response = client.get("/provider/redemptions.xlsx")
    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    data = response.data
    response.close()
    sheet = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    assert [cell.value for cell in sheet[1]][:2] == ["核销编号", "服务时间"]
    note = sheet.cell(row=2, column=len(rows[0]))
    assert note.value == "'" + HYPERLINK
    assert note.data_type == "s"
    assert sheet.cell(row=2, column=1).value == noted  # numbers stay numbers
