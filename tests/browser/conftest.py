"""Fixtures of the browser tests: Debian's Chromium driven by pytest-playwright against a live server.

- The browser: /usr/bin/chromium through `executable_path` (browser_type_launch_args); `playwright
  install` is never run. Without Chromium every test here is skipped, the reason printed in the
  header and the summary (tests/conftest.py); with REQUIRE_BROWSER=1 the session fails instead.
- `live_server`: the session's `app` of each backend (SQLite, PostgreSQL) served over HTTP by a thread
  of this process (tests/support/servers.LiveServer), one per backend for the session. Seed it with
  `build` (the scenario Builder), `make_user` or the service layer: same app, same database. The
  tables are emptied after each test (tests/conftest.py), as for every test.
- `new_context`, `context`, `page`: pytest-playwright's, opening the live server (`page.goto("/login")`)
  in Simplified Chinese, at Asia/Shanghai time, at the desk width; every page is watched from its
  start (harness.watch) so that check_page sees its console errors and requests. Pass settings of
  your own: `new_context(java_script_enabled=False)`, `new_context(locale="en-US")`.
- `blank_page`: a watched page on no server at all, for the tests of the harness itself.
- After each test on the live server: it answered no 5xx.

The checks themselves (check_page, check_elder_rules, shoot, log_in) are in tests/browser/harness.py.
"""

from pathlib import Path

import pytest

from tests.browser.harness import WIDTHS, scripts_off, watch
from tests.conftest import BROWSER_REASON
from tests.support.browsers import CHROMIUM
from tests.support.servers import LiveServer

HERE = Path(__file__).resolve().parent
CONTEXT_DEFAULTS = {"locale": "zh-CN", "timezone_id": "Asia/Shanghai", "viewport": WIDTHS["desk"]}


def pytest_collection_modifyitems(config, items):
    if not BROWSER_REASON:
        return
    skip = pytest.mark.skip(reason=f"browser tests: {BROWSER_REASON}")
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM)}


@pytest.fixture(scope="session")
def live_server(app):
    server = LiveServer(app)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def new_context(new_context, live_server):
    """pytest-playwright's `new_context` on the live server, its pages watched: `new_context(**settings)`."""

    def factory(**settings):
        context = new_context(**{"base_url": live_server.url, **CONTEXT_DEFAULTS, **settings})
        context.on("page", watch)
        if settings.get("java_script_enabled") is False:
            scripts_off(context)
        return context

    return factory


@pytest.fixture
def blank_page(browser):
    """A watched page of a context of its own, on no server (tests of the harness route what it loads)."""
    context = browser.new_context(**CONTEXT_DEFAULTS)
    page = context.new_page()
    watch(page)
    yield page
    context.close()


@pytest.fixture(autouse=True)
def _live_server_answers_no_5xx(request):
    if "live_server" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("live_server")
    server.forget()
    yield
    errors = server.replies_5xx()
    assert not errors, f"the live server answered 5xx (tracebacks in the captured werkzeug log): {errors}"
