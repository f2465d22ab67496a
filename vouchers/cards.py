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


def qr_matrix(text: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
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


def _font(size: int, *, cjk: bool) -> tuple[ImageFont.FreeTypeFont, bool]:
    if cjk:
        configured = current_app.config.get("CARD_FONT_PATH")
        for path in ([configured] if configured else []) + list(CJK_FONT_CANDIDATES):
            if path and Path(path).exists():
                return ImageFont.truetype(path, size), True
    return ImageFont.load_default(size=size), False


def format_yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def card_lines(*, serial: str, item_code: str, item_name: str, unit: str, face_value_fen: int, copay_fen: int,
               valid_from, valid_until, programme_name: str) -> list[tuple[str, str]]:
    """(label, text) pairs printed beside the QR code."""
    return [
        ("serial", serial),
        ("item", f"{item_name} ({item_code}) · 1 {unit}"),
        ("value", f"{format_yuan(face_value_fen)} paid by the programme"),
        ("copay", f"{format_yuan(copay_fen)} paid by you"),
        ("valid", f"{valid_from:%Y-%m-%d} – {valid_until:%Y-%m-%d}"),
        ("programme", programme_name),
    ]


def card_png(token: str, lines: list[tuple[str, str]], *, item_code: str) -> bytes:
    card = Image.new("RGB", CARD_SIZE, "white")
    qr = qr_matrix(token).make_image(fill_color="black", back_color="white").get_image().convert("RGB")
    side = CARD_SIZE[1] - 160
    card.paste(qr.resize((side, side), Image.NEAREST), (60, 80))
    draw = ImageDraw.Draw(card)
    big, has_cjk = _font(64, cjk=True)
    small, _ = _font(40, cjk=has_cjk)
    x, y = side + 120, 110
    for label, text in lines:
        if not has_cjk and not text.isascii():
            text = item_code if label == "item" else text.encode("ascii", "replace").decode()
        draw.text((x, y), label.upper(), fill="#555555", font=small)
        draw.text((x, y + 46), text, fill="black", font=big)
        y += 170
    buffer = io.BytesIO()
    card.save(buffer, format="PNG", dpi=(300, 300))
    return buffer.getvalue()


def card_svg(token: str, lines: list[tuple[str, str]]) -> str:
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
        for index, (label, value) in enumerate(lines))
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="148mm" height="105mm" viewBox="0 0 148 105" '
            'font-family="Noto Sans CJK SC, WenQuanYi Zen Hei, sans-serif">'
            f'<rect width="148" height="105" fill="white"/><g fill="black">{rects}</g>{text}</svg>')
