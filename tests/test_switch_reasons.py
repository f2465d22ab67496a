"""Why a recipient switches provider (docs/domain.md, market integrity: switching is the market's signal).

PUT /recipients/{id}/choices takes `switch_reason` (service_quality, staff_attitude, timeliness, price, moved,
other) and `switch_note` (at most 200 characters once trimmed) when it replaces another provider; both are kept
with the switch in the choice history and returned by GET /recipients/{id}/choices. The rules: a first choice
(or the same provider again) has no reason; `other` needs a note; a note needs a reason. Every test runs on
SQLite and PostgreSQL.
"""

import json

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db
from marketplace.errors import ValidationFailed
from tests.conftest import error_code
from vouchers.models import SWITCH_REASONS, ChoiceEvent

API = "/api/v1"


@pytest.fixture
def world(build):
    """The standard world; alice chose p1 for meals (her own choice)."""
    world = build.world()
    build.choose(world.alice, world.programme, world.meal, world.p1, by=world.alice.user)
    return world


def switch(client, headers, world, provider_id, **reason):
    return client.put(f"{API}/recipients/{world.alice.id}/choices", headers=headers, json={
        "programme_id": world.programme.id, "item_code": world.meal, "provider_id": provider_id, **reason})


def history(client, headers, recipient_id) -> list[dict]:
    response = client.get(f"{API}/recipients/{recipient_id}/choices", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["history"]


def refused_on(response, field: str) -> str:
    assert response.status_code == 422, response.get_json()
    assert error_code(response) == "validation_error"
    return response.get_json()["error"]["details"]["fields"][field][0]


@pytest.mark.parametrize("reason", SWITCH_REASONS)
def test_a_switch_keeps_its_reason_in_the_history(build, client, world, reason):
    alice = build.headers(world.alice.user)
    note = "换一家试试" if reason == "other" else None

    response = switch(client, alice, world, world.p2.id, switch_reason=reason,
                      **({"switch_note": note} if note else {}))

    assert response.status_code == 200, response.get_json()
    first, second = history(client, alice, world.alice.id)
    assert (first["switch_reason"], first["switch_note"]) == (None, None)
    assert (second["from_provider_id"], second["to_provider_id"]) == (world.p1.id, world.p2.id)
    assert (second["switch_reason"], second["switch_note"]) == (reason, note)


def test_the_note_is_trimmed_and_kept_and_the_audit_names_only_the_reason(build, client, world):
    alice = build.headers(world.alice.user)
    note = "  送餐总是迟到，饭菜凉了  "

    response = switch(client, alice, world, world.p2.id, switch_reason="timeliness", switch_note=note)

    assert response.status_code == 200, response.get_json()
    assert history(client, alice, world.alice.id)[-1]["switch_note"] == note.strip()
    event = build.read(lambda: db.session.scalars(select(AuditEvent).where(AuditEvent.action == "choice.made")
                                                  .order_by(AuditEvent.id.desc())).first())
    assert json.loads(event.data)["switch_reason"] == "timeliness"
    assert "送餐" not in event.data  # the recipient's own words stay with the switch


def test_a_switch_without_a_reason_is_fine(build, client, world):
    alice = build.headers(world.alice.user)

    assert switch(client, alice, world, world.p2.id).status_code == 200

    assert history(client, alice, world.alice.id)[-1]["switch_reason"] is None


def test_other_needs_a_note(build, client, world):
    alice = build.headers(world.alice.user)

    for note in ({}, {"switch_note": "   "}):
        message = refused_on(switch(client, alice, world, world.p2.id, switch_reason="other", **note), "switch_note")
        assert "other" in message
    assert build.count(ChoiceEvent) == 1


def test_a_note_needs_a_reason(build, client, world):
    response = switch(client, build.headers(world.alice.user), world, world.p2.id, switch_note="不想说")

    assert "reason" in refused_on(response, "switch_reason")
    assert build.count(ChoiceEvent) == 1


def test_a_first_choice_has_no_reason(build, client, world):
    response = client.put(f"{API}/recipients/{world.alice.id}/choices", headers=build.headers(world.alice.user),
                          json={"programme_id": world.programme.id, "item_code": world.bath, "provider_id": world.p1.id,
                                "switch_reason": "price"})

    assert "switch" in refused_on(response, "switch_reason")
    assert build.count(ChoiceEvent) == 1


def test_choosing_the_same_provider_again_has_no_reason(build, client, world):
    response = switch(client, build.headers(world.alice.user), world, world.p1.id, switch_reason="price")

    refused_on(response, "switch_reason")
    assert build.count(ChoiceEvent) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"switch_reason": "too_expensive"}, "switch_reason"),
    ({"switch_reason": 3}, "switch_reason"),
    ({"switch_reason": "price", "switch_note": "贵" * 201}, "switch_note"),
    ({"switch_reason": "other", "switch_note": 42}, "switch_note"),
])
def test_unknown_reasons_and_long_notes_are_refused(build, client, world, body, field):
    refused_on(switch(client, build.headers(world.alice.user), world, world.p2.id, **body), field)
    assert build.count(ChoiceEvent) == 1


def test_a_note_of_200_characters_once_trimmed_is_accepted(build, client, world):
    note = "  " + "贵" * 200 + "  "

    response = switch(client, build.headers(world.alice.user), world, world.p2.id, switch_reason="price",
                      switch_note=note)

    assert response.status_code == 200, response.get_json()


def test_an_admin_records_the_reason_for_the_recipient(build, client, world):
    response = switch(client, build.headers(world.admin), world, world.p2.id, switch_reason="staff_attitude",
                      switch_note="电话回访时说明")

    assert response.status_code == 200, response.get_json()
    last = history(client, build.headers(world.alice.user), world.alice.id)[-1]
    assert (last["acted_as"], last["switch_reason"]) == ("admin", "staff_attitude")
    assert last["switch_note"] == "电话回访时说明"


def test_the_service_applies_the_same_rules(build, world):
    build.choose(world.alice, world.programme, world.meal, world.p2, reason="moved")
    with pytest.raises(ValidationFailed) as refusal:
        build.choose(world.alice, world.programme, world.meal, world.p1, reason="other", note=" ")

    assert "switch_note" in refusal.value.details["fields"]
    kept = build.read(lambda: db.session.scalars(select(ChoiceEvent).order_by(ChoiceEvent.id)).all())
    assert [(event.to_provider_id, event.switch_reason) for event in kept] == [(world.p1.id, None),
                                                                               (world.p2.id, "moved")]
