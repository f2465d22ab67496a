"""The browser harness itself: each check passes a good page and fails a page made bad on purpose.

The pages are served by Playwright's routing under http://harness.test (no server, no database), with
a Content-Security-Policy like the console's, so axe is shown to work under it.
"""

import hashlib
import re
import struct
from urllib.parse import urlsplit

import pytest

from tests.browser import harness
from tests.browser.harness import check_elder_rules, check_page, log_in, shoot, watched
from tests.support import browsers

ORIGIN = "http://harness.test"
CSP = "default-src 'self'; frame-ancestors 'none'"

GOOD_CSS = """
html { font-size: 20px; line-height: 1.6; color: #1a1a1a; background: #fff; font-family: sans-serif; }
html.large-text { font-size: 26px; }
body { margin: 0; padding: 16px; }
a, button, input { display: inline-block; box-sizing: border-box; min-width: 48px; min-height: 48px; font: inherit; }
input { border: 2px solid #1a1a1a; padding: 8px; }
button { color: #fff; background: #003a70; border: 0; padding: 8px 16px; }
"""

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>本月服务券</title><link rel="stylesheet" href="/site.css">{head}</head>
<body><header><nav aria-label="主导航"><a href="/">首页</a></nav></header>
<main><h1>本月服务券</h1><p>您本月有 4 张助餐券。</p>
<form method="post" action="/session"><label for="u">用户名</label> <input id="u" name="username">
<label for="p">密码</label> <input id="p" name="password" type="password">
<button type="submit">登录</button></form>{body}</main></body></html>
"""

WELCOME = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>欢迎</title></head>
<body><main><h1>欢迎 {name}</h1></main></body></html>"""


class Site:
    """Pages served to *page* under ORIGIN by Playwright's routing: `site.serve(path, body)`, `site.open(path)`."""

    def __init__(self, page):
        self.page = page
        self.pages = {"/site.css": (GOOD_CSS, "text/css")}
        self.posts = []
        page.route(f"{ORIGIN}/**", self.answer)

    def serve(self, path, body, content_type="text/html; charset=utf-8"):
        self.pages[path] = (body, content_type)

    def answer(self, route):
        request = route.request
        path = urlsplit(request.url).path
        if request.method == "POST" and path == "/session":
            self.posts.append(request.post_data)
            name = re.search(r"username=([^&]*)", request.post_data or "")[1]
            route.fulfill(body=WELCOME.format(name=name), content_type="text/html; charset=utf-8",
                          headers={"Content-Security-Policy": CSP})
        elif path in self.pages:
            body, content_type = self.pages[path]
            route.fulfill(body=body, content_type=content_type, headers={"Content-Security-Policy": CSP})
        else:
            route.fulfill(status=404, body="not found", content_type="text/plain")

    def open(self, path="/", *, head="", body="", css=None):
        if css is not None:
            self.serve("/site.css", GOOD_CSS + css, "text/css")
        if path not in self.pages:
            self.serve(path, PAGE.format(head=head, body=body))
        self.page.goto(ORIGIN + path)
        return self.page


@pytest.fixture
def site(blank_page):
    return Site(blank_page)


def failure(check, page) -> str:
    with pytest.raises(AssertionError) as raised:
        check(page)
    return str(raised.value)


# --- check_page -----------------------------------------------------------------------------------------

def test_a_good_page_passes_every_check(site):
    page = site.open()
    check_page(page)
    check_elder_rules(page)


def test_axe_runs_under_the_pages_content_security_policy(site):
    page = site.open()
    assert page.evaluate("() => document.querySelector('script') === null")  # nothing was inserted
    assert harness.axe_violations(page) == []
    assert page.evaluate("() => axe.version") == "4.14.1"


def test_check_page_lists_axe_violations_readably(site):
    page = site.open(body='<img src="/site.css"><input id="nameless"><a href="/x"></a>', css="p { color: #aaa; }")
    message = failure(check_page, page)
    for rule in ("image-alt", "label", "link-name", "color-contrast"):
        assert f"axe {rule} (" in message, message
    assert "at #nameless" in message
    assert "dequeuniversity.com" in message
    assert message.startswith(f"{ORIGIN}/ at 1280×900:")


def test_check_page_fails_on_a_console_error_and_an_uncaught_exception(site):
    site.serve("/noisy.js", "console.error('坏了'); null.boom();", "application/javascript")
    page = site.open(head='<script src="/noisy.js"></script>')
    message = failure(check_page, page)
    assert "console error: 坏了" in message
    assert "uncaught exception:" in message


def test_check_page_fails_on_a_script_the_policy_blocked(site):
    page = site.open(body="<script>document.title = 'inline'</script>")
    message = failure(check_page, page)
    assert "Content Security Policy" in message


def test_check_page_fails_on_a_request_to_another_origin(site):
    site.page.route("http://cdn.elsewhere.test/**", lambda route: route.fulfill(body="", content_type="text/css"))
    page = site.open(head='<link rel="stylesheet" href="http://cdn.elsewhere.test/font.css">')
    message = failure(check_page, page)
    assert "request to another origin: http://cdn.elsewhere.test/font.css" in message


def test_a_cleared_watch_forgets_what_was_expected(site):
    site.serve("/noisy.js", "console.error('expected');", "application/javascript")
    page = site.open("/noisy", head='<script src="/noisy.js"></script>')
    site.page.goto(f"{ORIGIN}/noisy")
    watched(page).clear()
    check_page(site.open("/"))


def test_an_unwatched_page_is_refused(browser):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_content("<p>x</p>")
        with pytest.raises(AssertionError, match="not watched"):
            check_page(page)
    finally:
        context.close()


