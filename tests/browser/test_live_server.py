"""The live server of the browser tests: the session's app of each backend, seeded in this process."""

from tests.conftest import PASSWORD


def test_the_browser_reaches_the_live_server(page, live_server):
    response = page.goto("/api/v1/health")
    assert response.status == 200
    assert page.url.startswith(live_server.url)
    assert (200, "GET", "/api/v1/health") in live_server.replies


def test_what_a_test_seeds_is_what_the_browser_sees(page, make_user):
    user = make_user(role="admin", username="browser-admin")
    reply = page.request.post("/api/v1/auth/token", data={"username": user.username, "password": PASSWORD})
    assert reply.status == 200, reply.text()
    assert reply.json()["user"]["username"] == "browser-admin"


def test_the_pages_speak_chinese_at_shanghai_time(page):
    page.goto("/api/v1/health")
    assert page.evaluate("() => navigator.language") == "zh-CN"
    assert page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone") == "Asia/Shanghai"
