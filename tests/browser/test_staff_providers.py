"""The staff providers pages in a real browser, on both databases: a provider registered and pending shows in
the approval queue; an admin approves it from the queue after the confirmation; enrolled and chosen, its login
then opens /provider/scan and redeems by typed short code. An auditor sees the same pages with no action
control, and an approval posted anyway is refused (403). Every page passes check_page (axe WCAG 2.2 AA, no
console error, nothing from another origin) at phone and desk widths, as admin and as auditor."""

import re

from sqlalchemy import select

from marketplace.auth.models import User
from marketplace.db import db
from marketplace.programmes.models import Programme
from providers.service import enrolment
from tests.browser.harness import check_page, each_width, log_in, shoot, watched
from vouchers.models import Redemption

RECEIPT = re.compile(r".*/provider/receipts/\d+$")
NAME = "蒲江县鹤山街道暖阳助餐服务社"


def _checked(page, name: str) -> None:
    for _width in each_width(page):
        check_page(page)
    shoot(page, name)


def _no_action_controls(page) -> None:
    main = page.locator("main")
    assert main.locator("form[method=post]").count() == 0
    assert main.locator("a[href*='/approve'], a[href*='/suspend'], a[href*='/revoke'], a[href*='/reinstate']"
                        ).count() == 0


def test_a_provider_approved_from_the_queue_can_then_scan(page, build):
    world = build.world()
    build.issue(world.programme, build.period())
    pending = build.provider(items=[world.meal], status="pending", name=NAME)
    build.complain(world.p1, text="送餐晚了半小时")

    # The admin finds it in the queue and approves it after the confirmation.
    log_in(page, build.admin())
    assert page.goto("/staff/providers").status == 200
    queue = page.locator("#queue-" + str(pending.id))
    assert NAME in queue.inner_text()
    _checked(page, "staff-providers")
    queue.get_by_role("link", name=re.compile("^批准")).click()
    page.get_by_role("heading", name=re.compile("批准")).wait_for()
    assert "可以申请加入项目" in page.inner_text("main")
    _checked(page, "staff-providers-approve")
    page.get_by_label(re.compile("原因")).fill("材料齐全，同意准入")
    # (A double post deciding once is tested over HTTP, tests/test_staff_providers.py.)
    with page.expect_navigation(url=re.compile(r".*/staff/providers$")):
        page.get_by_role("button", name="确认批准").click()
    assert f"已批准 {NAME}" in page.inner_text("main")
    assert page.locator(f"#queue-{pending.id}").count() == 0
    assert build.provider_row(pending.id).status == "approved"

    # Its page: the history with the reason, and the other decisions it now allows.
    page.goto(f"/staff/providers/{pending.id}")
    assert "材料齐全，同意准入" in page.inner_text("main")
    assert page.get_by_role("link", name="暂停服务").count() == 1
    _checked(page, "staff-provider")
    page.goto(f"/staff/providers/{world.p1.id}")
    assert "送餐晚了半小时" in page.inner_text("main")
    _checked(page, "staff-provider-complaints")

    # Enrolled and chosen, its login redeems at alice's door by the typed short code.
    def enrol():
        admin = db.session.get(User, build.system_admin.id)
        enrolment.enrol(programme=db.session.get(Programme, world.programme.id), provider_id=pending.id, actor=admin,
                        now=build.now())

    build.run(enrol)
    build.choose(world.alice, world.programme, world.meal, pending)
    page.context.clear_cookies()
    log_in(page, pending.user)
    assert page.goto("/provider/scan").status == 200
    page.get_by_label("老人的 8 位数字码").fill(build.presence_code(world.alice)["short_code"])
    page.get_by_role("button", name="下一步").click()
    page.get_by_role("heading", name="确认服务").wait_for()
    with page.expect_navigation(url=RECEIPT):
        page.get_by_role("button", name="确认核销").click()
    assert "请向老人收取" in page.inner_text("main")
    made = build.read(lambda: db.session.scalars(select(Redemption).where(Redemption.provider_id == pending.id)).all())
    assert [(r.recipient_id, r.presence) for r in made] == [(world.alice.id, "typed_code")]


def test_an_auditor_sees_no_action_controls_and_a_posted_approval_is_refused(page, build):
    world = build.world()
    pending = build.provider(items=[world.meal], status="pending", name=NAME)
    log_in(page, build.auditor())
    for address, name in (("/staff/providers", "staff-providers-auditor"),
                          (f"/staff/providers/{pending.id}", "staff-provider-auditor"),
                          (f"/staff/providers/{world.p1.id}", "staff-provider-approved-auditor")):
        assert page.goto(address).status == 200
        _no_action_controls(page)
        _checked(page, name)
    page.goto("/staff/providers")
    assert NAME in page.locator(f"#queue-{pending.id}").inner_text()
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    status = page.evaluate("""([address, token]) => fetch(address, {method: 'POST', credentials: 'same-origin',
        body: new URLSearchParams({csrf_token: token, form_key: 'k'.repeat(24), reason: '同意准入'})})
        .then(r => r.status)""", [f"/staff/providers/{pending.id}/approve", token])
    assert status == 403
    watched(page).clear()  # Chromium logs the refused request: expected
    assert build.provider_row(pending.id).status == "pending"