# --- check_elder_rules ---------------------------------------------------------------------------------

BAD_PAGES = {
    "small text": ("html { font-size: 16px; } html.large-text { font-size: 26px; }", "font size 16px < 18px: p"),
    "large text too small": ("html.large-text { font-size: 20px; }", "[大字模式] font size 20px < 24px: p"),
    "grey text": ("p { color: #6b6b6b; }", "contrast 5.33:1 < 7:1 (rgb(107, 107, 107) on rgb(255, 255, 255)): p"),
    "translucent text": ("p { color: rgba(0, 0, 0, 0.5); }",
                         "contrast 3.98:1 < 7:1 (rgba(0, 0, 0, 0.5) on rgb(255, 255, 255))"),
    "grey background": ("main { background: #888; }", "on rgb(136, 136, 136)): h1"),
    "background image": ("main { background: linear-gradient(#fff, #eee); }",
                         "contrast cannot be measured (text over a background image): h1"),
    "tight lines": ("html { line-height: 1.2; }", "line height 1.20 < 1.5: p"),
    "normal lines": ("p { line-height: normal; }", "line height normal < 1.5: p"),
    "small button": ("button { min-height: 0; min-width: 0; padding: 2px; }", '< 48×48: button "登录"'),
    "inline link": ("a { display: inline; min-height: 0; }", '< 48×48: a "首页"'),
    "small field text": ("input { font-size: 14px; }", "font size 14px < 18px: input#u"),
}


@pytest.mark.parametrize(("css", "expected"), BAD_PAGES.values(), ids=BAD_PAGES.keys())
def test_check_elder_rules_fails_a_page_breaking_one_rule(site, css, expected):
    page = site.open(css=css)
    message = failure(check_elder_rules, page)
    assert expected in message, message


def test_headings_may_be_set_tighter_than_body_text(site):
    check_elder_rules(site.open(css="h1 { line-height: 1.2; }"))


def test_a_large_check_box_label_is_its_target(site):
    body = '<p><input type="checkbox" id="c"><label for="c" class="big">记住我</label></p>'
    page = site.open(body=body, css="label.big { display: inline-block; min-height: 48px; min-width: 120px; }"
                                    "input[type=checkbox] { min-width: 0; min-height: 0; }")
    check_elder_rules(page)
    page = site.open("/small", body=body, css="input[type=checkbox] { min-width: 0; min-height: 0; }")
    assert "target" in failure(check_elder_rules, page)


def test_hidden_text_is_not_measured(site):
    page = site.open(body='<p class="sr-only">仅读屏</p><p hidden>隐藏</p>',
                     css=".sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; "
                         "clip: rect(0 0 0 0); font-size: 10px; }")
    check_elder_rules(page)


def test_a_page_already_in_large_text_must_be_24px(site):
    page = site.open(css="html.large-text { font-size: 22px; }")
    harness.set_large_text(page, True)
    message = failure(check_elder_rules, page)
    assert "font size 22px < 24px" in message
    assert "[大字模式]" not in message  # one pass: the page as shown


# --- screenshots, widths, logging in ----------------------------------------------------------------------

def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_shoot_saves_a_phone_and_a_desk_picture(site, tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "SCREENSHOTS", tmp_path / "shots")
    page = site.open()
    paths = shoot(page, "harness-good")
    assert [path.name for path in paths] == ["harness-good-phone.png", "harness-good-desk.png"]
    assert png_size(paths[0])[0] == 360
    assert png_size(paths[1])[0] == 1280
    assert page.viewport_size == {"width": 1280, "height": 900}  # given back


def test_screenshots_go_to_docs_when_asked(monkeypatch):
    monkeypatch.delenv("SCREENSHOTS_TO_DOCS", raising=False)
    assert harness.screenshot_folder() == harness.SCREENSHOTS
    monkeypatch.setenv("SCREENSHOTS_TO_DOCS", "1")
    assert harness.screenshot_folder().parts[-2:] == ("docs", "screenshots")


def test_each_width_sets_the_viewport(site):
    page = site.open()
    widths = {width: page.evaluate("() => window.innerWidth") for width in harness.each_width(page)}
    assert widths == {"phone": 360, "desk": 1280}


def test_log_in_fills_the_labelled_fields_and_submits(browser):
    context = browser.new_context(base_url=ORIGIN)
    try:
        page = context.new_page()
        harness.watch(page)
        site = Site(page)
        site.serve("/login", PAGE.format(head="", body=""))
        log_in(page, "alice", "s3cret")
        assert site.posts == ["username=alice&password=s3cret"]
        assert page.get_by_role("heading").inner_text() == "欢迎 alice"
    finally:
        context.close()


# --- the vendored axe-core and the browser itself ---------------------------------------------------------

def test_the_vendored_axe_is_the_version_and_file_the_readme_names():
    readme = (harness.HERE / "vendor" / "README.md").read_text()
    version = re.search(r"axe-core (\d+\.\d+\.\d+)", readme)[1]
    checksum = re.search(r"\b([0-9a-f]{64})\b", readme)[1]
    source = harness.AXE_PATH.read_bytes()
    assert source.startswith(f"/*! axe v{version}".encode())
    assert hashlib.sha256(source).hexdigest() == checksum
    assert (harness.HERE / "vendor" / "LICENSE").is_file()


def test_a_missing_chromium_is_a_reason_to_skip(monkeypatch, tmp_path):
    monkeypatch.setattr(browsers, "CHROMIUM", tmp_path / "chromium")
    assert "Chromium not found at" in browsers.chromium_unavailable_reason()
