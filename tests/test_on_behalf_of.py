"""Acting for a recipient (代办): when an admin — staff, or a community worker at the recipient's side — does
through the API what the recipient could do (choose a provider, complain, a rating from a phone follow-up,
print a voucher card), the audit event names the admin as actor and the recipient as `on_behalf_of`, hashed
with the event. The recipient acting themself leaves it empty. Every test runs on SQLite and PostgreSQL.
"""

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db
from vouchers.models import Voucher

API = "/api/v1"


@pytest.fixture
def world(build):
    """The standard world, this month issued, alice and bob chose p1."""
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    return world


def audited(build, action: str) -> list[AuditEvent]:
    return build.read(lambda: db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                                 .order_by(AuditEvent.id)).all())


def last(build, action: str) -> AuditEvent:
    return audited(build, action)[-1]


def ok(response, status=200) -> dict:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def test_an_admin_choosing_for_a_recipient_acts_on_their_behalf(build, client, world):
    body = {"programme_id": world.programme.id, "item_code": world.meal, "provider_id": world.p2.id}

    ok(client.put(f"{API}/recipients/{world.alice.id}/choices", json=body, headers=build.headers(world.admin)))
    by_admin = last(build, "choice.made")
    ok(client.put(f"{API}/recipients/{world.alice.id}/choices", json={**body, "provider_id": world.p1.id},
                  headers=build.headers(world.alice.user)))
    by_herself = last(build, "choice.made")

    assert (by_admin.actor_id, by_admin.on_behalf_of) == (world.admin.id, world.alice.id)
    assert (by_herself.actor_id, by_herself.on_behalf_of) == (world.alice.user.id, None)


def test_an_admin_filing_a_complaint_for_a_recipient_acts_on_their_behalf(build, client, world):
    served = build.redeem(world.p1, world.bob, world.meal)
    admin = build.headers(world.admin)

    ok(client.post(f"{API}/complaints", headers=admin, json={
        "provider_id": world.p1.id, "recipient_id": world.alice.id, "text": "送餐晚了一小时"}), 201)
    ok(client.post(f"{API}/complaints", headers=admin, json={
        "provider_id": world.p1.id, "redemption_id": served.id, "text": "未上门服务"}), 201)
    ok(client.post(f"{API}/complaints", headers=admin, json={"provider_id": world.p1.id, "text": "收费不规范"}), 201)
    ok(client.post(f"{API}/complaints", headers=build.headers(world.alice.user), json={
        "provider_id": world.p1.id, "text": "态度不好"}), 201)

    events = audited(build, "complaint.filed")
    assert [(event.actor_id, event.on_behalf_of) for event in events] == [
        (world.admin.id, world.alice.id),  # naming her
        (world.admin.id, world.bob.id),  # about his service
        (world.admin.id, None),  # about the provider, for nobody in particular
        (world.alice.user.id, None),  # her own
    ]


def test_a_rating_from_a_phone_follow_up_is_on_the_recipients_behalf(build, client, world):
    called = build.redeem(world.p1, world.alice, world.meal)
    rated_herself = build.redeem(world.p1, world.bob, world.meal)

    ok(client.post(f"{API}/redemptions/{called.id}/rating", json={"score": 4, "source": "phone_followup"},
                   headers=build.headers(world.admin)), 201)
    ok(client.post(f"{API}/redemptions/{rated_herself.id}/rating", json={"score": 5},
                   headers=build.headers(world.bob.user)), 201)

    events = audited(build, "rating.recorded")
    assert [(event.actor_id, event.on_behalf_of) for event in events] == [(world.admin.id, world.alice.id),
                                                                          (world.bob.user.id, None)]


@pytest.mark.parametrize("kind", ["png", "svg"])
def test_a_card_an_admin_prints_is_audited_on_the_recipients_behalf(build, client, world, kind):
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id)[0]

    ok(client.get(f"{API}/vouchers/{voucher.id}/card.{kind}", headers=build.headers(world.admin)))
    ok(client.get(f"{API}/vouchers/{voucher.id}/card.{kind}", headers=build.headers(world.alice.user)))

    events = audited(build, "voucher.card_printed")
    assert [(event.actor_id, event.entity_id, event.on_behalf_of, event.region_code) for event in events] == [
        (world.admin.id, str(voucher.id), world.alice.id, world.programme.region_code)]


def test_a_refused_card_leaves_no_event(build, client, world):
    served = build.redeem(world.p1, world.alice, world.meal)

    response = client.get(f"{API}/vouchers/{served.voucher_id}/card.png", headers=build.headers(world.admin))

    assert response.status_code == 409
    assert audited(build, "voucher.card_printed") == []


def test_the_audit_trail_shows_and_filters_what_was_done_for_a_recipient(build, client, world):
    admin = build.headers(world.admin)
    voucher = build.vouchers(Voucher.recipient_id == world.bob.id)[0]
    ok(client.get(f"{API}/vouchers/{voucher.id}/card.svg", headers=admin))
    ok(client.post(f"{API}/complaints", headers=admin, json={
        "provider_id": world.p1.id, "recipient_id": world.alice.id, "text": "送餐晚了一小时"}), 201)

    for_bob = ok(client.get(f"{API}/audit", query_string={"on_behalf_of": world.bob.id}, headers=admin))["items"]
    everything = ok(client.get(f"{API}/audit", query_string={"per_page": 500}, headers=admin))["items"]

    # Newest first; the choices of the fixture were the system admin acting for bob too.
    assert [(item["action"], item["actor_id"], item["on_behalf_of"]) for item in for_bob] == [
        ("voucher.card_printed", world.admin.id, world.bob.id), ("choice.made", world.admin.id, world.bob.id),
        ("choice.made", world.admin.id, world.bob.id)]
    assert {item["on_behalf_of"] for item in everything} == {None, world.alice.id, world.bob.id}
    assert ok(client.get(f"{API}/audit/verify", headers=admin))["ok"] is True
