"""The scan at the door (/provider/scan → the services on offer → confirm → /provider/receipts/<id>), driven with
the test client on both databases: a typed short code, a scanned presence code and a voucher card each end in one
redemption through the API's own service and a receipt (serial, item, face value, the co-payment to collect, no
full name); reading a code uses nothing up; a form posted twice redeems once and shows the same receipt; every
refusal is the scan page again with one sentence and the typed code kept; the page says when the camera cannot
work (not HTTPS, not localhost)."""

import html
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from marketplace.db import db
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, post_form, visible_text
from vouchers.models import Redemption, Voucher
from vouchers.serials import serial_for

ALICE_MEAL_COPAY, ALICE_MEAL_FACE = 60, 1140  # alice is low_income: 5 % of the 1200 meal
BOB_MEAL_COPAY, BOB_MEAL_FACE = 240, 960  # bob pays the default 20 %
INPUT_RE = re.compile(r"<input\b[^>]*>")
ATTR_RE = re.compile(r'(\w[\w-]*)="([^"]*)"')


@pytest.fixture
def door(build, client):
    """The standard world, this month issued; alice chose p1 for meals and p2 for baths, bob p2 for both; the
    client is logged in as p1's scanning staff."""
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.alice, world.programme, world.bath, world.p2)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    build.choose(world.bob, world.programme, world.bath, world.p2)
    assert login_page(client, world.p1.user.username, PASSWORD).status_code == 302
    return world


def inputs(page_html: str) -> list[dict]:
    return [{name: html.unescape(value) for name, value in ATTR_RE.findall(tag)} for tag in INPUT_RE.findall(page_html)]


def offer_form(page_html: str, **choices) -> dict:
    """The confirmation form of an offer page as a browser would post it: its hidden fields, the radio button
    checked (or *choices*), plus *choices*."""
    form = {}
    for field in inputs(page_html):
        if field.get("type") == "hidden" or (field.get("type") == "radio" and "checked" in field):
            form[field["name"]] = field.get("value", "")
    # the regex keeps only name="value" pairs: a bare `checked` attribute is found by a second look
    for tag in INPUT_RE.findall(page_html):
        if 'type="radio"' in tag and re.search(r"\schecked\b", tag):
            form["item_code"] = ATTR_RE.search(tag[tag.index('value="'):]).group(2)
    form.pop("scanned", None)
    return {**form, **choices}


def read_code(client, **fields):
    """Post a code on the scan page as the form does (typed `short_code`, or the camera's `scanned`)."""
    return post_form(client, "/provider/scan", {"short_code": "", "scanned": "", **fields})


def redemptions(build) -> list[Redemption]:
    return build.read(lambda: db.session.scalars(select(Redemption).order_by(Redemption.id)).all())


def refused_with(response, status: int, sentence: str) -> str:
    assert response.status_code == status, visible_text(response)
    text = visible_text(response)
    assert sentence in text, text
    assert "扫码核销" in text  # the scan page again
    return text


# --- the whole way: code → offer → confirm → receipt ------------------------------------------------------

def test_a_typed_short_code_offers_the_services_of_this_provider_and_confirming_shows_the_receipt(build, client,
                                                                                                   door):
    code = build.presence_code(door.alice)
    offer = read_code(client, short_code=code["short_code_display"])
    assert offer.status_code == 200
    text = visible_text(offer)
    assert "李**" in text
    assert "李桂英" not in text
    assert "助餐" in text
    assert "助浴" not in text
    assert "向老人收取 ¥0.60" in text
    assert "政府支付 ¥11.40" in text
    assert redemptions(build) == []  # reading the code redeemed nothing

    form = offer_form(offer.get_data(as_text=True), duration_minutes="45", notes="饭菜已送到")
    assert form["item_code"] == door.meal
    assert form["short_code"] == code["short_code"]
    done = client.post("/provider/scan/confirm", data=form)
    assert done.status_code == 303
    [made] = redemptions(build)
    assert done.location == f"/provider/receipts/{made.id}"
    assert (made.provider_id, made.recipient_id, made.item_code, made.presence) == (
        door.p1.id, door.alice.id, door.meal, "typed_code")
    assert (made.face_value_fen, made.copay_fen, made.duration_minutes, made.notes) == (
        ALICE_MEAL_FACE, ALICE_MEAL_COPAY, 45, "饭菜已送到")

    receipt = client.get(done.location)
    assert receipt.status_code == 200
    text = visible_text(receipt)
    assert "核销成功" in text
    assert "请向老人收取 ¥0.60" in text
    assert serial_for(made.voucher_id) in text
    assert "助餐" in text
    assert "¥11.40" in text
    assert "李**" in text
    assert "李桂英" not in text
    assert door.alice.id_number_masked not in text


