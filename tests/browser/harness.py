"""What every page test of the console checks in the browser (README, How we test).

- `check_page(page)`: axe-core (vendored, tests/browser/vendor/) finds no violation of WCAG 2.2 AA
  (tags wcag2a, wcag2aa, wcag21aa, wcag22aa); the page logged no console error and threw no uncaught
  exception; it asked nothing of another origin (no CDN, no web font, no tracker). The last two
  cover everything since the page was opened, so the page must be watched from its start: the
  `page` fixture and every context of `new_context` are (tests/browser/conftest.py); `watch(page)`
  does it for a page made otherwise.
- `check_elder_rules(page)`: the elder profile of the recipient pages (适老化): text ≥ 18 px,
  contrast of text with its background ≥ 7:1, every link, button and field ≥ 48 × 48 px, line
  height of body text (not headings) ≥ 1.5 — and the same with the 大字模式 switch on (class
  `large-text` on <html>) with text ≥ 24 px.
- `shoot(page, name)`: full-page PNGs at phone (360 × 780) and desk (1280 × 900) widths, in
  tests/browser/screenshots/ (git-ignored) or, with SCREENSHOTS_TO_DOCS=1, in docs/screenshots/.
- `each_width(page)`: runs the body of a loop once per width, the viewport set to it.
- `log_in(page, user)`: through the /login form (fields labelled 用户名 and 密码), like a person.

Each check gathers every problem of the page and fails once, listing them all readably.
"""

import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import PASSWORD

HERE = Path(__file__).resolve().parent
AXE_PATH = HERE / "vendor" / "axe.min.js"
AXE_TAGS = ("wcag2a", "wcag2aa", "wcag21aa", "wcag22aa")
AXE_TIMEOUT_SECONDS = 60  # Playwright's evaluate waits for ever; a stuck axe fails the test instead
WIDTHS = {"phone": {"width": 360, "height": 780}, "desk": {"width": 1280, "height": 900}}
SCREENSHOTS = HERE / "screenshots"
DOCS_SCREENSHOTS = HERE.parents[1] / "docs" / "screenshots"
LARGE_TEXT_CLASS = "large-text"
# The elder profile (适老化): minimum sizes in CSS px, minimum ratios.
ELDER_FONT_PX, ELDER_LARGE_FONT_PX = 18, 24
ELDER_CONTRAST = 7.0
ELDER_TARGET_PX = 48
ELDER_LINE_HEIGHT = 1.5
# Schemes whose "requests" never leave the browser.
LOCAL_SCHEMES = {"data", "blob", "about", "chrome-error"}


# --- watching a page from its start -----------------------------------------------------------------

