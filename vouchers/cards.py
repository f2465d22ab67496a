"""Printable voucher cards and presence-code images.

A card is A6 landscape at 300 dpi (1748 × 1240 px): the QR code of the signed voucher token on the
left (no personal data inside: only the voucher id and a MAC), and beside it what a person needs
to read — serial, item, value, co-payment, validity, programme. The PNG uses a CJK font when the
machine has one (CARD_FONT_PATH or a usual Noto/WenQuanYi path) and falls back to the item code; the
SVG carries the Chinese names as text for the printer's fonts.
"""

import io
from pathlib import Path
from xml.sax.saxutils import escape

import qrcode
from flask import current_app
from PIL import Image, ImageDraw, ImageFont
from qrcode.constants import ERROR_CORRECT_M

CARD_SIZE = (1748, 1240)
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
)


# One fixed data mask (ISO/IEC 18004 8.8) instead of trying all eight and scoring each: the scoring is
# 85% of the drawing time (6.7 ms → 1.0 ms a code), and a page of a month's cards draws dozens of codes.
# The mask only evens out dark and light areas; decoders read every mask (tests/test_voucher_cards.py and
# the console's tests decode codes drawn with it).
QR_MASK_PATTERN = 2


def qr_matrix(text: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, mask_pattern=QR_MASK_PATTERN)
    code.add_data(text.upper())
    code.make(fit=True)
    return code


def qr_png(text: str, *, box_size: int = 10) -> bytes:
    """A plain QR code image (for a presence code on a phone screen)."""
    code = qr_matrix(text)
    code.box_size = box_size
    image = code.make_image(fill_color="black", back_color="white").get_image()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def qr_svg(text: str, *, title: str = "") -> str:
    """The QR code as an inline SVG: one path of dark modules on white, quiet zone included, scaling to its
    box (the console draws presence codes and cards with it: no image request, no inline style)."""
    matrix = qr_matrix(text).get_matrix()
    size = len(matrix)
    runs = []  # each row's runs of dark modules, one rectangle each
    for row, cells in enumerate(matrix):
        col = 0
        while col < size:
            if cells[col]:
                start = col
                while col < size and cells[col]:
                    col += 1
                runs.append(f"M{start} {row}h{col - start}v1h-{col - start}z")
            else:
                col += 1
    dark = "".join(runs)
    label = f'<title>{escape(title)}</title>' if title else ""
    role = 'role="img"' if title else 'aria-hidden="true" focusable="false"'
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="qr" viewBox="0 0 {size} {size}" {role} '
            f'shape-rendering="crispEdges">{label}<rect width="{size}" height="{size}" fill="#fff"/>'
            f'<path d="{dark}" fill="#000"/></svg>')


def _font(size: int, *, cjk: bool) -> tuple[ImageFont.FreeTypeFont, bool]:
    if cjk:
        configured = current_app.config.get("CARD_FONT_PATH")
        for path in ([configured] if configured else []) + list(CJK_FONT_CANDIDATES):
            if path and Path(path).exists():
                return ImageFont.truetype(path, size), True
    return ImageFont.load_default(size=size), False


def format_money(fen: int, *, symbol: str = "¥") -> str:
    return f"{symbol}{fen // 100}.{fen % 100:02d}"


def card_lines(*, serial: str, item_code: str, item_name: str, unit: str, face_value_fen: int, copay_fen: int,
               valid_from, valid_until, programme_id: int, programme_name: str) -> list[tuple[str, str, str]]:
    """(label, text, plain-ASCII text) printed beside the QR code; the ASCII form is for fonts without CJK."""
    return [
        ("serial", serial, serial),
        ("service", f"{item_name} · 1 {unit} ({item_code})", f"{item_code} x 1"),
        ("programme pays", format_money(face_value_fen), format_money(face_value_fen, symbol="CNY ")),
        ("you pay", format_money(copay_fen), format_money(copay_fen, symbol="CNY ")),
        ("valid", f"{valid_from:%Y-%m-%d} – {valid_until:%Y-%m-%d}",
         f"{valid_from:%Y-%m-%d} to {valid_until:%Y-%m-%d}"),
        ("programme", programme_name, f"programme no. {programme_id}"),
    ]


def card_png(token: str, lines: list[tuple[str, str, str]]) -> bytes:
    width, height = CARD_SIZE
    card = Image.new("RGB", CARD_SIZE, "white")
    qr = qr_matrix(token).make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    side = 760
    card.paste(qr.resize((side, side), Image.NEAREST), (40, (height - side) // 2))
    draw = ImageDraw.Draw(card)
    big, has_cjk = _font(58, cjk=True)
    small, _ = _font(34, cjk=has_cjk)
    x, y = side + 80, 120
    for label, text, plain in lines:
        shown = text if has_cjk else plain
        while draw.textlength(shown, font=big) > width - x - 40 and len(shown) > 4:
            shown = shown[:-2] + "…" if has_cjk else shown[:-4] + "..."
        draw.text((x, y), label.upper(), fill="#555555", font=small)
        draw.text((x, y + 42), shown, fill="black", font=big)
        y += 170
    buffer = io.BytesIO()
    card.save(buffer, format="PNG", dpi=(300, 300))
    return buffer.getvalue()


def card_svg(token: str, lines: list[tuple[str, str, str]]) -> str:
    code = qr_matrix(token)
    matrix = code.get_matrix()
    modules = len(matrix)
    side_mm = 95.0
    cell = side_mm / modules
    rects = "".join(
        f'<rect x="{5 + col * cell:.3f}" y="{5 + row * cell:.3f}" width="{cell:.3f}" height="{cell:.3f}"/>'
        for row, cells in enumerate(matrix) for col, dark in enumerate(cells) if dark)
    text = "".join(
        f'<text x="105" y="{14 + index * 15}" font-size="3.2" fill="#555">{escape(label.upper())}</text>'
        f'<text x="105" y="{20 + index * 15}" font-size="5">{escape(value)}</text>'
        for index, (label, value, _plain) in enumerate(lines))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="148mm" height="105mm" viewBox="0 0 148 105" '
            'font-family="Noto Sans CJK SC, WenQuanYi Zen Hei, sans-serif">'
            f'<rect width="148" height="105" fill="white"/><g fill="black">{rects}</g>{text}</svg>')
