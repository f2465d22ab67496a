"""A provider registers itself in a real browser at 360 px, on both databases: the credit code is checked as
it is typed, the form lands on the pending status page, and every page passes check_page at each width.

`register_in_browser(page, …)` fills and posts the form like a person; the end-to-end test reuses it.
"""

import re

from marketplace.demo import demo_credit_code
from tests.browser.harness import WIDTHS, check_page, each_width, shoot, watched

PASSWORD = "three quiet rivers meet"


def register_in_browser(page, *, name: str = "蒲江县寿安镇长乐养老服务中心", kind: str = "社会组织",
                        credit_code: str | None = None, legal_representative: str = "欧阳秀兰",
                        phone: str = "13800001234", address: str = "四川省成都市蒲江县寿安镇长乐路8号",
                        regions: tuple[str, ...] = ("510131",), items: tuple[str, ...] = ("助餐",),
                        capacity: int = 300, username: str = "changle", password: str = PASSWORD):
    """Open /provider/register, fill every field as a person would (the credit code typed key by key, its
    check awaited), submit; return the response of the page it lands on (/provider/status when it worked).

    *regions* are region codes as listed, *items* the catalogue names shown, *kind* the kind's Chinese word.
    """
    credit_code = credit_code or demo_credit_code("52", "MR000001")
    page.goto("/provider/register")
    page.get_by_label("机构名称").fill(name)
    page.get_by_role("radio", name=kind).check()
    code = page.get_by_label("统一社会信用代码")
    code.press_sequentially(credit_code)
    page.locator("#credit-code-check").get_by_text(re.compile(r"代码格式正确|统一社会信用代码|第 \d")).wait_for()
    page.get_by_label("法定代表人").fill(legal_representative)
    page.get_by_label("联系电话").fill(phone)
    page.get_by_label(re.compile(r"^地址")).fill(address)
    for region in regions:
        page.get_by_role("group", name=re.compile("服务的地区")).get_by_role(
            "checkbox", name=re.compile(region)).check()
    for item in items:
        page.get_by_role("group", name=re.compile("提供的服务项目")).get_by_role("checkbox", name=item).check()
    page.get_by_label("每月能提供的服务次数").fill(str(capacity))
    page.get_by_label("用户名").fill(username)
    page.get_by_label(re.compile(r"^密码")).fill(password)
    page.get_by_label("再输入一次密码").fill(password)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="提交注册申请").click()
    return navigation.value


def test_register_at_360px_with_the_typed_credit_code_check_and_land_on_the_pending_page(page, build):
    build.world()
    page.set_viewport_size(WIDTHS["phone"])
    page.goto("/provider/register")
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-register")

    code = page.get_by_label("统一社会信用代码")
    good = demo_credit_code("52", "MR000001")
    code.press_sequentially(good[:10])
    check = page.locator("#credit-code-check")
    check.get_by_text("统一社会信用代码是 18 位，现在是 10 位。").wait_for()
    code.press_sequentially(good[10:17] + ("0" if good[17] != "0" else "1"))
    check.get_by_text("最后一位是校验码，和前 17 位对不上，请逐位核对。").wait_for()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-register-typed-check")

    landed = register_in_browser(page)
    assert landed.status == 200
    assert page.url.endswith("/provider/status")
    assert page.get_by_role("heading", name="注册申请已提交，正在等待审核").is_visible()
    assert page.get_by_text("待审核", exact=True).is_visible()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-status-pending")


def test_a_refused_form_shows_each_message_beside_its_field(page, build):
    build.world()
    page.set_viewport_size(WIDTHS["phone"])
    landed = register_in_browser(page, credit_code="52510131MR0000018X", phone="12345", password="short one")
    assert landed.status == 422
    watched(page).clear()  # the browser logs the 422 it was expected to get
    assert page.url.endswith("/provider/register")
    summary = page.get_by_role("alert")
    assert summary.get_by_role("link", name=re.compile("第 9 到 17 位是组织机构代码")).is_visible()
    assert summary.get_by_role("link", name=re.compile("请填写 11 位手机号码")).is_visible()
    assert summary.get_by_role("link", name="密码至少要 10 个字符。").is_visible()
    assert page.get_by_label("统一社会信用代码").get_attribute("aria-invalid") == "true"
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-register-refused")


def test_the_form_works_without_javascript(new_context, build):
    build.world()
    context = new_context(java_script_enabled=False, viewport=WIDTHS["phone"])
    page = context.new_page()
    page.goto("/provider/register")
    page.get_by_label("机构名称").fill("蒲江县寿安镇长乐养老服务中心")
    page.get_by_role("radio", name="企业").check()
    page.get_by_label("统一社会信用代码").fill(demo_credit_code("91", "MR000003"))
    page.get_by_label("法定代表人").fill("欧阳秀兰")
    page.get_by_label("联系电话").fill("028-88551234")
    page.get_by_label(re.compile(r"^地址")).fill("四川省成都市蒲江县寿安镇长乐路8号")
    page.get_by_role("checkbox", name=re.compile("510131")).check()
    page.get_by_role("checkbox", name="助浴").check()
    page.get_by_label("每月能提供的服务次数").fill("120")
    page.get_by_label("用户名").fill("nojs-provider")
    page.get_by_label(re.compile(r"^密码")).fill(PASSWORD)
    page.get_by_label("再输入一次密码").fill(PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="提交注册申请").click()
    assert page.url.endswith("/provider/status")
    assert page.get_by_text("企业").first.is_visible()
