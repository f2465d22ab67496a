"""Free choice of provider, presence codes and voucher cards, redemption (核销) and its reversal.

docs/domain.md, rule 4 and #redemption. A voucher is redeemed
only by the provider the recipient chose, once, while valid, with a fresh presence code or the
voucher's own card; every refusal has its status and code, and money moves committed → redeemed
(and back on reversal) in the same transaction. Every test runs on SQLite and PostgreSQL.
"""

import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
import zxingcpp
from PIL import Image
from sqlalchemy import update

from marketplace.audit.models import AuditEvent
from marketplace.db import db, utcnow
from tests.conftest import error_code
from tests.support.dates import period_days
from tests.support.scenario import BATH_QUOTA, MEAL_QUOTA
from vouchers.models import ChoiceEvent, Redemption, UsedPresenceCode, Voucher
from vouchers.service import reversal

API = "/api/v1"
# Alice is low_income (5 %): what her vouchers are worth to the provider.
ALICE_MEAL, ALICE_BATH = 1140, 4750


@pytest.fixture
def world(build):
    """The standard world with this month issued; nobody has chosen a provider yet."""
    world = build.world()
    build.issue(world.programme, build.period())
    return world


@pytest.fixture
def chosen(build, world):
    """As `world`, and alice and bob both chose p1 for meals and baths."""
    build.choose_all(world, world.p1)
    return world


def choose(client, headers, recipient_id, programme_id, item_code, provider_id):
    return client.put(f"{API}/recipients/{recipient_id}/choices",
                      json={"programme_id": programme_id, "item_code": item_code, "provider_id": provider_id},
                      headers=headers)


