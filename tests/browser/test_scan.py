"""The scan at the door in a real browser, on both databases: a presence code (and a voucher card) read through
Chromium's fake camera fed a video of the real QR code; a refused camera scan that does not read the same code
again; a short code typed instead, the confirmation double-clicked, sent again as after a network drop and the
receipt reloaded (one redemption, one receipt); the same without JavaScript; a typed code of a recipient who chose
another provider. Every page passes check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at
phone and desk widths, and is photographed."""

import re

import pytest
from sqlalchemy import select

from marketplace.db import db
from tests.browser.harness import check_page, each_width, log_in, shoot
from tests.support.fake_camera import camera_context, fake_camera_browser, presence_qr_y4m
from vouchers.models import Redemption, Voucher

RECEIPT = re.compile(r".*/provider/receipts/\d+$")


def _door(build):
    """This month issued; alice chose p1 for meals, bob chose p2 for everything."""
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    build.choose(world.bob, world.programme, world.bath, world.p2)
    return world


def _redemptions(build) -> list[Redemption]:
    return build.read(lambda: db.session.scalars(select(Redemption).order_by(Redemption.id)).all())


def _checked(page, name: str) -> None:
    for _width in each_width(page):
        check_page(page)
    shoot(page, name)


@pytest.mark.parametrize("shown", ["presence_code", "voucher_card"])
def test_a_qr_code_read_through_the_camera_ends_in_a_receipt(playwright, live_server, build, tmp_path, shown):
    world = _door(build)
    if shown == "presence_code":
        token = build.presence_code(world.alice)["token"]  # what /me/code draws
    else:
        [voucher, *_] = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.meal)
        token = build.voucher_token(voucher)
    video = presence_qr_y4m(token, tmp_path / "camera.y4m")
    with fake_camera_browser(playwright, video) as browser:
        context = camera_context(browser, live_server.url)
        page = context.new_page()
        log_in(page, world.p1.user)
        page.goto("/provider/scan")  # the camera is allowed: it opens by itself, reads the code and posts it
        page.get_by_role("heading", name="确认服务").wait_for()
        assert "李**" in page.inner_text("main")
        _checked(page, f"provider-scan-camera-{shown}")
        if shown == "presence_code":
            page.get_by_role("radio", name=re.compile("助餐")).check()
        page.get_by_label("服务时长（分钟，可以不填）").fill("40")
        with page.expect_navigation(url=RECEIPT):
            page.get_by_role("button", name="确认核销").click()
        main = page.inner_text("main")
        assert "请向老人收取" in main
        assert "¥0.60" in main
        _checked(page, f"provider-receipt-{shown}")
        context.close()
    [made] = _redemptions(build)
    assert (made.recipient_id, made.provider_id, made.presence, made.duration_minutes) == (
        world.alice.id, world.p1.id, shown, 40)


def test_a_refused_scan_says_why_and_does_not_read_the_same_code_again(playwright, live_server, build, tmp_path):
    world = _door(build)
    video = presence_qr_y4m(build.presence_code(world.bob)["token"], tmp_path / "camera.y4m")  # bob chose p2
    with fake_camera_browser(playwright, video) as browser:
        context = camera_context(browser, live_server.url)
        page = context.new_page()
        log_in(page, world.p1.user)
        reads = []
        page.on("request", lambda request: request.method == "POST" and request.url.endswith("/provider/scan")
                and reads.append(request.url))
        page.goto("/provider/scan")
        page.locator("#error-summary").wait_for()
        assert "这位老人选的是别的服务机构" in page.locator("#error-summary").inner_text()
        # the page's own look at the camera permission has answered by the time this one does
        assert page.evaluate("() => navigator.permissions.query({name: 'camera'}).then(p => p.state)") == "granted"
        assert page.locator(".viewfinder").is_hidden()
        assert page.get_by_role("button", name="打开摄像头扫码").is_visible()
        assert len(reads) == 1
        watched_errors_are_the_refusal(page)
        _checked(page, "provider-scan-camera-refused")
        context.close()
    assert _redemptions(build) == []


def test_a_typed_code_double_clicked_retried_and_reloaded_redeems_once(page, build):
    world = _door(build)
    log_in(page, world.p1.user)
    page.goto("/provider/scan")
    _checked(page, "provider-scan")
    code = build.presence_code(world.alice)
    page.get_by_label("老人的 8 位数字码").fill(code["short_code_display"])
    page.get_by_role("button", name="下一步").click()
    page.get_by_role("heading", name="确认服务").wait_for()
    _checked(page, "provider-scan-offer")
    sent = page.evaluate("() => [...new FormData(document.querySelector('.offer-form'))]")
    page.get_by_role("button", name="确认核销").dblclick()  # Chromium itself sends one of the two submissions
    page.wait_for_url(RECEIPT)
    receipt_url = page.url
    page.reload()
    assert page.url == receipt_url
    assert "请向老人收取" in page.inner_text("main")
    # The same form once more, as a phone resends it after the network dropped: the first answer again.
    retried = page.evaluate("""(fields) => fetch('/provider/scan/confirm', {method: 'POST',
        body: new URLSearchParams(fields), credentials: 'same-origin'}).then(r => [r.status, r.url])""", sent)
    assert retried == [200, receipt_url]
    [made] = _redemptions(build)
    assert receipt_url.endswith(f"/provider/receipts/{made.id}")
    assert made.presence == "typed_code"
    _checked(page, "provider-receipt")


def test_without_javascript_the_typed_code_works(new_context, build):
    world = _door(build)
    page = new_context(java_script_enabled=False).new_page()
    log_in(page, world.p1.user)
    page.goto("/provider/scan")
    assert page.locator("#camera").is_hidden()
    code = build.presence_code(world.alice)
    page.get_by_label("老人的 8 位数字码").fill(code["short_code"])
    page.get_by_role("button", name="下一步").click()
    page.get_by_role("button", name="确认核销").click()
    page.wait_for_url(RECEIPT)
    assert "请向老人收取" in page.inner_text("main")
    assert len(_redemptions(build)) == 1


def test_a_recipient_who_chose_another_provider_is_refused_in_one_sentence(page, build):
    world = _door(build)
    log_in(page, world.p1.user)
    page.goto("/provider/scan")
    code = build.presence_code(world.bob)
    field = page.get_by_label("老人的 8 位数字码")
    field.fill(code["short_code_display"])
    page.get_by_role("button", name="下一步").click()
    page.locator("#error-summary").wait_for()
    assert "这位老人选的是别的服务机构" in page.locator("#error-summary").inner_text()
    assert page.get_by_label("老人的 8 位数字码").input_value() == code["short_code_display"]
    watched_errors_are_the_refusal(page)
    _checked(page, "provider-scan-refused")
    assert _redemptions(build) == []


def watched_errors_are_the_refusal(page) -> None:
    """The refusal is a 403 page: Chromium logs "Failed to load resource" for it; that is the expected answer."""
    from tests.browser.harness import watched

    seen = watched(page)
    unexpected = [error for error in seen.console_errors if "403" not in error]
    assert not unexpected, unexpected
    seen.clear()
