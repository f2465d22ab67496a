"""The staff's complaints, rankings and audit pages in a real browser, on both databases: each passes
check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths as an
admin and as an auditor; the admin resolves a complaint through its form, the auditor finds no control
that changes anything, and verifying the chain shows the head hash."""

from tests.browser.harness import check_page, each_width, log_in, shoot


def _queue(build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    complaint = build.complain(world.p1, redemption=served, text="送餐晚了一个小时，饭菜是凉的")
    build.resolve(build.complain(world.p2, recipient=world.bob, text="上门迟到"), upheld=True)
    return world, complaint


def _pages(world, complaint):
    return [("/staff/complaints", "staff-complaints"), (f"/staff/complaints/{complaint}", "staff-complaint"),
            (f"/staff/rankings?item_code={world.meal}", "staff-rankings"), ("/staff/audit", "staff-audit"),
            ("/staff/audit/verify", "staff-audit-verify")]


def _action_controls(page) -> int:
    """Forms in the page's main part that post (a change), and buttons inside them."""
    return page.locator("main form[method=post], main form[method=POST]").count()


def test_an_admin_reads_the_queues_and_resolves_a_complaint(page, build):
    world, complaint = _queue(build)
    log_in(page, build.admin())
    for address, name in _pages(world, complaint):
        assert page.goto(address).status == 200, address
        for _width in each_width(page):
            check_page(page)
        shoot(page, name)
    page.goto(f"/staff/complaints/{complaint}")
    page.get_by_label("属实", exact=True).check()
    page.get_by_label("处理意见").fill("已核实：送餐确实晚到，扣减考核分")
    with page.expect_navigation():
        page.get_by_role("button", name="确认处理").click()
    assert page.url.endswith(f"/staff/complaints/{complaint}")
    assert page.get_by_text("投诉已处理。").is_visible()
    assert page.get_by_text("已核实：送餐确实晚到，扣减考核分").is_visible()
    assert _action_controls(page) == 0
    for _width in each_width(page):
        check_page(page)


def test_an_auditor_reads_every_queue_without_action_controls(page, build):
    world, complaint = _queue(build)
    log_in(page, build.auditor())
    for address, name in _pages(world, complaint):
        assert page.goto(address).status == 200, address
        assert _action_controls(page) == 0, address
        for _width in each_width(page):
            check_page(page)
        shoot(page, f"{name}-auditor")
    page.goto("/staff/audit")
    with page.expect_navigation():
        page.get_by_role("button", name="开始核验").click()
    assert page.get_by_text("审计链完整").is_visible()
    assert len(page.locator("#head-hash code").inner_text()) == 64
