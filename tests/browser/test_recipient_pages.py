"""The recipients' pages and acting for a recipient (代办) in a real browser, on both databases: every page
passes axe and the elder profile at phone and desk widths; the whole flow of a month — see the vouchers,
switch provider with a reason, show the code, the provider redeems its typed short code through the API,
rate the service — works by clicking; the code renews itself, and works without JavaScript; the QR code on
the screen decodes to the code the API gave; the cards print one A6 card a page."""

import io
import re

import pytest
import zxingcpp
from PIL import Image

from tests.browser.harness import check_elder_rules, check_page, each_width, log_in, shoot, watched
from vouchers import tokens
from vouchers.models import ChoiceEvent


@pytest.fixture
def world(build):
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.rated_services(world.p2, [world.bob], world.programme, world.meal, [5, 4, 4])
    served = build.redeem(world.p1, world.alice, world.meal)
    build.redeem(world.p1, world.alice, world.meal)
    build.rate(served, 4)
    return world


def recipient_pages(world) -> dict[str, str]:
    return {"home": "/me", "providers": f"/me/providers/{world.meal}",
            "switch-reason": f"/me/providers/{world.meal}/choose?provider_id={world.p2.id}",
            "first-choice": f"/me/providers/{world.bath}/choose?provider_id={world.p1.id}",
            "code": "/me/code", "services": "/me/services", "cards": "/me/cards"}


def acting_pages(world) -> dict[str, str]:
    base = f"/staff/recipients/{world.alice.id}/act"
    return {"home": base, "providers": f"{base}/providers/{world.meal}", "services": f"{base}/services",
            "cards": f"{base}/cards"}


def check_everything(page, name: str) -> None:
    for _width in each_width(page):
        check_page(page)
        check_elder_rules(page)
    shoot(page, name)


@pytest.mark.parametrize("name", ["home", "providers", "switch-reason", "first-choice", "code", "services", "cards"])
def test_every_recipient_page_passes_the_checks_at_both_widths(page, world, name):
    log_in(page, world.alice.user)
    response = page.goto(recipient_pages(world)[name])
    assert response.status == 200
    check_everything(page, f"recipient-{name}")


@pytest.mark.parametrize("name", ["home", "providers", "services", "cards"])
def test_every_acting_page_passes_the_checks_with_its_banner(page, world, name):
    log_in(page, world.admin)
    response = page.goto(acting_pages(world)[name])
    assert response.status == 200
    assert f"您正在代 {world.alice.name} 办理" in page.locator("main").inner_text()
    check_everything(page, f"acting-{name}")


def test_refused_forms_pass_the_checks_too(page, world):
    log_in(page, world.alice.user)
    page.goto(f"/me/providers/{world.meal}/choose?provider_id={world.p2.id}")
    page.get_by_label("别的原因").check()
    with page.expect_navigation():
        page.get_by_role("button", name="下一步").click()
    main = page.locator("main").inner_text()
    assert "请修改下面标出的内容" in main
    watched(page).clear()  # the browser logs the 422 of the refused form itself
    check_everything(page, "recipient-switch-refused")
    page.goto("/me/services")
    with page.expect_navigation():
        page.get_by_role("button", name="提交评价").click()
    assert "请选一个分数" in page.locator("main").inner_text()
    watched(page).clear()
    check_everything(page, "recipient-rating-refused")


def short_code_on(page) -> str:
    return "".join(page.locator(".short-code").inner_text().split())


def qr_on(page) -> str:
    """The QR code on the screen, read from a screenshot of it as a phone's camera would."""
    shot = page.locator(".qr-box").screenshot()
    found = zxingcpp.read_barcode(Image.open(io.BytesIO(shot)))
    assert found is not None, "no QR code could be read off the screen"
    return found.text