def choices(client, headers, recipient_id) -> dict:
    response = client.get(f"{API}/recipients/{recipient_id}/choices", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def presence_code(client, headers) -> str:
    response = client.post(f"{API}/me/presence-code", headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["token"]


def redeem(client, headers, **body):
    return client.post(f"{API}/redemptions", json=body, headers=headers)


def redeemed(client, headers, **body) -> dict:
    response = redeem(client, headers, **body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def reverse(client, headers, redemption_id, reason="误扫，服务未提供"):
    return client.post(f"{API}/redemptions/{redemption_id}/reverse", json={"reason": reason}, headers=headers)


def refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_json()
    assert error_code(response) == code


def decode_qr(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1, found
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode
    return found[0].text


# --- choice ---------------------------------------------------------------------------------------

def test_a_recipient_chooses_a_provider_for_an_item(build, client, world):
    headers = build.headers(world.alice.user)

    response = choose(client, headers, world.alice.id, world.programme.id, world.meal, world.p1.id)

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["recipient_id"], body["programme_id"], body["item_code"], body["provider_id"]) == (
        world.alice.id, world.programme.id, world.meal, world.p1.id)
    assert body["chosen_by"] == world.alice.user.id
    listing = choices(client, headers, world.alice.id)
    assert [(c["item_code"], c["provider_id"]) for c in listing["current"]] == [(world.meal, world.p1.id)]
    history = [(e["from_provider_id"], e["to_provider_id"], e["acted_as"], e["chosen_by"]) for e in listing["history"]]
    assert history == [(None, world.p1.id, "recipient", world.alice.user.id)]


def test_an_admin_chooses_for_a_recipient_and_is_recorded_as_the_one_who_acted(build, client, world):
    admin_headers = build.headers(world.admin)

    response = choose(client, admin_headers, world.alice.id, world.programme.id, world.bath, world.p2.id)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["chosen_by"] == world.admin.id
    history = choices(client, build.headers(world.alice.user), world.alice.id)["history"]
    assert [(e["acted_as"], e["chosen_by"], e["to_provider_id"]) for e in history] == [
        ("admin", world.admin.id, world.p2.id)]


def test_switching_provider_keeps_every_choice_in_the_history(build, client, world):
    alice, admin = build.headers(world.alice.user), build.headers(world.admin)
    steps = [(alice, world.p1.id), (admin, world.p2.id), (alice, world.p1.id)]

    for headers, provider_id in steps:
        assert choose(client, headers, world.alice.id, world.programme.id, world.meal, provider_id).status_code == 200

    listing = choices(client, admin, world.alice.id)
    assert [(c["item_code"], c["provider_id"]) for c in listing["current"]] == [(world.meal, world.p1.id)]
    assert [(e["from_provider_id"], e["to_provider_id"], e["acted_as"]) for e in listing["history"]] == [
        (None, world.p1.id, "recipient"), (world.p1.id, world.p2.id, "admin"), (world.p2.id, world.p1.id, "recipient")]
    assert build.count(AuditEvent, AuditEvent.action == "choice.made") == 3


def test_each_item_has_its_own_choice(build, client, world):
    headers = build.headers(world.alice.user)
    choose(client, headers, world.alice.id, world.programme.id, world.meal, world.p1.id)
    choose(client, headers, world.alice.id, world.programme.id, world.bath, world.p2.id)

    current = choices(client, headers, world.alice.id)["current"]

    assert sorted((c["item_code"], c["provider_id"]) for c in current) == sorted(
        [(world.meal, world.p1.id), (world.bath, world.p2.id)])


@pytest.mark.parametrize("status", ["pending", "suspended", "revoked"])
def test_a_provider_that_is_not_approved_cannot_be_chosen(build, client, world, status):
    unapproved = build.provider(items=[world.meal], status=status,
                                enrol_in=() if status in ("pending", "revoked") else [world.programme], login=False)
    headers = build.headers(world.alice.user)

    response = choose(client, headers, world.alice.id, world.programme.id, world.meal, unapproved.id)

    refused(response, 422, "provider_not_eligible")
    assert build.count(ChoiceEvent) == 0


def test_a_provider_not_enrolled_in_the_programme_cannot_be_chosen(build, client, world):
    outsider = build.provider(items=[world.meal, world.bath], login=False)

    response = choose(client, build.headers(world.alice.user), world.alice.id, world.programme.id, world.meal,
                      outsider.id)

    refused(response, 422, "provider_not_eligible")


def test_a_provider_not_offering_the_item_cannot_be_chosen_for_it(build, client, world):
    meals_only = build.provider(items=[world.meal], enrol_in=[world.programme], login=False)
    headers = build.headers(world.alice.user)

    assert choose(client, headers, world.alice.id, world.programme.id, world.meal, meals_only.id).status_code == 200
    response = choose(client, headers, world.alice.id, world.programme.id, world.bath, meals_only.id)

    refused(response, 422, "provider_not_eligible")


def test_a_provider_not_serving_the_recipients_region_cannot_be_chosen(build, client):
    meal = build.item()
    city = build.programme(items=[(meal, 1000, 1)], region_code="510100", min_age=None)
    county_only = build.provider(items=[meal], regions=("510131",), enrol_in=[city], login=False)
    whole_city = build.provider(items=[meal], regions=("510100",), enrol_in=[city], login=False)
    elsewhere = build.recipient(region_code="510104")
    headers = build.headers(build.system_admin)

    response = choose(client, headers, elsewhere.id, city.id, meal, county_only.id)

    refused(response, 422, "provider_not_eligible")
    assert choose(client, headers, elsewhere.id, city.id, meal, whole_city.id).status_code == 200


def test_an_ineligible_choice_leaves_the_current_choice_in_place(build, client, world):
    outsider = build.provider(items=[world.meal], login=False)
    headers = build.headers(world.alice.user)
    choose(client, headers, world.alice.id, world.programme.id, world.meal, world.p1.id)

    refused(choose(client, headers, world.alice.id, world.programme.id, world.meal, outsider.id), 422,
            "provider_not_eligible")
    refused(choose(client, headers, world.alice.id, world.programme.id, world.meal, 999_999), 422,
            "provider_not_eligible")

    listing = choices(client, headers, world.alice.id)
    assert [c["provider_id"] for c in listing["current"]] == [world.p1.id]
    assert len(listing["history"]) == 1


def test_choosing_for_an_item_the_programme_does_not_buy_is_a_validation_error(build, client, world):
    other = build.item()
    response = choose(client, build.headers(world.alice.user), world.alice.id, world.programme.id, other, world.p1.id)

    refused(response, 422, "validation_error")
    assert "item_code" in response.get_json()["error"]["details"]["fields"]


def test_choices_are_the_recipients_own_business(build, client, world):
    alice = build.headers(world.alice.user)

    for_bob = choose(client, alice, world.bob.id, world.programme.id, world.meal, world.p1.id)
    read_bob = client.get(f"{API}/recipients/{world.bob.id}/choices", headers=alice)
    by_provider = choose(client, build.headers(world.p1.user), world.alice.id, world.programme.id, world.meal,
                         world.p1.id)
    by_auditor = client.get(f"{API}/recipients/{world.alice.id}/choices", headers=build.headers(build.auditor()))

    assert for_bob.status_code == read_bob.status_code == 404
    assert by_provider.status_code == by_auditor.status_code == 403
    assert build.count(ChoiceEvent) == 0


def test_a_region_scoped_admin_cannot_choose_for_a_recipient_outside_their_region(build, client, world):
    other_county = build.admin(region_code="510132")
    response = choose(client, build.headers(other_county), world.alice.id, world.programme.id, world.meal, world.p1.id)

    assert response.status_code == 403
    assert build.count(ChoiceEvent) == 0


# --- presence codes -------------------------------------------------------------------------------

def test_a_recipient_gets_a_presence_code_valid_for_two_minutes(build, client, world):
    before = utcnow()
    response = client.post(f"{API}/me/presence-code", headers=build.headers(world.alice.user))

    assert response.status_code == 201
    body = response.get_json()
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert expires_at.utcoffset() is not None
    assert before + timedelta(seconds=119) <= expires_at <= utcnow() + timedelta(seconds=120)
    assert 20 <= len(body["token"]) <= 80


@pytest.mark.parametrize("role", ["admin", "provider", "auditor"])
def test_only_recipients_get_presence_codes(build, client, world, role):
    user = {"admin": world.admin, "provider": world.p1.user, "auditor": build.auditor()}[role]
    assert client.post(f"{API}/me/presence-code", headers=build.headers(user)).status_code == 403


# --- redemption: the happy paths ------------------------------------------------------------------

def test_a_presence_code_and_an_item_redeem_a_voucher_of_that_item(build, client, chosen):
    world = chosen
    token = presence_code(client, build.headers(world.alice.user))
    before = build.ledger(world.programme)

    body = redeemed(client, build.headers(world.p1.user), presence_token=token, item_code=world.bath,
                    duration_minutes=45, notes="助浴一次")

    voucher = build.voucher(body["voucher_id"])
    assert (voucher.recipient_id, voucher.item_code, voucher.status) == (world.alice.id, world.bath, "redeemed")
    assert body["provider_id"] == world.p1.id
    assert (body["face_value_fen"], body["copay_fen"]) == (ALICE_BATH, 250)
    assert body["presence"] == "presence_code"
    assert body["status"] == "completed"
    assert body["duration_minutes"] == 45
    assert body["notes"] == "助浴一次"
    assert body["delivered_at"]
    after = build.ledger(world.programme)
    assert after.committed_fen == before.committed_fen - ALICE_BATH
    assert after.redeemed_fen == before.redeemed_fen + ALICE_BATH
    assert after.available_fen == before.available_fen
    assert build.failing_checks(world.programme) == []
    assert build.count(AuditEvent, AuditEvent.action == "voucher.redeemed",
                       AuditEvent.entity_id == str(voucher.id)) == 1


def test_a_voucher_card_token_redeems_that_very_voucher(build, client, chosen):
    world = chosen
    target = build.vouchers(Voucher.recipient_id == world.bob.id, Voucher.item_code == world.meal)[-1]

    body = redeemed(client, build.headers(world.p1.user), voucher_token=build.voucher_token(target.id))

    assert body["voucher_id"] == target.id
    assert body["presence"] == "voucher_card"
    assert body["voucher_serial"] == target.serial
    assert (body["face_value_fen"], body["copay_fen"]) == (target.face_value_fen, target.copay_fen)
    assert build.voucher(target.id).status == "redeemed"
    assert build.ledger(world.programme).redeemed_fen == target.face_value_fen
    assert build.failing_checks(world.programme) == []


def test_a_presence_code_redeems_the_earliest_expiring_valid_voucher(build, client, chosen):
    world = chosen
    build.issue(world.programme, build.period(-1))  # expired by date, not yet by the job
    build.issue(world.programme, build.period(1))  # not valid yet
    today = build.today()
    current = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.meal,
                             Voucher.valid_from <= today, Voucher.valid_until >= today)
    assert len(current) == MEAL_QUOTA
    soonest, second = current[2], current[3]

    def spread_expiry():
        db.session.execute(update(Voucher).where(Voucher.id.in_([v.id for v in current]))
                           .values(valid_until=today + timedelta(days=7)))
        db.session.execute(update(Voucher).where(Voucher.id == soonest.id).values(valid_until=today))
        db.session.execute(update(Voucher).where(Voucher.id == second.id).values(valid_until=today + timedelta(days=1)))

    build.run(spread_expiry)
    provider = build.headers(world.p1.user)
    alice = build.headers(world.alice.user)

    picked = [redeemed(client, provider, presence_token=presence_code(client, alice),
                       item_code=world.meal)["voucher_id"] for _ in range(3)]

    assert picked == [soonest.id, second.id, current[0].id]


def test_each_scan_of_a_presence_code_picks_the_item_named(build, client, chosen):
    world = chosen
    provider, alice = build.headers(world.p1.user), build.headers(world.alice.user)

    meal = redeemed(client, provider, presence_token=presence_code(client, alice), item_code=world.meal)
    bath = redeemed(client, provider, presence_token=presence_code(client, alice), item_code=world.bath)

    assert build.voucher(meal["voucher_id"]).item_code == world.meal
    assert build.voucher(bath["voucher_id"]).item_code == world.bath


def test_when_no_choice_is_required_any_enrolled_provider_offering_the_item_redeems(build, client):
    world = build.world(choice_required=False)
    build.issue(world.programme, build.period())
    outsider = build.provider(items=[world.meal, world.bath])
    meals_only = build.provider(items=[world.meal], enrol_in=[world.programme])
    alice = build.headers(world.alice.user)

    body = redeemed(client, build.headers(world.p2.user), presence_token=presence_code(client, alice),
                    item_code=world.meal)
    not_enrolled = redeem(client, build.headers(outsider.user), presence_token=presence_code(client, alice),
                          item_code=world.meal)
    not_offering = redeem(client, build.headers(meals_only.user), presence_token=presence_code(client, alice),
                          item_code=world.bath)

    assert body["provider_id"] == world.p2.id
    refused(not_enrolled, 403, "provider_not_chosen")
    refused(not_offering, 403, "provider_not_chosen")


def test_after_switching_only_the_new_provider_redeems(build, client, chosen):
    world = chosen
    alice = build.headers(world.alice.user)
    choose(client, alice, world.alice.id, world.programme.id, world.meal, world.p2.id)

    old = redeem(client, build.headers(world.p1.user), presence_token=presence_code(client, alice),
                 item_code=world.meal)
    new = redeem(client, build.headers(world.p2.user), presence_token=presence_code(client, alice),
                 item_code=world.meal)

    refused(old, 403, "provider_not_chosen")
    assert new.status_code == 201


def test_a_delivery_time_a_little_earlier_today_is_recorded(build, client, chosen):
    world = chosen
    delivered = build.at(build.today(), 0) + timedelta(seconds=1)

    body = redeemed(client, build.headers(world.p1.user), presence_token=presence_code(
        client, build.headers(world.alice.user)), item_code=world.meal, delivered_at=delivered.isoformat())

    assert datetime.fromisoformat(body["delivered_at"]) == delivered


def test_a_service_recorded_more_than_a_week_after_delivery_is_refused(build, client, chosen):
    world = chosen
    delivered = datetime.now(UTC) - timedelta(days=7, minutes=1)

    response = redeem(client, build.headers(world.p1.user), presence_token=presence_code(
        client, build.headers(world.alice.user)), item_code=world.meal, delivered_at=delivered.isoformat())

    assert response.status_code == 422
    assert "delivered_at" in response.get_json()["error"]["details"]["fields"]


# --- redemption: every refusal --------------------------------------------------------------------

def test_a_redeemed_voucher_card_cannot_be_redeemed_again(build, client, chosen):
    world = chosen
    token = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    provider = build.headers(world.p1.user)
    redeemed(client, provider, voucher_token=token)
    after_first = build.ledger(world.programme)

    again = redeem(client, provider, voucher_token=token)

    refused(again, 409, "voucher_already_redeemed")
    assert build.count(Redemption) == 1
    assert build.ledger(world.programme) == after_first


def test_a_voucher_past_its_validity_is_expired(build, client):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.choose_all(world, world.p1)
    provider = build.headers(world.p1.user)
    old = build.vouchers(Voucher.recipient_id == world.alice.id)[0]

    by_presence = redeem(client, provider, presence_token=presence_code(client, build.headers(world.alice.user)),
                         item_code=world.meal)
    by_card = redeem(client, provider, voucher_token=build.voucher_token(old.id))

    refused(by_presence, 410, "voucher_expired")
    refused(by_card, 410, "voucher_expired")
    assert build.count(Redemption) == 0


def test_a_voucher_expired_by_the_expiry_run_is_expired(build, client):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.choose_all(world, world.p1)
    old = build.vouchers(Voucher.recipient_id == world.alice.id)[0]
    client.post(f"{API}/programmes/{world.programme.id}/expire", headers=build.headers(world.admin))

    response = redeem(client, build.headers(world.p1.user), voucher_token=build.voucher_token(old.id))

    refused(response, 410, "voucher_expired")


def test_without_a_voucher_of_the_item_there_is_no_valid_voucher(build, client, chosen):
    world = chosen
    other_item = build.item()
    alice = build.headers(world.alice.user)

    unknown = redeem(client, build.headers(world.p1.user), presence_token=presence_code(client, alice),
                     item_code=other_item)

    refused(unknown, 409, "no_valid_voucher")


def test_when_the_quota_is_used_up_there_is_no_valid_voucher(build, client, chosen):
    world = chosen
    provider, alice = build.headers(world.p1.user), build.headers(world.alice.user)
    for _ in range(BATH_QUOTA):
        redeemed(client, provider, presence_token=presence_code(client, alice), item_code=world.bath)

    response = redeem(client, provider, presence_token=presence_code(client, alice), item_code=world.bath)

    refused(response, 409, "no_valid_voucher")
    assert build.count(Redemption) == BATH_QUOTA


def test_a_voucher_not_valid_yet_is_not_redeemed(build, client):
    world = build.world()
    build.issue(world.programme, build.period(1))
    build.choose_all(world, world.p1)
    future = build.vouchers(Voucher.recipient_id == world.alice.id)[0]
    provider = build.headers(world.p1.user)

    by_presence = redeem(client, provider, presence_token=presence_code(client, build.headers(world.alice.user)),
                         item_code=world.meal)
    by_card = redeem(client, provider, voucher_token=build.voucher_token(future.id))

    refused(by_presence, 409, "no_valid_voucher")
    refused(by_card, 409, "no_valid_voucher")
    assert build.voucher(future.id).status == "issued"


def test_a_revoked_voucher_card_is_not_redeemed(build, client, chosen):
    world = chosen
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id)[0]
    client.post(f"{API}/vouchers/{voucher.id}/revoke", json={"reason": "重复发放"}, headers=build.headers(world.admin))

    response = redeem(client, build.headers(world.p1.user), voucher_token=build.voucher_token(voucher.id))

    refused(response, 409, "no_valid_voucher")
    assert build.voucher(voucher.id).status == "revoked"


def test_vouchers_of_a_closed_programme_are_not_redeemed(build, client, chosen):
    world = chosen
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id)[0]
    client.post(f"{API}/programmes/{world.programme.id}/close", headers=build.headers(world.admin))
    provider = build.headers(world.p1.user)

    by_card = redeem(client, provider, voucher_token=build.voucher_token(voucher.id))
    by_presence = redeem(client, provider, presence_token=presence_code(client, build.headers(world.alice.user)),
                         item_code=world.meal)

    refused(by_card, 409, "no_valid_voucher")
    refused(by_presence, 409, "no_valid_voucher")