@dataclass
class PageWatch:
    """What a page did since it was opened: console errors, uncaught exceptions, every request."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def clear(self) -> None:
        """Forget what was seen so far (after a step whose console error is expected, e.g. a 4xx page)."""
        self.console_errors.clear()
        self.requests.clear()


_watches: "weakref.WeakKeyDictionary[object, PageWatch]" = weakref.WeakKeyDictionary()


def watch(page) -> PageWatch:
    """Start recording *page*'s console errors, uncaught exceptions and requests (once per page)."""
    if page in _watches:
        return _watches[page]
    seen = PageWatch()

    def on_console(message):
        if message.type == "error":
            location = message.location or {}
            seen.console_errors.append(f"console error: {message.text} ({location.get('url', '?')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: seen.console_errors.append(f"uncaught exception: {error}"))
    page.on("request", lambda request: seen.requests.append(request.url))
    _watches[page] = seen
    return seen


_scripts_off: "weakref.WeakSet[object]" = weakref.WeakSet()


def scripts_off(context) -> None:
    """Note that *context* runs no page script (`java_script_enabled=False`): axe cannot run there."""
    _scripts_off.add(context)


def watched(page) -> PageWatch:
    if page not in _watches:
        raise AssertionError("this page is not watched: open it through the `page` fixture or `new_context`, "
                             "or call watch(page) before its first goto")
    return _watches[page]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def foreign_requests(page) -> list[str]:
    """Requests of *page* (since it was opened) to an origin other than the one it shows now."""
    own = origin(page.url)
    return [url for url in watched(page).requests
            if urlsplit(url).scheme not in LOCAL_SCHEMES and origin(url) != own]


# --- axe-core ------------------------------------------------------------------------------------------

_axe_source: str | None = None


def axe_source() -> str:
    global _axe_source
    if _axe_source is None:
        _axe_source = AXE_PATH.read_text(encoding="utf-8")
    return _axe_source


def axe_violations(page) -> list[dict]:
    """Run axe-core on *page* with the WCAG 2.2 AA tags; its violations (rule, impact, nodes).

    axe is evaluated through the DevTools protocol, which the page's Content-Security-Policy (no inline
    script) does not apply to: the page is tested exactly as served.
    """
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    result = page.evaluate(
        """([tags, seconds]) => Promise.race([
             axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']}),
             new Promise((_, fail) => setTimeout(() => fail(new Error(`axe took over ${seconds} s`)), seconds * 1000)),
           ])""",
        [list(AXE_TAGS), AXE_TIMEOUT_SECONDS])
    return result["violations"]


def describe_violations(violations: list[dict]) -> list[str]:
    lines = []
    for violation in violations:
        lines.append(f"axe {violation['id']} ({violation.get('impact') or 'no impact given'}): {violation['help']} "
                     f"— {violation['helpUrl']}")
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            summary = " ".join((node.get("failureSummary") or "").split())
            lines.append(f"    at {target}: {summary}")
            lines.append(f"       {node['html'][:200]}")
    return lines


def where(page) -> str:
    size = page.viewport_size or {}
    return f"{page.url} at {size.get('width')}×{size.get('height')}"


def check_page(page) -> None:
    """Fail, listing every problem, unless *page* passes axe (WCAG 2.2 AA), logged no console error
    and threw nothing since it was opened, and asked nothing of another origin."""
    seen = watched(page)
    # axe schedules its work with timers, which never fire in a page whose scripts are off: it would
    # wait for ever. The markup is the same with scripts on, so check it there.
    assert page.context not in _scripts_off, "check_page needs JavaScript on (axe runs in the page)"
    problems = describe_violations(axe_violations(page))
    problems += seen.console_errors
    problems += [f"request to another origin: {url}" for url in foreign_requests(page)]
    assert not problems, f"{where(page)}: {len(problems)} problem(s)\n" + "\n".join(problems)


# --- the elder profile (适老化) -------------------------------------------------------------------------

# Runs in the page; returns problems as strings. Text elements are those with a text node of their own;
# controls count for the font size too. Line height is a rule of body text: headings may be set tighter.
# Contrast: the text colour over the backgrounds of the element and its ancestors, composited down to
# the (white) canvas; text over a background image cannot be measured this way and is reported as such.
ELDER_RULES_JS = r"""
([minFont, minContrast, minTarget, minLineHeight]) => {
  const problems = [];
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const ctx = canvas.getContext('2d', {willReadFrequently: true});
  const parse = (text) => {
    const m = text.match(/^rgba?\(\s*([\d.]+)[ ,]+([\d.]+)[ ,]+([\d.]+)(?:\s*[,/]\s*([\d.]+)(%?))?\s*\)$/);
    if (m) {
      let a = m[4] === undefined ? 1 : parseFloat(m[4]);
      if (m[5] === '%') a /= 100;
      return [parseFloat(m[1]), parseFloat(m[2]), parseFloat(m[3]), a];
    }
    ctx.clearRect(0, 0, 1, 1);        // any other colour syntax: let the canvas turn it into sRGB
    ctx.fillStyle = text;
    ctx.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, bottom) => {     // composite colour *top* (with alpha) over opaque *bottom*
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [l1, l2] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (l1 + 0.05) / (l2 + 0.05);
  };
  const background = (el) => {        // [colour] or [null, why]
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (style.backgroundImage !== 'none') return [null, 'text over a background image'];
      const colour = parse(style.backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] >= 1) break;
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return [result];
  };
  const name = (el) => {
    let text = el.tagName.toLowerCase();
    if (el.id) text += '#' + el.id;
    for (const c of el.classList) text += '.' + c;
    const words = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim().replace(/\s+/g, ' ');
    return words ? `${text} "${words.slice(0, 40)}"` : text;
  };
  const shown = (el) => {
    const style = getComputedStyle(el);
    if (style.visibility !== 'visible' || style.display === 'none') return false;
    const box = el.getBoundingClientRect();
    return box.width > 1 && box.height > 1;  // not display:none, not the 1 px "visually hidden" pattern
  };

  const texts = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || !node.textContent.trim()) continue;
    if (parent.closest('script, style, noscript, template')) continue;
    texts.add(parent);
  }
  for (const el of document.body.querySelectorAll('input:not([type=hidden]), select, textarea')) texts.add(el);

  for (const el of texts) {
    if (!shown(el)) continue;
    const style = getComputedStyle(el);
    const size = parseFloat(style.fontSize);
    if (size < minFont - 0.01) problems.push(`font size ${size}px < ${minFont}px: ${name(el)}`);
    if (!['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName) && !el.closest('h1, h2, h3, h4, h5, h6')) {
      const lineHeight = style.lineHeight === 'normal' ? null : parseFloat(style.lineHeight) / size;
      if (lineHeight === null || lineHeight < minLineHeight - 0.01) {
        problems.push(`line height ${lineHeight === null ? 'normal' : lineHeight.toFixed(2)} < ${minLineHeight}: `
                      + name(el));
      }
    }
    const [back, why] = background(el);
    if (!back) {
      problems.push(`contrast cannot be measured (${why}): ${name(el)}`);
      continue;
    }
    const contrast = ratio(over(parse(style.color), back), back);
    if (contrast < minContrast - 0.005) {
      problems.push(`contrast ${contrast.toFixed(2)}:1 < ${minContrast}:1 (${style.color} on `
                    + `rgb(${back.slice(0, 3).map(Math.round).join(', ')})): ${name(el)}`);
    }
  }

  const targets = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button], [role=link]';
  for (const el of document.body.querySelectorAll(targets)) {
    if (!shown(el)) continue;
    let box = el.getBoundingClientRect();
    // A check box or radio button is hit through its label too: the larger of the two is the target.
    for (const label of el.labels || []) {
      const outer = label.getBoundingClientRect();
      if (outer.width * outer.height > box.width * box.height) box = outer;
    }
    if (box.width < minTarget - 0.5 || box.height < minTarget - 0.5) {
      problems.push(`target ${Math.round(box.width)}×${Math.round(box.height)} px < ${minTarget}×${minTarget}: `
                    + name(el));
    }
  }
  return problems;
}
"""


def elder_problems(page, *, min_font: int) -> list[str]:
    return page.evaluate(ELDER_RULES_JS, [min_font, ELDER_CONTRAST, ELDER_TARGET_PX, ELDER_LINE_HEIGHT])


def set_large_text(page, on: bool) -> None:
    """Put or take away the 大字模式 class on <html>, as the layout does from the user's preference."""
    page.evaluate("([name, on]) => document.documentElement.classList.toggle(name, on)", [LARGE_TEXT_CLASS, on])


def has_large_text(page) -> bool:
    return page.evaluate("name => document.documentElement.classList.contains(name)", LARGE_TEXT_CLASS)


def check_elder_rules(page) -> None:
    """Fail, listing every problem, unless *page* follows the elder profile as shown and with 大字模式.

    As shown: text ≥ 24 px when its <html> has the class `large-text` (the switch is on), else ≥ 18 px.
    When the switch is off, the class is then put on for a second pass (text ≥ 24 px, and every other
    rule still holds in the larger layout) and taken away again.
    """
    large = has_large_text(page)
    problems = elder_problems(page, min_font=ELDER_LARGE_FONT_PX if large else ELDER_FONT_PX)
    if not large:
        set_large_text(page, True)
        try:
            problems += [f"[大字模式] {problem}" for problem in elder_problems(page, min_font=ELDER_LARGE_FONT_PX)]
        finally:
            set_large_text(page, False)
    assert not problems, f"{where(page)}: {len(problems)} elder-profile problem(s)\n" + "\n".join(problems)


# --- widths and screenshots ------------------------------------------------------------------------------

def each_width(page):
    """Loop over the widths (`for width in each_width(page): …`), the viewport set to each; restored after."""
    original = page.viewport_size
    try:
        for width, size in WIDTHS.items():
            page.set_viewport_size(size)
            yield width
    finally:
        if original:
            page.set_viewport_size(original)


def screenshot_folder() -> Path:
    return DOCS_SCREENSHOTS if os.environ.get("SCREENSHOTS_TO_DOCS") == "1" else SCREENSHOTS


def shoot(page, name: str) -> list[Path]:
    """Full-page PNGs of *page* at each width: `<name>-phone.png`, `<name>-desk.png`. Returns the paths."""
    folder = screenshot_folder()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for width in each_width(page):
        page.evaluate("() => document.fonts.ready.then(() => true)")  # laid out with its final fonts
        path = folder / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        paths.append(path)
    return paths


# --- logging in like a person ------------------------------------------------------------------------------

def log_in(page, user, password: str = PASSWORD):
    """Log in as *user* (a User or a username) through the /login form (in Chinese, the default).

    Returns the response of the page it lands on (the role's home, or /login again when refused).
    """
    username = user if isinstance(user, str) else user.username
    page.goto("/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    form = page.locator("form").filter(has=page.get_by_label("密码"))
    with page.expect_navigation() as navigation:
        form.locator("button[type=submit], button:not([type]), input[type=submit]").first.click()
    return navigation.value
