"""A camera for the browser tests: Chromium's fake video capture fed a .y4m video of a real QR code.

Chromium plays a YUV4MPEG2 file as its camera (`--use-fake-device-for-media-stream
--use-file-for-fake-video-capture=FILE.y4m`, looped) and grants the camera without asking
(`--use-fake-ui-for-media-stream`). A QR code drawn large with its quiet zone on a white frame, a few
identical frames, is all the scan page needs to read it.

    token = build.presence_code(alice)["token"]              # as /me/code would show it
    video = presence_qr_y4m(token, tmp_path / "code.y4m")
    with fake_camera_browser(playwright, video) as browser:
        context = camera_context(browser, live_server.url)
        page = context.new_page()
        ...

The context is watched like those of the `page` fixture (check_page sees its console errors and requests).
"""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

from tests.support.browsers import CHROMIUM

FRAME = (640, 480)
FRAMES = 5
FPS = 10


def qr_image(text: str, *, side: int = 400) -> Image.Image:
    """*text* as a QR code (error correction M, 4-module quiet zone, as the app draws it), *side* px square."""
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4, box_size=1)
    code.add_data(text)
    code.make(fit=True)
    modules = code.make_image(fill_color="black", back_color="white").get_image().convert("L")
    scale = max(1, side // modules.width)
    return modules.resize((modules.width * scale, modules.height * scale), Image.NEAREST)


def write_y4m(image: Image.Image, path: Path, *, size: tuple[int, int] = FRAME, frames: int = FRAMES,
              fps: int = FPS) -> Path:
    """*image* centred on a white frame of *size*, *frames* identical frames of YUV4MPEG2 4:2:0 (grey: U = V = 128)."""
    width, height = size
    frame = Image.new("L", size, 255)
    frame.paste(image.convert("L"), ((width - image.width) // 2, (height - image.height) // 2))
    luma = frame.tobytes()
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(luma)
            out.write(chroma)
            out.write(chroma)
    return path


def presence_qr_y4m(token: str, path: Path, **video) -> Path:
    """A camera video of *token*'s QR code (a presence code or a voucher card), written to *path*."""
    return write_y4m(qr_image(token.upper()), path, **video)


@contextlib.contextmanager
def fake_camera_browser(playwright, video: Path, *, headless: bool = True) -> Iterator:
    """A Chromium of its own whose camera plays *video* (the suite's browser has no camera)."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=headless, args=[
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={video}"])
    try:
        yield browser
    finally:
        browser.close()


def camera_context(browser, base_url: str, **settings):
    """A context on *base_url* as the suite's (Chinese, Shanghai time, desk width), the camera allowed, its
    pages watched for check_page."""
    from tests.browser.conftest import CONTEXT_DEFAULTS
    from tests.browser.harness import watch

    context = browser.new_context(**{"base_url": base_url, **CONTEXT_DEFAULTS, **settings})
    context.grant_permissions(["camera"], origin=base_url)
    context.on("page", watch)
    return context