@pytest.mark.parametrize("bob_chose", ["p1", "p2"])
def test_a_provider_the_recipient_did_not_choose_cannot_redeem(build, client, world, bob_chose):
    # Alice chose p1. Whether or not bob chose p2, p2 may not redeem alice's vouchers: the guarded
    # claim checks the choice of the voucher's own recipient, not anybody's.
    build.choose_all(world, world.p1, world.alice)
    build.choose_all(world, getattr(world, bob_chose), world.bob)
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    other = build.headers(world.p2.user)

    by_presence = redeem(client, other, presence_token=presence_code(client, build.headers(world.alice.user)),
                         item_code=world.meal)
    by_card = redeem(client, other, voucher_token=card)

    refused(by_presence, 403, "provider_not_chosen")
    refused(by_card, 403, "provider_not_chosen")
    assert build.count(Redemption) == 0
    assert build.ledger(world.programme).redeemed_fen == 0


def test_a_provider_enrolled_in_another_programme_redeems_only_that_programmes_vouchers(build, client):
    world = build.world(choice_required=False)
    build.issue(world.programme, build.period())
    other = build.programme(items=[(world.meal, 1300, 1)], budget_fen=100_000, choice_required=False)
    build.issue(other, build.period())
    outsider = build.provider(items=[world.meal], enrol_in=[other])
    headers = build.headers(outsider.user)
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id,
                                              Voucher.programme_id == world.programme.id)[0].id)

    by_card = redeem(client, headers, voucher_token=card)
    by_presence = redeemed(client, headers, presence_token=presence_code(client, build.headers(world.alice.user)),
                           item_code=world.meal)
    again = redeem(client, headers, presence_token=presence_code(client, build.headers(world.alice.user)),
                   item_code=world.meal)

    refused(by_card, 403, "provider_not_chosen")
    assert by_presence["programme_id"] == other.id
    refused(again, 403, "provider_not_chosen")  # alice's vouchers left are all in the first programme


