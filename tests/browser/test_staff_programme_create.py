"""Creating a programme in a real browser, on both databases: an admin goes from the staff home's 新建项目 to
the form, a refused form comes back with the messages beside the item's price and its shortest service, the
fixed form creates the
draft and lands back with the news; an auditor's home has no action control and the form is refused.
check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths."""

from sqlalchemy import select

from marketplace.db import db
from marketplace.programmes.models import Programme
from tests.browser.harness import check_page, each_width, log_in, shoot, watched


def _check(page, name: str) -> None:
    for _width in each_width(page):
        check_page(page)
    shoot(page, name)


def test_an_admin_creates_a_draft_programme_from_the_staff_home(page, build):
    world = build.world()  # meals and baths in the catalogue, a programme with its ledger on the home
    log_in(page, build.admin())
    assert page.url.endswith("/staff")
    _check(page, "staff-home-admin")
    with page.expect_navigation():
        page.get_by_role("link", name="新建项目").click()
    assert page.url.endswith("/staff/programmes/new")
    _check(page, "staff-programme-new")

    page.get_by_label("项目名称").fill("蒲江县2027年居家养老服务券")
    page.get_by_label("主管部门").fill("蒲江县民政局")
    page.get_by_label("区域代码").fill("510131")
    page.get_by_label("开始日期").fill("2027-01-01")
    page.get_by_label("结束日期").fill("2027-12-31")
    meal = page.locator(f'input[name="item"][value="{world.meal}"]')
    meal.check()
    page.locator(f"#field-price-{world.meal}").fill("十二元")
    page.locator(f"#field-quota-{world.meal}").fill("4")
    page.locator(f"#field-min-{world.meal}").fill("0")
    page.get_by_label("最低年龄（周岁）").fill("60")
    page.get_by_label("低保", exact=True).check()
    page.get_by_label("一般老人（%）").fill("20")
    page.locator("#field-rule-0-pay_percent").fill("60")
    page.locator("#field-rule-1-min_score").fill("80")
    page.locator("#field-rule-1-pay_percent").fill("100")
    page.get_by_label("不用，项目里任何一家都可以核销").check()
    with page.expect_navigation():
        page.get_by_role("button", name="建立草稿项目").click()
    assert page.locator(f"#error-price-{world.meal}").inner_text() == "请填写金额（元），例如 15 或 15.50。"
    assert page.locator(f"#error-min-{world.meal}").inner_text() == "应在 1 到 1440 之间。"
    assert page.get_by_role("alert").is_visible()  # the summary at the top links to the field
    watched(page).clear()  # the browser logs the 422 of the refused form itself
    _check(page, "staff-programme-new-refused")

    assert meal.is_checked()  # what was filled in is kept
    page.locator(f"#field-price-{world.meal}").fill("12.50")
    page.locator(f"#field-min-{world.meal}").fill("10")
    with page.expect_navigation():
        page.get_by_role("button", name="建立草稿项目").click()
    named = select(Programme).where(Programme.name == "蒲江县2027年居家养老服务券")
    created = build.read(lambda: db.session.scalar(named))
    assert page.url.endswith(f"/staff/programmes/{created.id}")  # its dashboard, with the news
    assert page.get_by_role("status").filter(has_text="已建立草稿项目“蒲江县2027年居家养老服务券”").is_visible()
    assert created.status == "draft"
    assert created.choice_required is False
    assert created.eligibility == {"min_age": 60, "tags_any": ["low_income"]}
    assert [(item.item_code, item.min_duration_minutes) for item in created.items] == [(world.meal, 10)]


def test_an_auditor_sees_the_home_without_action_controls_and_cannot_open_the_form(page, build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.complain(world.p1, redemption=build.redeem(world.p1, world.alice, world.meal))
    log_in(page, build.auditor())
    assert page.url.endswith("/staff")
    _check(page, "staff-home-auditor")
    main = page.locator("main")
    assert main.locator("form, button, input, select, textarea").count() == 0
    assert main.get_by_role("link", name="新建项目").count() == 0
    assert page.goto("/staff/programmes/new").status == 403
