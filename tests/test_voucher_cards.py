"""Voucher cards over HTTP: only an issued voucher has a card, and a card token has one spelling.

A card of a redeemed, expired or revoked voucher would look valid to the person holding it and be
refused at the door: GET card.png / card.svg answer 409 `voucher_not_issued` instead. A card token's
last base32 character carries 4 unused bits; only the spelling this service printed (those bits
zero) redeems — the other 15 are 422 `invalid_token`, like any other damaged token.
"""

import base64

import pytest

from tests.conftest import error_code
from vouchers.models import Voucher

API = "/api/v1"
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@pytest.fixture
def world(build):
    """The standard world, last month and this month issued, alice and bob chose p1."""
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    return world


def this_months(build, world, recipient):
    first = f"{build.period()}-01"
    return [v for v in build.vouchers(Voucher.recipient_id == recipient.id) if v.valid_from.isoformat() >= first]


def cards(client, voucher_id, headers):
    return [client.get(f"{API}/vouchers/{voucher_id}/card.{kind}", headers=headers) for kind in ("png", "svg")]


def test_an_issued_voucher_has_a_card(build, client, world):
    voucher = this_months(build, world, world.alice)[0]
    for response in cards(client, voucher.id, build.headers(world.alice.user)):
        assert response.status_code == 200
        assert response.mimetype in ("image/png", "image/svg+xml")


def test_the_card_png_carries_a_code_that_redeems_the_voucher(build, client, world):
    """The printed card's QR code, drawn with one fixed mask (vouchers.cards.QR_MASK_PATTERN), is read back by
    a decoder and redeems the voucher it was printed for."""
    import io

    import zxingcpp
    from PIL import Image

    voucher = this_months(world=world, build=build, recipient=world.alice)[0]
    png = client.get(f"{API}/vouchers/{voucher.id}/card.png", headers=build.headers(world.alice.user))
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.data)).convert("L"))
    assert len(decoded) == 1
    redeemed = client.post(f"{API}/redemptions", json={"voucher_token": decoded[0].text},
                           headers=build.headers(build.user(role="provider", provider_id=world.p1.id)))
    assert redeemed.status_code == 201, redeemed.get_json()
    assert redeemed.get_json()["voucher_id"] == voucher.id


def test_a_redeemed_voucher_has_no_card(build, client, world):
    voucher = this_months(build, world, world.alice)[0]
    build.redeem(world.p1, voucher=voucher.id)
    for headers in (build.headers(world.alice.user), build.headers(world.admin)):
        for response in cards(client, voucher.id, headers):
            assert (response.status_code, error_code(response)) == (409, "voucher_not_issued")
            assert response.get_json()["error"]["details"] == {"status": "redeemed"}


def test_a_revoked_voucher_has_no_card(build, client, world):
    voucher = this_months(build, world, world.bob)[0]
    admin = build.headers(world.admin)
    assert client.post(f"{API}/vouchers/{voucher.id}/revoke", json={"reason": "重复发放"},
                       headers=admin).status_code == 200
    for response in cards(client, voucher.id, build.headers(world.bob.user)):
        assert (response.status_code, error_code(response)) == (409, "voucher_not_issued")
        assert response.get_json()["error"]["details"] == {"status": "revoked"}


def test_an_expired_voucher_has_no_card(build, client, world):
    admin = build.headers(world.admin)
    response = client.post(f"{API}/programmes/{world.programme.id}/expire", headers=admin)
    assert response.status_code == 200
    assert response.get_json()["expired"] > 0
    expired = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.status == "expired")[0]
    for response in cards(client, expired.id, build.headers(world.alice.user)):
        assert (response.status_code, error_code(response)) == (409, "voucher_not_issued")
        assert response.get_json()["error"]["details"] == {"status": "expired"}


def test_a_reversed_redemption_gives_the_voucher_its_card_back(build, client, world):
    voucher = this_months(build, world, world.alice)[0]
    redemption = build.redeem(world.p1, voucher=voucher.id)
    response = client.post(f"{API}/redemptions/{redemption.id}/reverse", json={"reason": "误扫"},
                           headers=build.headers(world.p1.user))
    assert response.status_code == 200, response.get_json()
    assert all(r.status_code == 200 for r in cards(client, voucher.id, build.headers(world.alice.user)))


def spellings(token: str) -> list[str]:
    """The token with every possible last character."""
    return [token[:-1] + character for character in BASE32]


def test_only_the_printed_spelling_of_a_card_token_redeems(build, client, world):
    voucher = this_months(build, world, world.alice)[0]
    token = build.voucher_token(voucher.id)
    same_bytes = [s for s in spellings(token)
                  if base64.b32decode(s + "====") == base64.b32decode(token + "====")]
    assert len(same_bytes) == 16  # 36 characters carry 180 bits for 176: 4 are unused
    p1 = build.headers(world.p1.user)
    for spelling in same_bytes:
        if spelling == token:
            continue
        response = client.post(f"{API}/redemptions", json={"voucher_token": spelling}, headers=p1)
        assert (response.status_code, error_code(response)) == (422, "invalid_token"), spelling
    padded = client.post(f"{API}/redemptions", json={"voucher_token": token + "===="}, headers=p1)
    assert (padded.status_code, error_code(padded)) == (422, "invalid_token")
    assert build.voucher(voucher.id).status == "issued"

    response = client.post(f"{API}/redemptions", json={"voucher_token": f" {token.lower()} "}, headers=p1)
    assert response.status_code == 201, response.get_json()  # any case, any surrounding whitespace
    assert response.get_json()["voucher_id"] == voucher.id
