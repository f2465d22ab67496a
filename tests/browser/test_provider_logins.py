"""A provider's staff logins in a real browser, on both databases: the manager adds a staff login, the
staff logs in and works but cannot manage logins (no link, 403), the manager deactivates it and the
staff's open session ends on its next click. check_page (axe WCAG 2.2 AA, no console error, nothing
from another origin) on every page at phone and desk widths."""

import re

from tests.browser.harness import check_page, each_width, log_in, shoot, watched

STAFF, STAFF_PASSWORD = "wang.fang", "door-to-door scanning 7"
PASSWORD_LABEL = re.compile("^密码")  # not 再输入一次密码


def _check(page, name: str | None = None) -> None:
    for _width in each_width(page):
        check_page(page)
    if name:
        shoot(page, name)


def test_the_manager_adds_and_deactivates_a_staff_login(page, build, new_context, live_server):
    world = build.world()
    manager = world.p1.user

    log_in(page, manager)
    page.get_by_role("navigation").get_by_role("link", name="工作人员账号").click()
    assert page.url.endswith("/provider/logins")
    _check(page, "provider-logins")

    # A mistyped second password: the form again, the message beside the field.
    page.get_by_label("用户名").fill(STAFF)
    page.get_by_label(PASSWORD_LABEL).fill(STAFF_PASSWORD)
    page.get_by_label("再输入一次密码").fill("something else 9")
    with page.expect_navigation():
        page.get_by_role("button", name="添加账号").click()
    assert page.locator("#error-password_again").is_visible()
    watched(page).clear()  # the browser logs the 422 of the refused form itself
    _check(page, "provider-logins-refused")

    page.get_by_label(PASSWORD_LABEL).fill(STAFF_PASSWORD)
    page.get_by_label("再输入一次密码").fill(STAFF_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="添加账号").click()
    assert page.url.endswith("/provider/logins")
    assert page.get_by_role("status").filter(has_text=STAFF).is_visible()
    assert page.get_by_role("heading", name=STAFF).is_visible()
    with page.expect_navigation():
        page.get_by_role("button", name="退出登录").click()

    # The staff login works: its home (and the scan page, once built), but not the logins.
    log_in(page, STAFF, STAFF_PASSWORD)
    assert page.url.endswith("/provider")
    nav = page.get_by_role("navigation")
    assert nav.get_by_role("link", name="今天").is_visible()
    assert nav.get_by_role("link", name="工作人员账号").count() == 0
    if nav.get_by_role("link", name="扫码核销").count():
        assert page.goto("/provider/scan").status == 200
    refused = page.goto("/provider/logins")
    assert refused.status == 403
    assert page.get_by_role("heading", name="没有权限").is_visible()
    watched(page).clear()  # the browser logs the 403 itself
    _check(page)
    page.goto("/provider")

    # Meanwhile, in the office, the manager deactivates it with a reason after a confirmation.
    office = new_context().new_page()
    log_in(office, manager)
    office.goto("/provider/logins")
    office.get_by_role("link", name=f"停用 {STAFF}").click()
    assert "马上退出登录" in office.locator("main").inner_text()
    _check(office, "provider-logins-deactivate")
    office.get_by_label("原因").fill("已离职")
    with office.expect_navigation():
        office.get_by_role("button", name="确认停用").click()
    assert office.url.endswith("/provider/logins")
    card = office.locator(".card").filter(has=office.get_by_role("heading", name=STAFF))
    assert "已停用" in card.inner_text()
    _check(office, "provider-logins-deactivated")

    # The staff's open page: its next click lands on the login form.
    with page.expect_navigation():
        page.get_by_role("navigation").get_by_role("link", name="今天").click()
    assert "/login" in page.url
    assert page.get_by_label("用户名").is_visible()
    assert log_in(page, STAFF, STAFF_PASSWORD).url.endswith("/login")