def test_a_scanned_presence_code_redeems_as_a_scan(build, client, door):
    token = build.presence_token(door.bob)
    offer = read_code(client, scanned=token)
    assert offer.status_code == 403  # bob chose p2 for everything
    build.choose(door.bob, door.programme, door.meal, door.p1, reason="timeliness")
    token = build.presence_token(door.bob)
    offer = read_code(client, scanned=f"  {token.lower()} ")
    assert offer.status_code == 200
    assert "张**" in visible_text(offer)
    done = client.post("/provider/scan/confirm", data=offer_form(offer.get_data(as_text=True)))
    assert done.status_code == 303
    [made] = redemptions(build)
    assert (made.recipient_id, made.item_code, made.presence, made.copay_fen) == (
        door.bob.id, door.meal, "presence_code", BOB_MEAL_COPAY)
    assert "请向老人收取 ¥2.40" in visible_text(client.get(done.location))


def test_a_voucher_card_fixes_the_item(build, client, door):
    [meal_voucher, *_] = build.vouchers(Voucher.recipient_id == door.alice.id, Voucher.item_code == door.meal)
    offer = read_code(client, scanned=build.voucher_token(meal_voucher))
    assert offer.status_code == 200
    page = offer.get_data(as_text=True)
    assert "服务券上的服务：助餐" in visible_text(offer)
    assert 'name="item_code"' not in page
    done = client.post("/provider/scan/confirm", data=offer_form(page))
    assert done.status_code == 303
    [made] = redemptions(build)
    assert (made.voucher_id, made.presence) == (meal_voucher.id, "voucher_card")


def test_reading_a_code_uses_nothing_up(build, client, door):
    code = build.presence_code(door.alice)
    first = read_code(client, short_code=code["short_code"])
    second = read_code(client, short_code=code["short_code"])
    assert first.status_code == second.status_code == 200
    assert client.post("/provider/scan/confirm", data=offer_form(second.get_data(as_text=True))).status_code == 303
    assert len(redemptions(build)) == 1


# --- one redemption per form ----------------------------------------------------------------------------

def test_the_same_form_posted_twice_redeems_once_and_shows_the_same_receipt(build, client, door):
    offer = read_code(client, scanned=build.presence_token(door.alice))
    form = offer_form(offer.get_data(as_text=True))
    first = client.post("/provider/scan/confirm", data=form)
    again = client.post("/provider/scan/confirm", data=form)  # a double tap, a retry after the network dropped
    assert first.status_code == again.status_code == 303
    assert first.location == again.location
    assert len(redemptions(build)) == 1
    assert client.get(first.location).status_code == 200  # the reload of the receipt


def test_a_second_form_for_a_used_code_is_refused_without_a_second_redemption(build, client, door):
    code = build.presence_code(door.alice)
    page_one = read_code(client, short_code=code["short_code"]).get_data(as_text=True)
    page_two = read_code(client, short_code=code["short_code"]).get_data(as_text=True)  # another tab
    assert client.post("/provider/scan/confirm", data=offer_form(page_one)).status_code == 303
    answer = client.post("/provider/scan/confirm", data=offer_form(page_two))
    text = refused_with(answer, 409, "这个码已经用过了")
    assert len(redemptions(build)) == 1
    assert f'value="{code["short_code"]}"' in answer.get_data(as_text=True)  # the typed code is kept
    assert "请老人在手机上重新打开“我的码”" in text


def test_a_form_without_its_key_redeems_nothing(build, client, door):
    offer = read_code(client, scanned=build.presence_token(door.alice))
    form = offer_form(offer.get_data(as_text=True))
    del form["form_key"]
    assert client.post("/provider/scan/confirm", data=form).status_code == 403
    assert redemptions(build) == []


# --- fields of the confirmation -------------------------------------------------------------------------

def test_wrong_minutes_show_the_offer_again_with_the_message_beside_the_field(build, client, door):
    offer = read_code(client, scanned=build.presence_token(door.alice))
    answer = client.post("/provider/scan/confirm",
                         data=offer_form(offer.get_data(as_text=True), duration_minutes="三刻钟", notes="按时送到"))
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert 'id="error-duration_minutes"' in page
    assert "请填写一个整数" in visible_text(answer)
    assert "按时送到" in page  # what was written is kept
    assert redemptions(build) == []
    # the corrected form (same page, a new key) goes through
    assert client.post("/provider/scan/confirm", data=offer_form(page, duration_minutes="45")).status_code == 303
    assert [r.duration_minutes for r in redemptions(build)] == [45]


def test_no_service_picked_asks_for_one(build, client, door):
    build.choose(door.alice, door.programme, door.bath, door.p1, reason="timeliness")
    offer = read_code(client, scanned=build.presence_token(door.alice))
    page = offer.get_data(as_text=True)
    assert "助餐" in visible_text(offer)
    assert "助浴" in visible_text(offer)
    assert not re.search(r'type="radio"[^>]*\schecked', page)  # two services: none picked for the staff
    form = offer_form(page)
    form.pop("item_code", None)
    answer = client.post("/provider/scan/confirm", data=form)
    assert answer.status_code == 422
    assert "请选一项服务" in visible_text(answer)
    assert redemptions(build) == []


