"""A provider's first day, end to end, on a 360 px phone in a real browser, on both databases (issue [4/7]).

A social organisation registers itself in the browser; the bureau approves it through the API; its manager
logs in and is told; it applies to join the programme and the bureau accepts (API); two recipients choose
it. At the door the manager scans alice's presence QR through Chromium's fake camera (a video of the real
code), picks the meal, confirms and sees the co-payment to collect; types bob's short code instead of
scanning, double-clicks confirm and reloads the receipt (one redemption); is refused, in one sentence, for a
recipient who chose someone else; reverses bob's service with a reason. The bureau drafts the month's
settlement (API); the manager opens it and downloads both statements. The manager adds a scanning staff
login; the staff member scans but cannot manage logins. Every page passes check_page (axe WCAG 2.2 AA, no
console error, nothing from another origin) at phone and desk widths.
"""

import csv
import io
import re

import openpyxl
from sqlalchemy import select

from marketplace.db import db
from providers.models import Provider
from tests.browser.harness import check_page, each_width, log_in, shoot, watched
from tests.browser.test_provider_registration import PASSWORD as REGISTERED_PASSWORD
from tests.browser.test_provider_registration import register_in_browser
from tests.browser.test_provider_settlements import open_settlement_and_download
from tests.conftest import PASSWORD
from tests.support.fake_camera import camera_context, fake_camera_browser, presence_qr_y4m
from vouchers.models import Redemption

API = "/api/v1"
PHONE = {"width": 360, "height": 780}
RECEIPT = re.compile(r".*/provider/receipts/\d+$")
NAME = "蒲江县鹤山街道暖阳助餐服务社"


def _checked(page, name: str) -> None:
    for _width in each_width(page):
        check_page(page)
    shoot(page, name)


def _redemptions(build, provider_id: int) -> list[Redemption]:
    return build.read(lambda: db.session.scalars(
        select(Redemption).where(Redemption.provider_id == provider_id).order_by(Redemption.id)).all())


def _api(client, method: str, path: str, headers: dict, json: dict | None = None):
    response = client.open(f"{API}{path}", method=method, json=json, headers=headers)
    assert response.status_code < 300, (path, response.status_code, response.get_json())
    return response.get_json()


def _log_out(page) -> None:
    """Log out with the header's button: the session dies on the server (clearing the browser's cookies could
    race a late response that sets the cookie again)."""
    with page.expect_navigation():
        page.get_by_role("button", name="退出登录").click()


def _typed(page, code: str) -> None:
    page.goto("/provider/scan")
    page.get_by_label(re.compile("8 位数字码")).fill(code)
    with page.expect_navigation():
        page.get_by_role("button", name="下一步").click()


