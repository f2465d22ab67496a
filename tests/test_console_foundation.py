"""The console's foundation through Flask's test client, on both databases: login and logout through
the form, CSRF on every form, HTML error pages (JSON kept for /api/), headers, static files, formats."""

import gzip
from datetime import UTC, date, datetime

import pytest

from marketplace.errors import error_catalogue
from marketplace.web import format as fmt
from marketplace.web.refusals import REFUSALS
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, post_form, visible_text


def test_login_page_has_labelled_fields_and_a_csrf_token(client):
    page = client.get("/login")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert '<label for="field-username">用户名' in body
    assert '<label for="field-password">密码' in body
    assert csrf_from(body)
    assert '<a class="skip-link" href="#main">' in body


def test_login_through_the_form_starts_a_session_and_shows_who_is_logged_in(client, make_user):
    make_user(role="admin", username="clerk")
    answer = login_page(client, "clerk", PASSWORD)
    assert answer.status_code == 302
    home = client.get(answer.location, follow_redirects=True)
    text = visible_text(home)
    assert "clerk" in text
    assert "民政工作人员" in text
    assert client.get("/api/v1/me").get_json()["username"] == "clerk"


def test_wrong_password_is_refused_beside_the_form_and_nothing_else_happens(client, make_user):
    make_user(role="admin", username="clerk")
    answer = login_page(client, "clerk", "not the password")
    assert answer.status_code == 401
    assert "用户名或密码不对" in visible_text(answer)
    assert client.get("/api/v1/me").status_code == 401


def test_blank_fields_get_a_message_beside_each(client):
    answer = login_page(client, "", "")
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    assert 'id="error-username"' in body
    assert 'id="error-password"' in body
    assert "请填写这一项" in body
    assert 'aria-invalid="true"' in body


def test_login_throttling_holds_for_the_form_too(client, make_user):
    make_user(role="admin", username="clerk")
    statuses = [login_page(client, "clerk", "wrong wrong").status_code for _ in range(6)]
    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    assert "错误次数太多" in visible_text(login_page(client, "clerk", PASSWORD))


def test_a_form_posted_without_its_csrf_token_is_refused(client, make_user):
    make_user(role="admin", username="clerk")
    client.get("/login")
    refused = client.post("/login", data={"username": "clerk", "password": PASSWORD})
    assert refused.status_code == 403
    assert "表单已经过期" in visible_text(refused)
    forged = client.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": "00" * 86})
    assert forged.status_code == 403
    assert client.get("/api/v1/me").status_code == 401


def test_the_token_is_masked_afresh_on_every_page(client):
    first = csrf_from(client.get("/login").get_data(as_text=True))
    second = csrf_from(client.get("/login").get_data(as_text=True))
    assert first != second


def test_logout_ends_the_session_and_a_copy_of_the_cookie_dies_with_it(client, make_user):
    make_user(role="admin", username="clerk")
    login_page(client, "clerk", PASSWORD)
    cookie = client.get_cookie("session").value
    answer = post_form(client, "/logout", {}, from_page="/no/such/page")  # any page has the logout form
    assert answer.status_code == 302
    assert client.get("/api/v1/me").status_code == 401
    client.set_cookie("session", cookie)
    assert client.get("/api/v1/me").status_code == 401


def test_next_only_goes_to_this_site(client, make_user):
    make_user(role="admin", username="clerk")
    answer = post_form(client, "/login", {"username": "clerk", "password": PASSWORD, "next": "//evil.example/"},
                       from_page="/login")
    assert answer.status_code == 302
    assert not answer.location.startswith("//")
    assert "evil" not in answer.location


def test_browsers_get_html_error_pages_and_the_api_keeps_its_envelope(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    assert "找不到这个页面" in visible_text(page)
    api = client.get("/api/v1/no/such/thing")
    assert api.status_code == 404
    assert api.get_json()["error"]["code"] == "not_found"


def test_console_pages_carry_the_security_headers(client):
    page = client.get("/login")
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"


def test_the_session_cookie_is_httponly_and_samesite_lax(client, make_user):
    make_user(role="admin", username="clerk")
    answer = login_page(client, "clerk", PASSWORD)
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_static_files_are_fingerprinted_cached_and_compressed(client):
    body = client.get("/login").get_data(as_text=True)
    address = next(part.split('"')[0] for part in body.split('href="')[1:] if part.startswith("/static/console.css"))
    fresh = client.get(address, headers={"Accept-Encoding": "gzip, br"})
    assert fresh.status_code == 200
    assert fresh.headers["Content-Encoding"] == "gzip"
    assert "immutable" in fresh.headers["Cache-Control"]
    assert b"font-size" in gzip.decompress(fresh.data)
    stale = client.get("/static/console.css?v=old")
    assert stale.headers["Cache-Control"] == "no-cache"
    again = client.get(address, headers={"If-None-Match": fresh.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/static/../app.py").status_code == 404
    assert client.get("/static/vendor/htmx-2.0.11/LICENSE").status_code == 200


def test_pages_are_compressed_for_clients_that_accept_it(client):
    page = client.get("/login", headers={"Accept-Encoding": "gzip"})
    assert page.headers.get("Content-Encoding") == "gzip"
    assert "登录" in gzip.decompress(page.data).decode()


def test_language_switch_and_large_text_are_remembered(client):
    answer = client.get("/preferences?lang=en&next=/login")
    assert answer.status_code == 302
    assert answer.location == "/login"
    page = client.get("/login")
    assert '<html lang="en"' in page.get_data(as_text=True)
    assert "Username" in visible_text(page)
    assert "Log in" in visible_text(page)
    client.get("/preferences?large_text=1&next=/login")
    assert 'class="large-text"' in client.get("/login").get_data(as_text=True)
    assert client.get("/preferences?lang=xx&next=https://evil.example/").location == "/"


def test_anonymous_pages_set_no_cookie(client):
    assert "Set-Cookie" not in client.get("/no/such/page").headers


@pytest.mark.parametrize(("fen", "shown"), [(0, "¥0.00"), (5, "¥0.05"), (123450, "¥1,234.50"), (-2500, "-¥25.00"),
                                            (300000000, "¥3,000,000.00")])
def test_money_is_written_in_yuan(fen, shown):
    assert fmt.money(fen) == shown


def test_days_and_instants_are_written_the_chinese_way(app):
    with app.test_request_context("/"):
        assert fmt.day(date(2026, 12, 1)) == "2026年12月1日"
        # 16:30 UTC on 30 November is already 1 December in Asia/Shanghai.
        assert fmt.moment(datetime(2026, 11, 30, 16, 30, tzinfo=UTC)) == "2026年12月1日 00:30"
        assert fmt.period("2026-12") == "2026年12月"
    with app.test_request_context("/", headers={"Accept-Language": "en"}):
        assert fmt.day(date(2026, 12, 1)) == "1 December 2026"


def test_every_error_code_has_a_plain_sentence_for_the_console():
    missing = [entry.code for entry in error_catalogue() if entry.code not in REFUSALS]
    assert missing == []