# --- refusals: one sentence, what to do next, the typed code kept ----------------------------------------

def test_a_recipient_who_chose_another_provider_is_refused_with_where_to_change(build, client, door):
    code = build.presence_code(door.bob)
    answer = read_code(client, short_code=code["short_code_display"])
    text = refused_with(answer, 403, "这位老人选的是别的服务机构，本机构不能核销")
    assert "改选" in text
    assert f'value="{code["short_code_display"]}"' in answer.get_data(as_text=True)


def test_a_wrong_short_code_is_refused_beside_the_field(client, door):
    answer = read_code(client, short_code="1234 5678")
    refused_with(answer, 422, "没有找到这个码")
    page = answer.get_data(as_text=True)
    assert 'id="error-short_code"' in page
    assert 'value="1234 5678"' in page


def test_a_short_code_that_is_not_8_digits_says_so(client, door):
    answer = read_code(client, short_code="12ab")
    refused_with(answer, 422, "请输入 8 位数字")


def test_nothing_read_asks_for_the_digits(client, door):
    refused_with(read_code(client), 422, "请输入老人手机上“我的码”下面的 8 位数字")


def test_a_scanned_qr_code_that_is_not_ours_is_refused(client, door):
    refused_with(read_code(client, scanned="https://example.org/not-a-voucher"), 422, "没有找到这个码")


def test_an_expired_code_asks_for_a_new_one(build, client, door):
    old = build.presence_token(door.alice, now=build.now() - timedelta(minutes=10))
    refused_with(read_code(client, scanned=old), 422, "这个码已经过期")


def test_a_used_code_is_refused_when_read(build, client, door):
    code = build.presence_code(door.alice)
    build.redeem(door.p1, door.alice, door.meal)  # an earlier scan of another code: not this one
    offer = read_code(client, short_code=code["short_code"])
    assert offer.status_code == 200
    assert client.post("/provider/scan/confirm", data=offer_form(offer.get_data(as_text=True))).status_code == 303
    refused_with(read_code(client, short_code=code["short_code"]), 409, "这个码已经用过了")


def test_no_voucher_left_is_refused(build, client, door):
    for _ in range(4):  # the meal quota
        build.redeem(door.p1, door.alice, door.meal)
    refused_with(read_code(client, scanned=build.presence_token(door.alice)), 409,
                 "这位老人这个月没有可以用的服务券")


def test_a_used_voucher_card_is_refused(build, client, door):
    served = build.redeem(door.p1, door.alice, door.meal)
    refused_with(read_code(client, scanned=build.voucher_token(served.voucher_id)), 409, "这张服务券已经用过了")


def test_a_suspended_provider_may_not_redeem(build, client, door):
    code = build.presence_code(door.alice)
    build.set_provider_status(door.p1, "suspend")
    refused_with(read_code(client, short_code=code["short_code"]), 403, "本机构还没有通过审核或已被暂停")


def test_too_many_wrong_codes_say_how_long_to_wait(app, client, door):
    limit = app.config["SHORT_CODE_FAILURES_PER_LOGIN"]
    for number in range(limit):
        assert read_code(client, short_code=f"{10_000_000 + number}").status_code == 422
    answer = read_code(client, short_code="87654321")
    minutes = app.config["SHORT_CODE_FAILURE_WINDOW_SECONDS"] // 60
    refused_with(answer, 429, f"输错的次数太多了。请过 {minutes} 分钟再输入")
    assert 'value="87654321"' in answer.get_data(as_text=True)


# --- who sees what ----------------------------------------------------------------------------------------

def test_another_providers_receipt_is_not_found(build, client, door):
    theirs = build.redeem(door.p2, door.bob, door.meal)
    assert client.get(f"/provider/receipts/{theirs.id}").status_code == 404


def test_only_provider_staff_scan(build, client):
    world = build.world()
    login_page(client, world.alice.user.username, PASSWORD)
    assert client.get("/provider/scan").status_code == 403
    assert client.post("/provider/scan", data={}).status_code in (403, 400)


# --- the camera needs a secure context ---------------------------------------------------------------------

@pytest.mark.parametrize(("address", "insecure"), [
    ("http://localhost", False), ("http://127.0.0.1:5000", False), ("https://scan.example.org", False),
    ("http://scan.example.org", True), ("http://192.168.1.20:8000", True),
])
def test_the_page_says_when_the_camera_cannot_work(app, door, address, insecure):
    client = app.test_client()
    login = client.get("/login", base_url=address)
    client.post("/login", base_url=address, data={"username": door.p1.user.username, "password": PASSWORD,
                                                  "csrf_token": csrf_from(login.get_data(as_text=True))})
    page = client.get("/provider/scan", base_url=address)
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    notice = re.search(r'<p class="notice" id="camera-insecure"( hidden)?>', body)
    assert notice
    assert (notice.group(1) is None) == insecure
    assert 'inputmode="numeric"' in body
    assert 'autocomplete="one-time-code"' in body
