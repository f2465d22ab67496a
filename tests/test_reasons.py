"""Every `reason` a decision needs follows one rule (marketplace.schemas.Reason): at least 2 characters
once trimmed, at most 500. Two Chinese characters — 追加, 试点, 调整 — are a reason; blanks are not.

The routes: a budget amendment, the four qualification decisions, revoking a voucher, reversing a
redemption. A guard test finds every `reason` field of every request schema, so a new one cannot
bring its own rule.
"""

import marshmallow as ma
import pytest

import marketplace.app  # noqa: F401  (imports every domain, so every request schema exists)
from marketplace import schemas
from tests.conftest import error_code
from vouchers.models import Voucher

API = "/api/v1"
TWO_CHARACTERS = ["追加", "试点", "调整", "ok", " 追加 ", "\u3000调整\u3000"]
NO_REASON = ["", " ", "  ", "   ", "\t\n", "\u3000\u3000\u3000", "追", " 追 "]


@pytest.fixture
def world(build):
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    return world


def decisions(build, world):
    """(url, extra body, headers) of each route taking a reason, each on a fresh object."""
    admin = build.headers(world.admin)
    vouchers = build.vouchers(Voucher.recipient_id == world.bob.id, Voucher.status == "issued")
    redemption = build.redeem(world.p1, voucher=vouchers[0].id)
    approved = build.provider(items=[world.meal], login=False)
    suspended = build.provider(items=[world.meal], status="suspended", login=False)
    pending = build.provider(items=[world.meal], status="pending", login=False)
    return {
        "budget": (f"{API}/programmes/{world.programme.id}/budget", {"amount_fen": 100}, admin),
        "approve": (f"{API}/providers/{pending.id}/approve", {}, admin),
        "suspend": (f"{API}/providers/{approved.id}/suspend", {}, admin),
        "reinstate": (f"{API}/providers/{suspended.id}/reinstate", {}, admin),
        "revoke provider": (f"{API}/providers/{approved.id}/revoke", {}, admin),
        "revoke voucher": (f"{API}/vouchers/{vouchers[1].id}/revoke", {}, admin),
        "reverse": (f"{API}/redemptions/{redemption.id}/reverse", {}, build.headers(world.p1.user)),
    }


ROUTES = ["budget", "approve", "suspend", "reinstate", "revoke provider", "revoke voucher", "reverse"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("reason", ["追加", "试点", "调整"])
def test_two_chinese_characters_are_a_reason(build, client, world, route, reason):
    url, body, headers = decisions(build, world)[route]
    response = client.post(url, json={**body, "reason": reason}, headers=headers)
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize("route", ROUTES)
def test_blank_or_one_character_is_no_reason(build, client, world, route):
    url, body, headers = decisions(build, world)[route]
    for reason in NO_REASON:
        response = client.post(url, json={**body, "reason": reason}, headers=headers)
        assert (response.status_code, error_code(response)) == (422, "validation_error"), repr(reason)
        assert "reason" in response.get_json()["error"]["details"]["fields"]


def test_a_reason_is_kept_trimmed(build, client, world):
    url, body, headers = decisions(build, world)["budget"]
    assert client.post(url, json={**body, "reason": "\u3000 追加 \n"}, headers=headers).status_code == 200
    events = client.get(f"{API}/audit?entity=programme&entity_id={world.programme.id}",
                        headers=build.headers(world.admin)).get_json()["items"]
    assert events[0]["action"] == "programme.budget_amended"
    assert events[0]["data"]["reason"] == "追加"


@pytest.mark.parametrize("reason", TWO_CHARACTERS)
def test_the_reason_field_takes_two_characters_after_trimming(reason):
    assert schemas.Reason().deserialize(reason) == reason.strip()


def test_the_reason_field_is_at_most_500_characters():
    assert schemas.Reason().deserialize("理" * 500) == "理" * 500
    with pytest.raises(ma.ValidationError):
        schemas.Reason().deserialize("理" * 501)


def request_schemas():
    pending, seen = list(schemas.InputSchema.__subclasses__()), []
    while pending:
        schema = pending.pop()
        pending.extend(schema.__subclasses__())
        if schema.__module__.partition(".")[0] in ("marketplace", "providers", "vouchers"):
            seen.append(schema)
    return seen


def test_every_reason_field_of_every_request_schema_is_a_reason():
    reasons = {f"{schema.__module__}.{schema.__name__}": schema._declared_fields["reason"]
               for schema in request_schemas() if "reason" in schema._declared_fields}
    assert len(reasons) >= 2  # ReasonSchema and the budget amendment at least
    assert [name for name, field in reasons.items() if not isinstance(field, schemas.Reason)] == []
