"""The public portal in a real browser, on both databases: every portal page (and its refusals: a bad
ranking query, an unknown programme, a page past the end) passes check_page at phone and desk widths —
axe WCAG 2.2 AA, no console error, nothing asked of another origin; the rankings form works with
JavaScript switched off; screenshots of the home and a programme page (tests/browser/screenshots/)."""

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.harness import check_page, each_width, shoot, watched


@pytest.fixture
def portal(build):
    """The full scenario (an active programme, three providers rated, settlements approved and paid) and a
    closed programme, as the public sees them."""
    full = build.full_scenario()
    build.programme(items=[(full.bath, 4000, 1)], status="closed", budget_fen=123_456, name="已经结束的项目")
    return full


def portal_pages(full) -> dict[str, str]:
    return {"home": "/", "programme": f"/public/programmes/{full.programme}", "providers": "/public/providers",
            "rankings": "/public/rankings",
            "rankings-region": f"/public/rankings?item_code={full.bath}&region_code=510131",
            "catalogue": "/public/catalogue"}


PAGE_NAMES = ["home", "programme", "providers", "rankings", "rankings-region", "catalogue"]


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_every_portal_page_passes_the_checks_at_both_widths(page, portal, name):
    response = page.goto(portal_pages(portal)[name])
    assert response.status == 200
    for _width in each_width(page):
        check_page(page)


@pytest.mark.parametrize(("address", "status", "says"), [
    ("/public/rankings?item_code=NOPE", 422, "请从列表里选一个服务项目"),
    ("/public/rankings?region_code=12", 422, "请从列表里选一个地区"),
    ("/public/programmes/999999", 404, "找不到这个页面"),
    ("/public/providers?page=99", 404, "没有这一页"),
    ("/public/providers?page=abc", 400, "没有这一页"),
])
def test_refusals_are_pages_that_pass_the_checks(page, portal, address, status, says):
    response = page.goto(address)
    assert response.status == status
    assert says in page.locator("main").inner_text()
    watched(page).clear()  # the browser logs the page's own 4xx as a console error
    for _width in each_width(page):
        check_page(page)


def test_screenshots_of_the_home_and_a_programme(page, portal):
    page.goto("/")
    shoot(page, "portal-home")
    page.goto(f"/public/programmes/{portal.programme}")
    shoot(page, "portal-programme")
    page.goto(f"/public/rankings?item_code={portal.meal}")
    shoot(page, "portal-rankings")


def test_the_rankings_form_works_without_javascript(new_context, portal):
    page = new_context(java_script_enabled=False).new_page()
    page.goto("/public/rankings")
    page.get_by_label("服务项目", exact=True).select_option(portal.bath)
    page.get_by_label("地区", exact=True).select_option("510131")
    with page.expect_navigation():
        page.get_by_role("button", name="查看排名").click()
    query = parse_qs(urlsplit(page.url).query)
    assert query == {"item_code": [portal.bath], "region_code": ["510131"]}
    assert page.get_by_role("heading", name="助浴的服务机构排名（510131）").is_visible()


def test_the_navigation_leads_through_the_portal(page, portal):
    page.goto("/")
    for label, path in (("服务机构", "/public/providers"), ("服务排名", "/public/rankings"),
                        ("服务目录", "/public/catalogue"), ("服务机构注册", "/provider/register"), ("首页", "/")):
        page.get_by_role("navigation").get_by_role("link", name=label, exact=True).click()
        assert urlsplit(page.url).path == path
    page.get_by_role("link", name="服务标准、自付比例和结算情况").click()
    assert urlsplit(page.url).path == f"/public/programmes/{portal.programme}"