def test_nobody_redeems_before_the_recipient_has_chosen(build, client, world):
    response = redeem(client, build.headers(world.p1.user),
                      presence_token=presence_code(client, build.headers(world.alice.user)), item_code=world.meal)
    refused(response, 403, "provider_not_chosen")


def test_a_suspended_provider_cannot_redeem(build, client, chosen):
    world = chosen
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    token = presence_code(client, build.headers(world.alice.user))
    build.set_provider_status(world.p1.id, "suspend")
    provider = build.headers(world.p1.user)

    by_presence = redeem(client, provider, presence_token=token, item_code=world.meal)
    by_card = redeem(client, provider, voucher_token=card)

    refused(by_presence, 403, "provider_not_approved")
    refused(by_card, 403, "provider_not_approved")
    assert build.count(Redemption) == 0

    build.set_provider_status(world.p1.id, "reinstate")
    assert redeem(client, provider, presence_token=token, item_code=world.meal).status_code == 201


def test_a_refused_scan_does_not_use_up_the_presence_code(build, client, chosen):
    world = chosen
    token = presence_code(client, build.headers(world.alice.user))

    refused(redeem(client, build.headers(world.p2.user), presence_token=token, item_code=world.meal), 403,
            "provider_not_chosen")

    assert redeem(client, build.headers(world.p1.user), presence_token=token, item_code=world.meal).status_code == 201
    assert build.count(UsedPresenceCode) == 1


