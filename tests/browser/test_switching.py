"""Switching in a real browser, on both databases: the public programme page's aggregates (a group of 6 shown, a
group under 5 hidden) and the rankings' switch-away share, the staff programme dashboard's churn section and a
provider's last six months pass check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at
phone and desk widths; screenshots of the public and the staff sections (tests/browser/screenshots/)."""

from datetime import timedelta

import pytest

from tests.browser.harness import check_page, each_width, log_in, shoot
from tests.test_switching import choose


@pytest.fixture
def market(build):
    """Last month six recipients left p1 for p2 over meals (five for the price, one for lateness), and three
    left p2 for p1 over baths: the meals' group is public, the baths' (3) is not."""
    world = build.world()
    day = build.in_month(-1, 3)
    for index in range(6):
        person = build.recipient()
        choose(build, person, world.programme, world.meal, world.p1, at=day - timedelta(days=40))
        choose(build, person, world.programme, world.meal, world.p2, at=day + timedelta(hours=index),
               reason="price" if index < 5 else "timeliness")
    for index in range(3):
        person = build.recipient()
        choose(build, person, world.programme, world.bath, world.p2, at=day - timedelta(days=40))
        choose(build, person, world.programme, world.bath, world.p1, at=day + timedelta(days=1, hours=index),
               reason="staff_attitude")
    return world


def test_the_public_sees_switching_only_as_aggregates(page, market):
    assert page.goto(f"/public/programmes/{market.programme.id}").status == 200
    table = page.get_by_role("table", name="各服务项目换过服务机构的老人")
    assert table.get_by_role("row", name="助餐 6 位 6 次 自付太多 5 次").is_visible()
    assert table.get_by_role("row", name="助浴 不到 5 位老人，不公开").is_visible()
    for _width in each_width(page):
        check_page(page)
    page.get_by_role("heading", name="老人更换服务机构的情况").scroll_into_view_if_needed()
    shoot(page, "portal-switching")

    assert page.goto(f"/public/rankings?item_code={market.meal}").status == 200
    assert page.get_by_text("换走的老人").first.is_visible()
    for _width in each_width(page):
        check_page(page)


def test_staff_read_churn_on_the_dashboard_and_the_provider_page(page, build, market):
    log_in(page, build.auditor())
    assert page.goto(f"/staff/programmes/{market.programme.id}#switching").status == 200
    table = page.locator("#switching table")
    assert table.get_by_role("row", name=f"{market.p1.name} 6 3 6 100.0% 自付太多 5 次、不准时 1 次").is_visible()
    assert table.get_by_role("row", name=f"{market.p2.name} 3 6 3 100.0% 服务人员态度 3 次").is_visible()
    for _width in each_width(page):
        check_page(page)
    page.get_by_role("heading", name="换机构（").scroll_into_view_if_needed()
    shoot(page, "staff-programme-switching")

    table.get_by_role("link", name=market.p1.name).click()
    page.wait_for_url(f"**/staff/providers/{market.p1.id}")
    assert page.get_by_role("heading", name="换机构（最近 6 个月）").is_visible()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-provider-switching")
