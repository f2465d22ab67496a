"""The staff home, the staff recipients list and the provider's home in a real browser, on both databases:
each passes check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk
widths, and a look-up by ID number goes from the list to the acting pages."""

from tests.browser.harness import check_page, each_width, log_in, shoot


def _month(build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    build.complain(world.p1, redemption=served)
    return world


def test_the_staff_home_and_the_recipients_list(page, build):
    world = _month(build)
    log_in(page, build.admin())
    for address, name in (("/staff", "staff-home"), ("/staff/recipients", "staff-recipients"),
                          ("/staff/recipients?q=李", "staff-recipients-search")):
        assert page.goto(address).status == 200
        for _width in each_width(page):
            check_page(page)
        shoot(page, name)
    page.goto("/staff/recipients")
    page.get_by_role("textbox", name="身份证号码").fill(world.alice.id_number)
    with page.expect_navigation():
        page.get_by_role("button", name="查找").click()
    assert page.url.endswith(f"/staff/recipients/{world.alice.id}/act")
    assert world.alice.id_number not in page.url


def test_the_provider_home(page, build):
    world = _month(build)
    log_in(page, build.user(role="provider", provider_id=world.p1.id))
    assert page.url.endswith("/provider")
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-home")