@pytest.mark.parametrize("field", ["presence_token", "voucher_token"])
@pytest.mark.parametrize("garbage", ["hello", "A" * 36, "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43UOV3HO6DZPI", "0O1IL!"])
def test_a_token_that_is_not_ours_is_invalid(build, client, chosen, field, garbage):
    world = chosen
    body = {field: garbage, **({"item_code": world.meal} if field == "presence_token" else {})}

    refused(redeem(client, build.headers(world.p1.user), **body), 422, "invalid_token")
    assert build.count(Redemption) == 0


def test_a_forged_card_for_a_real_voucher_is_invalid(build, client, chosen):
    world = chosen
    genuine = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    forged = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB")

    refused(redeem(client, build.headers(world.p1.user), voucher_token=forged), 422, "invalid_token")


def test_tokens_of_the_wrong_kind_are_invalid(build, client, chosen):
    world = chosen
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    code = presence_code(client, build.headers(world.alice.user))
    provider = build.headers(world.p1.user)

    refused(redeem(client, provider, presence_token=card, item_code=world.meal), 422, "invalid_token")
    refused(redeem(client, provider, voucher_token=code), 422, "invalid_token")


def test_a_genuine_card_for_a_voucher_that_does_not_exist_is_invalid(build, client, chosen):
    world = chosen
    refused(redeem(client, build.headers(world.p1.user), voucher_token=build.voucher_token(987_654)), 422,
            "invalid_token")


def test_an_old_presence_code_has_expired(build, client, chosen):
    world = chosen
    stale = build.presence_token(world.alice.id, now=utcnow() - timedelta(seconds=121))

    response = redeem(client, build.headers(world.p1.user), presence_token=stale, item_code=world.meal)

    refused(response, 422, "token_expired")
    assert build.count(Redemption) == 0


def test_a_presence_code_works_once(build, client, chosen):
    world = chosen
    token = presence_code(client, build.headers(world.alice.user))
    provider = build.headers(world.p1.user)
    redeemed(client, provider, presence_token=token, item_code=world.meal)

    again = redeem(client, provider, presence_token=token, item_code=world.meal)
    other_item = redeem(client, provider, presence_token=token, item_code=world.bath)

    refused(again, 409, "token_already_used")
    refused(other_item, 409, "token_already_used")
    assert build.count(Redemption) == 1


@pytest.mark.parametrize("body", [
    {},
    {"item_code": "HC-MEAL"},
    {"presence_token": "{token}"},
    {"presence_token": "{token}", "item_code": ""},
    {"voucher_token": ""},
    {"voucher_token": "A" * 81},
    {"voucher_token": "{card}", "duration_minutes": -1},
    {"voucher_token": "{card}", "duration_minutes": 24 * 60 + 1},
    {"voucher_token": "{card}", "delivered_at": "yesterday"},
    {"voucher_token": "{card}", "delivered_at": "2026-01-01T10:00:00"},  # no offset
    {"voucher_token": "{card}", "scanned_by": 1},
])
def test_a_malformed_redemption_is_a_validation_error(build, client, chosen, body):
    world = chosen
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    token = presence_code(client, build.headers(world.alice.user))
    filled = {key: value.format(token=token, card=card) if isinstance(value, str) else value
              for key, value in body.items()}

    refused(redeem(client, build.headers(world.p1.user), **filled), 422, "validation_error")
    assert build.count(Redemption) == 0


