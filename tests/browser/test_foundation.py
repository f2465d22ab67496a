"""The console's foundation in a real browser, on both databases: the public home and /login pass the
checks at phone and desk widths; logging in through the form lands each role on its home; logout;
a form posted without its CSRF token is refused with a page, not a 500; the language and 大字模式
switches; nothing is asked of another origin; and all of it with JavaScript switched off."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from marketplace.web.navigation import home_for
from tests.browser.harness import (
    check_elder_rules,
    check_page,
    each_width,
    foreign_requests,
    has_large_text,
    log_in,
    shoot,
    watched,
)

# name → (address, the endpoint that serves it)
PUBLIC_PAGES = {"home": ("/", "portal.home"), "login": ("/login", "web.login")}


def path_of(page) -> str:
    return urlsplit(page.url).path


def home_of(app, role: str) -> str:
    with app.test_request_context():
        return home_for(role)


def require_built(app, endpoint: str) -> None:
    """Skip, saying so, while the page of *endpoint* is not built yet (the console grows page by page)."""
    if endpoint not in app.view_functions:
        pytest.skip(f"{endpoint} is not built yet")


def api_me(page):
    """GET /api/v1/me with the browser's cookies: who the server thinks this browser is."""
    return page.request.get("/api/v1/me")


@pytest.mark.parametrize(("name", "address", "endpoint"), [(name, *page) for name, page in PUBLIC_PAGES.items()],
                         ids=PUBLIC_PAGES.keys())
def test_public_pages_pass_the_checks_at_both_widths(page, app, name, address, endpoint):
    require_built(app, endpoint)
    response = page.goto(address)
    assert response.status == 200
    for _width in each_width(page):
        check_page(page)
    shoot(page, f"public-{name}")


def test_the_login_page_follows_the_elder_profile(page):
    page.goto("/login")
    check_elder_rules(page)


@pytest.mark.parametrize("role", ["admin", "recipient"])
def test_logging_in_through_the_form_lands_on_the_roles_home(page, app, build, role):
    user = build.admin(region_code="510131") if role == "admin" else build.recipient(login=True).user
    response = log_in(page, user)
    assert path_of(page) == home_of(app, role)
    if response.status == 404:
        pytest.skip(f"the {role}'s home {home_of(app, role)} is not built yet")
    assert response.status == 200
    header = page.locator("header").inner_text()
    assert user.username in header
    assert api_me(page).json()["username"] == user.username
    check_page(page)
    shoot(page, f"home-{role}")


def test_a_wrong_password_is_said_beside_the_form(page, build):
    admin = build.admin()
    log_in(page, admin, password="not the password")
    assert path_of(page) == "/login"
    assert "用户名或密码不对" in page.locator("main").inner_text()
    watched(page).clear()  # the 401 of the refused form is logged by the browser, as expected
    check_page(page)
    shoot(page, "login-refused")


def test_logout_ends_the_session(page, build):
    admin = build.admin()
    log_in(page, admin)
    with page.expect_navigation():
        page.get_by_role("button", name="退出登录").click()
    assert path_of(page) == "/login"
    assert "您已经退出登录" in page.locator("main").inner_text()
    assert api_me(page).status == 401
    check_page(page)


def test_a_form_posted_without_its_csrf_token_is_refused_with_a_page(page, build):
    admin = build.admin()
    log_in(page, admin)
    home = page.url
    page.locator("form:has(button:text('退出登录')) input[name=csrf_token]").evaluate("field => field.remove()")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="退出登录").click()
    response = navigation.value
    assert response.status in (400, 403)
    assert response.headers["content-type"].startswith("text/html")
    assert page.locator("h1").count() == 1
    watched(page).clear()  # the browser logs the refused request itself
    check_page(page)
    shoot(page, "refused-csrf")
    assert api_me(page).status == 200  # still logged in: the forged logout did nothing
    page.goto(home)
    assert admin.username in page.locator("header").inner_text()


def test_the_language_switch_turns_the_page_english_and_back(page):
    page.goto("/login")
    with page.expect_navigation():
        page.get_by_role("link", name="English").click()
    assert path_of(page) == "/login"
    assert page.locator("html").get_attribute("lang") == "en"
    assert "用户名" not in page.locator("main").inner_text()
    check_page(page)
    shoot(page, "login-en")
    with page.expect_navigation():
        page.get_by_role("link", name="中文").click()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert "用户名" in page.locator("main").inner_text()


def test_the_large_text_switch_is_kept_and_makes_text_at_least_24px(page):
    page.goto("/login")
    assert not has_large_text(page)
    with page.expect_navigation():
        page.get_by_role("link", name="大字模式").click()
    assert path_of(page) == "/login"
    assert has_large_text(page)
    check_elder_rules(page)
    check_page(page)
    shoot(page, "login-large-text")
    page.goto("/")
    assert has_large_text(page)


def test_a_whole_visit_asks_nothing_of_another_origin(page, build, live_server):
    admin = build.admin()
    page.goto("/")
    log_in(page, admin)
    with page.expect_navigation():
        page.get_by_role("button", name="退出登录").click()
    requests = watched(page).requests
    assert requests, "the watch saw no request"
    assert foreign_requests(page) == []
    assert all(url.startswith(live_server.url) for url in requests), requests


def test_everything_works_without_javascript(new_context, build):
    admin = build.admin()
    page = new_context(java_script_enabled=False).new_page()
    page.goto("/")
    log_in(page, admin)
    assert admin.username in page.locator("header").inner_text()
    with pytest.raises(AssertionError, match="needs JavaScript on"):
        check_page(page)  # refused at once: axe would wait for ever for timers that never fire
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")  # waits out the redirect back
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert path_of(page) == "/login"
    assert api_me(page).status == 401
