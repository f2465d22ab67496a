"""Driving the console's pages with Flask's test client: forms with their CSRF token, logins, text."""

import html
import re

CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')
TAG_RE = re.compile(r"<[^>]+>")


def csrf_from(page_html: str) -> str:
    """The CSRF token of the first form on a page (AssertionError when the page has none)."""
    found = CSRF_RE.search(page_html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def post_form(client, path: str, data: dict, *, from_page: str | None = None, **kwargs):
    """Open *from_page* (default: *path*), then post *data* with that page's CSRF token."""
    page = client.get(from_page or path)
    return client.post(path, data={**data, "csrf_token": csrf_from(page.get_data(as_text=True))}, **kwargs)


def login_page(client, username: str, password: str, **kwargs):
    """Log in through the /login form; returns the response to the POST (a redirect when it worked)."""
    return post_form(client, "/login", {"username": username, "password": password}, **kwargs)


def visible_text(response) -> str:
    """The page's text as a reader sees it: tags dropped, entities decoded, whitespace squeezed."""
    body = response.get_data(as_text=True)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(html.unescape(TAG_RE.sub(" ", body)).split())


SVG_RE = re.compile(r'<svg[^>]*class="qr"[^>]*viewBox="0 0 (\d+) \1"[^>]*>.*?<path d="([^"]+)"', re.S)
RUN_RE = re.compile(r"M(\d+) (\d+)h(\d+)v1h-\d+z")


def qr_codes_in(page_html: str) -> list[str]:
    """The text of every QR code a page draws as inline SVG (vouchers.cards.qr_svg), decoded with zxing-cpp."""
    import zxingcpp
    from PIL import Image, ImageDraw

    decoded = []
    for size, path in SVG_RE.findall(page_html):
        scale, side = 8, int(size)
        image = Image.new("L", (side * scale, side * scale), 255)
        draw = ImageDraw.Draw(image)
        for col, row, run in RUN_RE.findall(path):
            x, y, width = int(col), int(row), int(run)
            draw.rectangle([x * scale, y * scale, (x + width) * scale - 1, (y + 1) * scale - 1], fill=0)
        found = zxingcpp.read_barcode(image)
        decoded.append(found.text if found else None)
    return decoded
