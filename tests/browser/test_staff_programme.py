"""The staff programme page in a real browser, on both databases: the dashboard, the close confirmation and an
application's page pass check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone
and desk widths, as an admin and as an auditor (who is shown no action control); an admin amends the budget,
accepts an application and closes the programme by clicking through."""

from marketplace.auth.models import User
from marketplace.db import db
from providers.service import applications
from tests.browser.harness import check_page, each_width, log_in, shoot


def _programme_in_use(build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    for _ in range(2):
        build.redeem(world.p1, world.alice, world.meal)
    build.redeem(world.p2, world.bob, world.meal)
    newcomer = build.provider(items=[world.meal], name="鹤山助餐服务社", kind="enterprise")
    application_id = build.run(lambda: applications.apply(
        programme_id=world.programme.id, note="我们有 12 名助餐员。", actor=db.session.get(User, newcomer.user.id),
        now=build.now()).id)
    return world, application_id


def test_an_admin_reads_the_dashboard_amends_the_budget_accepts_an_application_and_closes(page, build):
    world, application_id = _programme_in_use(build)
    log_in(page, build.admin())
    address = f"/staff/programmes/{world.programme.id}"
    assert page.goto(address).status == 200
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-programme")

    page.get_by_label("金额（元）").fill("2000")
    page.get_by_label("原因").fill("县财政追加拨款")
    with page.expect_navigation():
        page.get_by_role("button", name="调整预算").click()
    assert page.get_by_text("预算已经调整。").is_visible()
    assert page.get_by_role("cell", name="县财政追加拨款").is_visible()

    page.goto(f"{address}/applications/{application_id}")
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-programme-application")
    with page.expect_navigation():
        page.get_by_role("button", name="同意加入").click()
    assert page.get_by_text("已同意申请").is_visible()
    assert page.get_by_role("rowheader", name="鹤山助餐服务社").first.is_visible()

    page.get_by_role("link", name="结束项目").click()
    page.wait_for_url(f"**{address}/close")
    assert page.get_by_text("张还没使用的服务券会作废").is_visible()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-programme-close")
    with page.expect_navigation():
        page.get_by_role("button", name="确认结束项目").click()
    assert page.get_by_text("项目已经结束").is_visible()
    check_page(page)


def test_an_auditor_reads_the_programme_without_any_action_control(page, build):
    world, _application_id = _programme_in_use(build)
    log_in(page, build.auditor())
    assert page.goto(f"/staff/programmes/{world.programme.id}").status == 200
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-programme-auditor")
    assert page.locator("main form").count() == 0
    assert page.locator("main button").count() == 0
    assert page.get_by_role("link", name="结束项目").count() == 0
    assert page.get_by_role("link", name="处理").count() == 0
    status = page.evaluate(
        """async (path) => {
             const token = document.querySelector('input[name=csrf_token]').value;
             const body = new URLSearchParams({csrf_token: token, form_key: 'k'.repeat(24)});
             return (await fetch(path, {method: 'POST', body})).status;
           }""", f"/staff/programmes/{world.programme.id}/close")
    assert status == 403