def test_a_service_cannot_be_delivered_in_the_future(build, client, chosen):
    world = chosen
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    later = (utcnow() + timedelta(hours=1)).isoformat()

    response = redeem(client, build.headers(world.p1.user), voucher_token=card, delivered_at=later)

    refused(response, 422, "validation_error")
    assert "delivered_at" in response.get_json()["error"]["details"]["fields"]


@pytest.mark.parametrize("role", ["admin", "auditor", "recipient"])
def test_only_providers_redeem(build, client, chosen, role):
    world = chosen
    user = {"admin": world.admin, "auditor": build.auditor(), "recipient": world.alice.user}[role]
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)

    assert redeem(client, build.headers(user), voucher_token=card).status_code == 403
    assert client.post(f"{API}/redemptions", json={"voucher_token": card}).status_code == 401
    assert build.count(Redemption) == 0


# --- reversal -------------------------------------------------------------------------------------

def test_the_provider_reverses_its_redemption_within_the_window(build, client, chosen):
    world = chosen
    provider = build.headers(world.p1.user)
    before = build.ledger(world.programme)
    body = redeemed(client, provider, presence_token=presence_code(client, build.headers(world.alice.user)),
                    item_code=world.bath)

    response = reverse(client, provider, body["id"], "误扫，服务未提供")

    assert response.status_code == 200, response.get_json()
    reversal = response.get_json()
    assert reversal["status"] == "reversed"
    assert reversal["reversal_reason"] == "误扫，服务未提供"
    assert reversal["reversed_at"]
    assert build.voucher(body["voucher_id"]).status == "issued"
    assert build.ledger(world.programme) == before
    assert build.failing_checks(world.programme) == []
    assert build.count(AuditEvent, AuditEvent.action == "redemption.reversed") == 1


def test_a_reversed_voucher_can_be_redeemed_again(build, client, chosen):
    world = chosen
    provider = build.headers(world.p1.user)
    card = build.voucher_token(build.vouchers(Voucher.recipient_id == world.alice.id)[0].id)
    first = redeemed(client, provider, voucher_token=card)
    reverse(client, provider, first["id"])

    second = redeemed(client, provider, voucher_token=card)

    assert second["voucher_id"] == first["voucher_id"]
    assert second["id"] != first["id"]
    assert build.ledger(world.programme).redeemed_fen == first["face_value_fen"]
    assert build.failing_checks(world.programme) == []


def test_an_admin_reverses_a_redemption(build, client, chosen):
    world = chosen
    body = redeemed(client, build.headers(world.p1.user),
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))

    response = reverse(client, build.headers(world.admin), body["id"], "回访核实未服务")

    assert response.status_code == 200
    assert build.voucher(body["voucher_id"]).status == "issued"
    assert build.ledger(world.programme).redeemed_fen == 0


def test_a_redemption_is_reversed_once(build, client, chosen):
    world = chosen
    provider = build.headers(world.p1.user)
    body = redeemed(client, provider,
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))
    reverse(client, provider, body["id"])
    ledger_after_first = build.ledger(world.programme)

    again = reverse(client, provider, body["id"])

    refused(again, 409, "invalid_transition")
    assert build.ledger(world.programme) == ledger_after_first


def test_reversing_after_the_programme_closed_releases_the_value_instead_of_committing_it_again(build, client,
                                                                                                chosen):
    """Closing a programme leaves no open voucher and no commitment: a voucher whose redemption is undone
    afterwards cannot be used in a closed programme, so it is revoked and its value released."""
    world = chosen
    body = redeemed(client, build.headers(world.p1.user),
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))
    admin = build.headers(world.admin)
    client.post(f"{API}/programmes/{world.programme.id}/close", headers=admin)
    closed = build.ledger(world.programme)

    response = reverse(client, admin, body["id"], "回访核实未服务")

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "reversed"
    assert build.voucher(body["voucher_id"]).status == "revoked"
    after = build.ledger(world.programme)
    assert after.committed_fen == 0
    assert after.redeemed_fen == closed.redeemed_fen - body["face_value_fen"]
    assert after.released_fen == closed.released_fen + body["face_value_fen"]
    assert build.failing_checks(world.programme) == []


@pytest.mark.parametrize("status", ["deceased", "moved"])
def test_reversing_after_the_recipient_left_releases_the_value_instead_of_committing_it_again(build, client, chosen,
                                                                                              status):
    world = chosen
    body = redeemed(client, build.headers(world.p1.user),
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))
    admin = build.headers(world.admin)
    client.patch(f"{API}/recipients/{world.bob.id}", json={"status": status}, headers=admin)

    response = reverse(client, build.headers(world.p1.user), body["id"], "回访核实未服务")

    assert response.status_code == 200, response.get_json()
    assert build.voucher(body["voucher_id"]).status == "revoked"
    assert {v.status for v in build.vouchers(Voucher.recipient_id == world.bob.id)} == {"revoked"}
    assert build.ledger(world.programme).committed_fen == build.issued_face_value(world.programme)
    assert build.failing_checks(world.programme) == []


def test_after_the_reversal_window_a_redemption_stands(build, client):
    world = build.world(reversal_window_hours=0)
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    provider = build.headers(world.p1.user)
    body = redeemed(client, provider,
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))

    response = reverse(client, provider, body["id"])

    refused(response, 409, "reversal_window_closed")
    assert build.voucher(body["voucher_id"]).status == "redeemed"
    assert build.ledger(world.programme).redeemed_fen == body["face_value_fen"]


