"""A long run shows its progress: after the click, the issue form says it is running, shows the seconds gone by
against the expected duration with a bar, and its button cannot be clicked again. The submission is held in the
page (preventDefault) so that the waiting state can be looked at; the run itself is tested in
test_staff_cycle.py."""

import re

from playwright.sync_api import expect

from tests.browser.harness import check_page, each_width, log_in, shoot


def test_issuing_shows_the_time_gone_by_against_the_expected_duration(new_context, build):
    world = build.world(budget_fen=10_000_000)
    clerk = new_context().new_page()
    log_in(clerk, build.admin())
    clerk.goto(f"/staff/programmes/{world.programme.id}/issue?period={build.period(-1)}")
    assert "预计要 1 秒左右" in clerk.locator("main").inner_text()
    form = clerk.locator("form[data-running]")
    form.evaluate("form => form.addEventListener('submit', event => event.preventDefault())")

    button = clerk.get_by_role("button", name=re.compile("确认发放"))
    button.click()
    status = clerk.get_by_role("status")
    assert "正在发放" in status.inner_text()
    clerk.locator(".running progress").wait_for()
    assert button.is_disabled()
    expect(status).to_contain_text("比预计的久", timeout=8000)
    assert re.search(r"已用 \d+ 秒，比预计的久", status.inner_text())
    for _width in each_width(clerk):
        check_page(clerk)
    shoot(clerk, "staff-issue-running")
