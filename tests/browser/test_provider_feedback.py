"""The provider's ratings and complaints page in a real browser, on both databases: it passes check_page (axe
WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths for the manager and a
scanning login, and the manager answers a complaint on a 360 px screen, once."""

from sqlalchemy import select

from marketplace.db import db
from providers.models import Complaint
from tests.browser.harness import WIDTHS, check_page, each_width, log_in, shoot, watched

ANSWER = "已经核实，那天送餐车坏了，已向老人道歉，以后提前打电话说明。"


def _feedback(build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    meals = [build.redeem(world.p1, world.alice, world.meal) for _ in range(2)]
    build.rate(meals[0], 5, by=world.alice.user, comment="饭菜热乎，送餐员很有礼貌")
    build.rate(meals[1], 2, by=world.alice.user, comment="送晚了一个小时")
    resolved = build.complain(world.p1, redemption=meals[1], by=world.alice.user, text="送晚了一个小时，饭是凉的")
    build.resolve(resolved, upheld=True)
    opened = build.complain(world.p1, recipient=world.alice, text="送餐员说话很冲，态度不好")
    return world, opened


def test_the_page_for_the_manager_and_for_a_scanning_login(page, build):
    world, _opened = _feedback(build)
    for user, name in ((world.p1.user, "provider-feedback"),
                       (build.user(role="provider", provider_id=world.p1.id), "provider-feedback-staff")):
        log_in(page, user)
        assert page.goto("/provider/feedback").status == 200
        for _width in each_width(page):
            check_page(page)
        shoot(page, name)
        page.context.clear_cookies()


def test_the_manager_answers_a_complaint_on_a_phone(page, build):
    world, opened = _feedback(build)
    page.set_viewport_size(WIDTHS["phone"])
    log_in(page, world.p1.user)
    page.goto("/provider/feedback")
    assert page.get_by_role("navigation").get_by_role("link", name="评价和投诉").is_visible()

    page.get_by_label("您的答复").fill("好")  # too short: refused beside the field
    with page.expect_navigation():
        page.get_by_role("button", name="提交答复").click()
    assert page.get_by_text("应为 2 到 2000 个字。").first.is_visible()
    watched(page).clear()  # the browser logs the 422 of the refused form itself
    check_page(page)
    shoot(page, "provider-feedback-refused")

    page.get_by_label("您的答复").fill(ANSWER)
    with page.expect_navigation():
        page.get_by_role("button", name="提交答复").click()
    assert page.url.endswith(f"/provider/feedback#complaint-{opened}")
    assert page.get_by_text("答复已经提交").is_visible()
    assert page.get_by_text(ANSWER).is_visible()
    assert page.get_by_role("button", name="提交答复").count() == 0
    check_page(page)
    shoot(page, "provider-feedback-answered")

    page.reload()  # a reload of the page it landed on changes nothing
    answers = build.read(lambda: db.session.scalars(select(Complaint.answer).where(Complaint.id == opened)).all())
    assert answers == [ANSWER]