def test_the_reversal_window_is_open_to_its_last_instant_and_closed_after(build, chosen):
    world = chosen
    vouchers = build.vouchers(Voucher.recipient_id == world.alice.id)
    on_time = build.redeem(world.p1, voucher=vouchers[0].id)
    too_late = build.redeem(world.p1, voucher=vouchers[1].id)

    build.reverse(on_time, by=world.p1.user, now=on_time.scanned_at + timedelta(hours=48), reason="误扫")
    assert build.redemption(on_time.id).status == "reversed"
    with pytest.raises(reversal.ReversalWindowClosed):
        build.reverse(too_late, by=world.p1.user, now=too_late.scanned_at + timedelta(hours=48, microseconds=1),
                      reason="误扫")
    assert build.voucher(vouchers[1].id).status == "redeemed"


def test_a_settled_redemption_cannot_be_reversed(build, client, chosen):
    world = chosen
    provider = build.headers(world.p1.user)
    body = redeemed(client, provider,
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))
    build.settle(world.programme, build.period())  # the redemption now belongs to a draft
    assert build.redemptions(Redemption.id == body["id"])[0].settlement_id is not None

    refused(reverse(client, provider, body["id"]), 409, "already_settled")
    refused(reverse(client, build.headers(world.admin), body["id"]), 409, "already_settled")
    assert build.voucher(body["voucher_id"]).status == "redeemed"


def test_another_provider_cannot_see_or_reverse_a_redemption(build, client, chosen):
    world = chosen
    body = redeemed(client, build.headers(world.p1.user),
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))
    other = build.headers(world.p2.user)

    refused(reverse(client, other, body["id"]), 404, "not_found")
    refused(client.get(f"{API}/redemptions/{body['id']}", headers=other), 404, "not_found")
    assert build.voucher(body["voucher_id"]).status == "redeemed"


def test_reversal_needs_a_reason_and_the_right_role(build, client, chosen):
    world = chosen
    body = redeemed(client, build.headers(world.p1.user),
                    voucher_token=build.voucher_token(build.vouchers(Voucher.recipient_id == world.bob.id)[0].id))
    url = f"{API}/redemptions/{body['id']}/reverse"

    assert client.post(url, json={}, headers=build.headers(world.p1.user)).status_code == 422
    assert reverse(client, build.headers(world.bob.user), body["id"]).status_code == 403
    assert reverse(client, build.headers(build.auditor()), body["id"]).status_code == 403
    assert reverse(client, build.headers(build.admin(region_code="510132")), body["id"]).status_code == 403
    assert reverse(client, build.headers(world.admin), 999_999).status_code == 404
    assert build.voucher(body["voucher_id"]).status == "redeemed"


# --- listing redemptions --------------------------------------------------------------------------

@pytest.fixture
def three_redemptions(build, client, world):
    """p1 redeems twice for alice, p2 once for bob, at local midnight + 1 s, + 2 s, + 3 s."""
    build.choose_all(world, world.p1, world.alice)
    build.choose_all(world, world.p2, world.bob)
    midnight = build.at(build.today(), 0)
    alice = build.vouchers(Voucher.recipient_id == world.alice.id)
    bob = build.vouchers(Voucher.recipient_id == world.bob.id)
    made = []
    for provider, voucher, seconds in ((world.p1, alice[0], 1), (world.p1, alice[1], 2), (world.p2, bob[0], 3)):
        made.append(redeemed(client, build.headers(provider.user), voucher_token=build.voucher_token(voucher.id),
                             delivered_at=(midnight + timedelta(seconds=seconds)).isoformat()))
    return made


def listed_ids(client, headers, **query) -> list[int]:
    response = client.get(f"{API}/redemptions", query_string=query, headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total"] == len(body["items"])
    return [item["id"] for item in body["items"]]


def test_admins_and_auditors_list_every_redemption(build, client, world, three_redemptions):
    ids = [r["id"] for r in three_redemptions]
    assert listed_ids(client, build.headers(world.admin)) == ids
    assert listed_ids(client, build.headers(build.auditor())) == ids


def test_a_provider_lists_only_its_own_redemptions(build, client, world, three_redemptions):
    p1 = build.headers(world.p1.user)
    own = [r["id"] for r in three_redemptions if r["provider_id"] == world.p1.id]

    assert listed_ids(client, p1) == own
    assert listed_ids(client, p1, provider_id=world.p2.id) == []
    assert listed_ids(client, build.headers(world.p2.user)) == [three_redemptions[2]["id"]]


def test_redemptions_filter_by_provider_programme_and_delivery_time(build, client, world, three_redemptions):
    headers = build.headers(world.admin)
    first, second, third = (r["id"] for r in three_redemptions)
    midnight = build.at(build.today(), 0)

    assert listed_ids(client, headers, provider_id=world.p1.id) == [first, second]
    assert listed_ids(client, headers, programme_id=world.programme.id) == [first, second, third]
    assert listed_ids(client, headers, programme_id=999_999) == []
    window = {"from": (midnight + timedelta(seconds=2)).isoformat(),
              "to": (midnight + timedelta(seconds=3)).isoformat()}
    assert listed_ids(client, headers, **window) == [second]  # from inclusive, to exclusive
    assert listed_ids(client, headers, **{"from": (midnight + timedelta(seconds=2)).isoformat()}) == [second, third]
    assert listed_ids(client, headers, to=(midnight + timedelta(seconds=2)).isoformat()) == [first]
    assert client.get(f"{API}/redemptions", query_string={"from": "yesterday"}, headers=headers).status_code == 422


def test_a_region_scoped_admin_lists_only_redemptions_of_programmes_in_their_region(build, client, world,
                                                                                    three_redemptions):
    inside, outside = build.admin(region_code="510131"), build.admin(region_code="510132")
    ids = [r["id"] for r in three_redemptions]

    assert listed_ids(client, build.headers(inside)) == ids
    assert listed_ids(client, build.headers(outside)) == []
    assert client.get(f"{API}/redemptions/{ids[0]}", headers=build.headers(outside)).status_code == 403


def test_recipients_may_not_list_redemptions(build, client, world, three_redemptions):
    assert client.get(f"{API}/redemptions", headers=build.headers(world.alice.user)).status_code == 403
    assert client.get(f"{API}/redemptions").status_code == 401


def test_one_redemption_is_read_by_its_provider_admins_and_auditors(build, client, world, three_redemptions):
    mine = three_redemptions[0]
    url = f"{API}/redemptions/{mine['id']}"

    for user in (world.p1.user, world.admin, build.auditor()):
        response = client.get(url, headers=build.headers(user))
        assert response.status_code == 200
        assert response.get_json()["voucher_id"] == mine["voucher_id"]
    assert client.get(url, headers=build.headers(world.alice.user)).status_code == 403


# --- the QR codes, read by a real reader ----------------------------------------------------------

def test_the_card_png_carries_a_qr_code_that_redeems_its_voucher(build, client, chosen):
    world = chosen
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.bath)[1]

    response = client.get(f"{API}/vouchers/{voucher.id}/card.png", headers=build.headers(world.alice.user))

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    image = Image.open(io.BytesIO(response.data))
    assert image.size == (1748, 1240)  # A6 landscape at 300 dpi
    assert round(image.info["dpi"][0]) == 300
    scanned = decode_qr(response.data)
    body = redeemed(client, build.headers(world.p1.user), voucher_token=scanned)
    assert body["voucher_id"] == voucher.id
    assert body["presence"] == "voucher_card"