def test_a_month_by_clicking(page, app, build, world, live_server):
    """A recipient sees the vouchers, switches provider with a reason, opens the code; the provider types its
    short code into the API; the recipient rates the service."""
    log_in(page, world.alice.user)
    main = page.locator("main")
    assert "还剩 2 次" in main.inner_text()

    with page.expect_navigation():
        page.get_by_role("link", name=re.compile("换一家服务机构.*助餐")).click()
    with page.expect_navigation():
        page.get_by_role("link", name=re.compile(f"选这一家.*{world.p2.name}")).click()
    page.get_by_label("上门不准时").check()
    page.get_by_label("想多说几句").fill("中午的饭总是一点半才送到")
    with page.expect_navigation():
        page.get_by_role("button", name="下一步").click()
    assert "上门不准时" in main.inner_text()
    with page.expect_navigation():
        page.get_by_role("button", name="确认更换").click()
    assert f"“助餐”由 {world.p2.name} 为您服务" in main.inner_text()
    [switch] = build.read(lambda: ChoiceEvent.query.filter(ChoiceEvent.switch_reason.isnot(None)).all())
    assert (switch.from_provider_id, switch.to_provider_id, switch.switch_reason, switch.switch_note) == (
        world.p1.id, world.p2.id, "timeliness", "中午的饭总是一点半才送到")

    with page.expect_navigation():
        page.get_by_role("link", name="我的码").click()
    short_code = short_code_on(page)
    assert re.fullmatch(r"\d{8}", short_code)
    with app.app_context():
        assert tokens.read_presence_token(qr_on(page), now=build.now()).recipient_id == world.alice.id
    scanner = page.request.post(f"{live_server.url}/api/v1/redemptions",
                                headers=build.headers(world.p2.user),
                                data={"short_code": f"{short_code[:4]} {short_code[4:]}", "item_code": world.meal})
    assert scanner.status == 201, scanner.text()
    redemption_id = scanner.json()["id"]
    assert build.redemption(redemption_id).presence == "typed_code"

    with page.expect_navigation():
        page.get_by_role("link", name="评价服务").click()
    service = page.locator(f"#service-{redemption_id}")
    service.get_by_role("radio", name="5 分 很满意").check()
    with page.expect_navigation():
        service.get_by_role("button", name="提交评价").click()
    assert "谢谢您的评价" in main.inner_text()
    assert "已评价：5 分，很满意" in page.locator(f"#service-{redemption_id}").inner_text()
    assert [r["score"] for r in build.ratings() if r["redemption_id"] == redemption_id] == [5]
    check_page(page)
    shoot(page, "recipient-rated")


def test_the_qr_code_and_the_short_code_are_one_presence_code(page, app, build, world, live_server):
    log_in(page, world.alice.user)
    page.goto("/me/code")
    token, short_code = qr_on(page), short_code_on(page)
    scanner = build.headers(world.p1.user)
    by_token = page.request.post(f"{live_server.url}/api/v1/redemptions", headers=scanner,
                                 data={"presence_token": token, "item_code": world.meal})
    assert by_token.status == 201, by_token.text()
    by_code = page.request.post(f"{live_server.url}/api/v1/redemptions", headers=scanner,
                                data={"short_code": short_code, "item_code": world.meal})
    assert by_code.status == 409
    assert by_code.json()["error"]["code"] == "token_already_used"


def test_the_code_renews_itself_before_it_expires(page, app, world):
    ttl = app.config["PRESENCE_CODE_TTL_SECONDS"]
    app.config["PRESENCE_CODE_TTL_SECONDS"] = 13  # renewed 10 s before the end: after about 3 s
    try:
        log_in(page, world.alice.user)
        page.goto("/me/code")
        first = short_code_on(page)
        assert "还剩" in page.locator(".seconds-left").inner_text()
        page.wait_for_function(
            "first => document.querySelector('.short-code').innerText.replace(/\\s/g, '') !== first", arg=first,
            timeout=15_000)
        assert short_code_on(page) != first
        assert "已经换了一个新码" in page.locator("#presence-status").inner_text()
        check_page(page)
    finally:
        app.config["PRESENCE_CODE_TTL_SECONDS"] = ttl


def test_without_javascript_the_button_gives_a_new_code(new_context, world):
    page = new_context(java_script_enabled=False).new_page()
    log_in(page, world.alice.user)
    page.goto("/me/code")
    first = short_code_on(page)
    with page.expect_navigation():
        page.get_by_role("button", name="换一个码").click()
    assert page.url.endswith("/me/code")
    assert short_code_on(page) != first


def test_the_cards_print_one_a6_card_a_page(page, world):
    log_in(page, world.alice.user)
    page.goto("/me/cards")
    cards = page.locator(".voucher-card").count()
    assert cards == 4
    pdf = page.pdf(prefer_css_page_size=True)
    boxes = re.findall(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", pdf)
    assert len(boxes) == cards
    width, height = (float(value) for value in boxes[0])
    assert (round(width / 72 * 25.4), round(height / 72 * 25.4)) == (148, 105)  # A6 landscape, in mm


def test_an_admin_acting_records_a_phone_follow_up_by_clicking(page, build, world):
    build.choose(world.alice, world.programme, world.bath, world.p1)
    served = build.redeem(world.p1, world.alice, world.bath)
    log_in(page, world.admin)
    page.goto(f"/staff/recipients/{world.alice.id}/act/services")
    service = page.locator(f"#service-{served.id}")
    service.get_by_role("radio", name="2 分 不满意").check()
    service.get_by_label("想说的话").fill("老人说水不够热")
    with page.expect_navigation():
        service.get_by_role("button", name="提交评价").click()
    assert "电话回访时记录" in page.locator(f"#service-{served.id}").inner_text()
    [rating] = [r for r in build.ratings() if r["redemption_id"] == served.id]
    assert (rating["score"], rating["source"], rating["rated_by"]) == (2, "phone_followup", world.admin.id)