def test_a_provider_registers_is_approved_and_does_a_days_work_on_a_phone(
        playwright, page, live_server, build, client, tmp_path):
    world = build.world()
    carol = build.recipient(name="赵桂兰")
    build.issue(world.programme, build.period())
    admin = build.admin()
    as_admin = build.headers(admin)

    # Registration, on a phone.
    page.set_viewport_size(PHONE)
    landed = register_in_browser(page, name=NAME, items=("助餐",), username="nuanyang")
    assert landed.url.endswith("/provider/status")
    assert "待审核" in page.inner_text("main")
    _checked(page, "day-registered")

    # The bureau approves it (API); the manager's next login says so.
    provider_id = build.read(lambda: db.session.scalar(select(Provider.id).where(Provider.name == NAME)))
    _api(client, "POST", f"/providers/{provider_id}/approve", as_admin, {"reason": "材料齐全，同意准入"})
    _log_out(page)
    page.goto("/login")
    page.get_by_label("用户名").fill("nuanyang")
    page.get_by_label("密码").fill(REGISTERED_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="登录").click()
    assert "材料齐全，同意准入" in page.inner_text("main")

    # It applies to join the programme; the bureau accepts (API).
    page.goto("/provider/programmes")
    _checked(page, "day-programmes")
    page.get_by_role("link", name=re.compile("申请加入")).first.click()
    with page.expect_navigation():
        page.get_by_role("button", name="提交申请").click()
    [application] = _api(client, "GET", f"/programme-applications?provider_id={provider_id}", as_admin)["items"]
    _api(client, "POST", f"/programme-applications/{application['id']}/accept", as_admin, {"reason": "同意"})

    # Recipients choose it; a third chose the other provider.
    for recipient, provider in ((world.alice, provider_id), (world.bob, provider_id), (carol, world.p1.id)):
        build.choose(recipient, world.programme, world.meal, provider)

    # At alice's door: the camera reads her presence code.
    video = presence_qr_y4m(build.presence_code(world.alice)["token"], tmp_path / "alice.y4m")
    with fake_camera_browser(playwright, video) as browser:
        context = camera_context(browser, live_server.url, viewport=PHONE)
        door = context.new_page()
        log_in(door, "nuanyang", REGISTERED_PASSWORD)
        door.goto("/provider/scan")
        door.get_by_role("heading", name="确认服务").wait_for()
        _checked(door, "day-offer")
        with door.expect_navigation(url=RECEIPT):
            door.get_by_role("button", name="确认核销").click()
        assert "请向老人收取" in door.inner_text("main")
        _checked(door, "day-receipt")
        context.close()
    [alices] = _redemptions(build, provider_id)
    assert (alices.recipient_id, alices.presence) == (world.alice.id, "presence_code")

    # At bob's: the short code typed; confirm double-clicked, the receipt reloaded — one redemption.
    page.set_viewport_size(PHONE)
    _typed(page, build.presence_code(world.bob)["short_code"])
    page.get_by_role("heading", name="确认服务").wait_for()
    with page.expect_navigation(url=RECEIPT):
        page.get_by_role("button", name="确认核销").dblclick()
    receipt = page.url
    page.reload()
    assert page.url == receipt
    assert [r.recipient_id for r in _redemptions(build, provider_id)] == [world.alice.id, world.bob.id]

    # carol chose someone else: one clear sentence, nothing redeemed.
    _typed(page, build.presence_code(carol)["short_code"])
    assert "这位老人选的是别的服务机构" in page.inner_text("main")
    assert len(_redemptions(build, provider_id)) == 2
    watched(page).clear()  # the refusal is a 403 page, and Chromium logs that it was one: expected
    _checked(page, "day-refused")

    # bob's service is reversed, with a reason, after the confirmation.
    bobs = _redemptions(build, provider_id)[1]
    page.goto("/provider")
    page.locator(f"#redemption-{bobs.id}").get_by_role("link", name="撤销").click()
    assert "退还" in page.inner_text("main")
    _checked(page, "day-reverse")
    page.get_by_label("为什么撤销？").fill("老人临时住院，未能上门服务")
    with page.expect_navigation():
        page.get_by_role("button", name="确认撤销").click()
    assert [r.status for r in _redemptions(build, provider_id)] == ["completed", "reversed"]
    _checked(page, "day-home")

    # The bureau drafts the month's settlement (API); the manager opens it and downloads both statements.
    drafted = _api(client, "POST", f"/programmes/{world.programme.id}/settlements", as_admin,
                   {"period": build.period()})["items"]
    [settlement] = [s for s in drafted if s["provider_id"] == provider_id]
    page.goto("/provider/settlements")
    _checked(page, "day-settlements")
    statements = open_settlement_and_download(page, settlement["id"])
    shoot(page, "day-settlement")
    rows = list(csv.reader(io.StringIO(statements["csv"].read_text(encoding="utf-8-sig"))))
    assert rows[0][0] == "核销编号"
    assert [row[0] for row in rows[1:] if row and row[0].isdigit()] == [str(alices.id)]  # bob's was reversed
    sheet = openpyxl.load_workbook(io.BytesIO(statements["xlsx"].read_bytes()), read_only=True).active
    assert [row[0] for row in sheet.iter_rows(min_row=2, values_only=True) if row and isinstance(row[0], int)] == [
        alices.id]

    # The manager adds a scanning staff login; the staff member scans but does not manage logins.
    page.goto("/provider/logins")
    _checked(page, "day-logins")
    page.get_by_label("用户名").fill("nuanyang-zhang")
    page.get_by_label(re.compile(r"^密码")).fill(PASSWORD)
    page.get_by_label("再输入一次密码").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="添加账号").click()
    _log_out(page)
    log_in(page, "nuanyang-zhang")
    navigation = page.get_by_role("navigation").inner_text()
    assert "扫码核销" in navigation
    assert "工作人员账号" not in navigation
    assert page.goto("/provider/scan").status == 200
    assert page.goto("/provider/logins").status == 403