def test_an_admin_prints_any_card_in_scope(build, client, chosen):
    world = chosen
    voucher = build.vouchers(Voucher.recipient_id == world.bob.id)[0]

    response = client.get(f"{API}/vouchers/{voucher.id}/card.png", headers=build.headers(world.admin))

    assert response.status_code == 200
    assert decode_qr(response.data) == build.voucher_token(voucher.id)


def test_the_presence_code_png_decodes_to_the_token_and_the_token_redeems(build, client, chosen):
    world = chosen
    alice = build.headers(world.alice.user)
    token = presence_code(client, alice)

    response = client.get(f"{API}/me/presence-code.png", query_string={"token": token}, headers=alice)

    assert response.status_code == 200
    assert response.mimetype == "image/png"
    scanned = decode_qr(response.data)
    assert scanned == token
    body = redeemed(client, build.headers(world.p1.user), presence_token=scanned, item_code=world.meal)
    assert build.voucher(body["voucher_id"]).recipient_id == world.alice.id


def test_the_presence_code_png_renders_only_your_own_live_code(build, client, chosen):
    world = chosen
    alice, bob = build.headers(world.alice.user), build.headers(world.bob.user)
    alices = presence_code(client, alice)
    stale = build.presence_token(world.alice.id, now=utcnow() - timedelta(minutes=5))
    url = f"{API}/me/presence-code.png"

    refused(client.get(url, query_string={"token": alices}, headers=bob), 404, "not_found")
    refused(client.get(url, query_string={"token": "garbage"}, headers=alice), 422, "invalid_token")
    refused(client.get(url, query_string={"token": stale}, headers=alice), 422, "token_expired")
    refused(client.get(url, query_string={"token": build.voucher_token(1)}, headers=alice), 422, "invalid_token")
    assert client.get(url, query_string={"token": alices}, headers=build.headers(world.p1.user)).status_code == 403
    assert client.get(url, headers=alice).status_code == 422


def test_the_card_svg_is_valid_xml_with_the_serial_item_value_and_validity(build, client):
    meal = build.item(name="助浴", unit="次", price=6000)
    programme = build.programme(items=[(meal, 5000, 1)], name="蒲江县 <居家> 养老 & 助浴券", min_age=None,
                                copay={"default": 5})
    recipient = build.recipient(login=True, name="李桂英")
    build.issue(programme, build.period())
    voucher = build.vouchers()[0]

    response = client.get(f"{API}/vouchers/{voucher.id}/card.svg", headers=build.headers(recipient.user))

    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    root = ET.fromstring(response.data)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text or "" for element in root.iter("{http://www.w3.org/2000/svg}text")]
    assert voucher.serial in texts
    assert any("助浴" in text and meal in text for text in texts)
    assert "¥47.50" in texts
    assert "¥2.50" in texts
    first, last = period_days(build.period())
    assert any(first.isoformat() in text and last.isoformat() in text for text in texts)
    assert "蒲江县 <居家> 养老 & 助浴券" in texts
    assert "李桂英" not in response.get_data(as_text=True)  # no personal data on the card
    assert len(list(root.iter("{http://www.w3.org/2000/svg}rect"))) > 100  # the QR modules


def test_the_card_is_the_same_voucher_the_serial_names(build, client, chosen):
    world = chosen
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id)[2]
    headers = build.headers(world.alice.user)

    png = client.get(f"{API}/vouchers/{voucher.id}/card.png", headers=headers)
    svg = client.get(f"{API}/vouchers/{voucher.id}/card.svg", headers=headers)

    assert decode_qr(png.data) == build.voucher_token(voucher.id)
    assert voucher.serial in svg.get_data(as_text=True)

