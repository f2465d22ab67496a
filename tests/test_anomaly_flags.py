"""The life of a market-integrity flag (issue 18; API.md "Market integrity"): list and read, confirm and
dismiss with a reason, what a confirmed flag holds out of settlement and what a dismissal releases, what a
provider may see, who may do what, and two admins deciding at once.

Detection is not tested here (vouchers.service.anomaly_detection makes the flags): `plant` inserts the flag
rows directly, about redemptions made through the services. Every test runs on SQLite and PostgreSQL.
"""

from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db, utcnow
from tests.conftest import error_code
from tests.support.races import race_transactions
from tests.support.scenario import ProviderRef, RecipientRef, RedemptionRef, face_value
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption, Redemption, Settlement
from vouchers.service import anomalies

API = "/api/v1"
PRICE, QUOTA = 1237, 20
FACE = face_value(PRICE, 20)
# Evidence that fills in each planted rule's explanation (marketplace.programmes.integrity.EXPLANATIONS).
EVIDENCE = {
    "short_duration": {"count": 2, "min_minutes": 30, "shortest": 4},
    "over_capacity": {"count": 130, "capacity": 100, "tolerance_percent": 0},
    "typed_code_share": {"share_percent": 60, "count": 20, "typed": 12, "max_share_percent": 30},
}
SEVERITY = {"short_duration": "low", "over_capacity": "medium", "typed_code_share": "low",
            "overlapping_service": "high", "served_after_exit": "high"}


# --- the cast and the flag factory --------------------------------------------------------------------

@dataclass
class Scene:
    """An active programme buying meals; alice chose p1 and bob chose p2; last month's vouchers are issued.
    `admin` decides flags and drafts settlements, `other_admin` is a second admin of the whole country."""

    programme: int
    meal: str
    p1: ProviderRef
    p2: ProviderRef
    alice: RecipientRef
    bob: RecipientRef
    admin: User
    other_admin: User
    auditor: User


@pytest.fixture
def scene(build):
    meal = build.item()
    programme = build.programme(items=[(meal, PRICE, QUOTA)]).id
    p1 = build.provider(items=[meal], enrol_in=[programme])
    p2 = build.provider(items=[meal], enrol_in=[programme])
    alice, bob = build.recipient(), build.recipient()
    build.choose(alice, programme, meal, p1)
    build.choose(bob, programme, meal, p2)
    build.issue(programme, build.period(-1))
    return Scene(programme=programme, meal=meal, p1=p1, p2=p2, alice=alice, bob=bob, admin=build.admin(),
                 other_admin=build.admin(), auditor=build.auditor())


def deliver(build, scene, provider: ProviderRef, recipient: RecipientRef, days: list[int]) -> list[RedemptionRef]:
    return [build.redeem(provider, recipient, scene.meal, delivered_at=build.in_month(-1, day, 10)) for day in days]


def plant(build, scene, provider: ProviderRef, redemptions: list[RedemptionRef], *, rule: str = "short_duration",
          status: str = "open", subject: str | None = None, evidence: dict | None = None,
          recipient: RecipientRef | None = None, staff_user_id: int | None = None, period: str | None = None,
          created_at: datetime | None = None) -> int:
    """An anomaly flag as detection would write it, about *redemptions* of *provider*; its id."""

    def insert():
        decided = status != "open"
        flag = AnomalyFlag(
            programme_id=scene.programme, period=period or build.period(-1), rule=rule, severity=SEVERITY[rule],
            subject=subject or f"provider:{provider.id}", provider_id=provider.id,
            recipient_id=recipient.id if recipient else None, staff_user_id=staff_user_id,
            evidence=evidence if evidence is not None else EVIDENCE[rule], status=status,
            created_at=created_at or utcnow(), decided_at=utcnow() if decided else None,
            decided_by=scene.admin.id if decided else None, reason="已核实" if decided else None)
        db.session.add(flag)
        db.session.flush()
        db.session.add_all([AnomalyFlagRedemption(flag_id=flag.id, redemption_id=r.id) for r in redemptions])
        return flag.id

    return build.run(insert)


def decide(client, build, flag_id: int, verb: str, *, by: User, reason: str = "电话回访核实：老人说没有上门"):
    return client.post(f"{API}/anomalies/{flag_id}/{verb}", json={"reason": reason}, headers=build.headers(by))


def decided(client, build, flag_id: int, verb: str, *, by: User) -> dict:
    response = decide(client, build, flag_id, verb, by=by)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def drafted(client, build, scene, period: str) -> dict[int, dict]:
    """POST the period's settlements (201) as the scene's admin; them by provider id."""
    response = client.post(f"{API}/programmes/{scene.programme}/settlements", json={"period": period},
                           headers=build.headers(scene.admin))
    assert response.status_code == 201, response.get_json()
    return {item["provider_id"]: item for item in response.get_json()["items"]}


def settled_ids(build, settlement_id: int) -> set[int]:
    return {r.id for r in build.redemptions(Redemption.settlement_id == settlement_id)}


def listed(client, build, *, by: User, **query) -> dict:
    response = client.get(f"{API}/anomalies", query_string=query, headers=build.headers(by))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- holds: a confirmed flag keeps its redemptions out of settlement ------------------------------------

def test_a_confirmed_flag_keeps_its_redemptions_out_of_a_settlement_draft(build, client, scene):
    held, free = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    flag = plant(build, scene, scene.p1, [held])
    decided(client, build, flag, "confirm", by=scene.admin)

    first = drafted(client, build, scene, build.period(-1))

    assert settled_ids(build, first[scene.p1.id]["id"]) == {free.id}
    assert (first[scene.p1.id]["redemptions_count"], first[scene.p1.id]["gross_fen"]) == (1, FACE)
    assert build.redemption(held.id).settlement_id is None


def test_a_later_dismissal_lets_them_into_the_next_draft(build, client, scene):
    held, free = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    [only] = deliver(build, scene, scene.p2, scene.bob, [8])
    flag = plant(build, scene, scene.p1, [held])
    lonely = plant(build, scene, scene.p2, [only], rule="over_capacity")
    decided(client, build, flag, "confirm", by=scene.admin)
    decided(client, build, lonely, "confirm", by=scene.admin)

    first = drafted(client, build, scene, build.period(-1))
    assert set(first) == {scene.p1.id}  # p2's only service is held: nothing to settle for p2
    assert settled_ids(build, first[scene.p1.id]["id"]) == {free.id}

    decided(client, build, flag, "dismiss", by=scene.other_admin)
    decided(client, build, lonely, "dismiss", by=scene.other_admin)

    # p1 was settled for the month already: its released service waits for the next run; p2's comes now.
    again = drafted(client, build, scene, build.period(-1))
    assert set(again) == {scene.p2.id}
    assert settled_ids(build, again[scene.p2.id]["id"]) == {only.id}
    following = drafted(client, build, scene, build.period())
    assert settled_ids(build, following[scene.p1.id]["id"]) == {held.id}


def test_open_and_dismissed_flags_hold_nothing(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [3, 4, 5])
    plant(build, scene, scene.p1, served[:1])
    plant(build, scene, scene.p1, served[1:2], rule="over_capacity", status="dismissed")
    dismissed_after_confirming = plant(build, scene, scene.p1, served[2:], rule="typed_code_share")
    decided(client, build, dismissed_after_confirming, "confirm", by=scene.admin)
    decided(client, build, dismissed_after_confirming, "dismiss", by=scene.admin)

    first = drafted(client, build, scene, build.period(-1))

    assert settled_ids(build, first[scene.p1.id]["id"]) == {r.id for r in served}


def test_a_dismissed_flag_confirmed_again_holds_again(build, client, scene):
    held, free = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    flag = plant(build, scene, scene.p1, [held], status="dismissed")

    body = decided(client, build, flag, "confirm", by=scene.admin)

    assert body["status"] == "confirmed"
    first = drafted(client, build, scene, build.period(-1))
    assert settled_ids(build, first[scene.p1.id]["id"]) == {free.id}


def test_a_redemption_in_two_flags_is_held_while_either_is_confirmed(build, client, scene):
    held, free = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    first_flag = plant(build, scene, scene.p1, [held])
    second_flag = plant(build, scene, scene.p1, [held], rule="over_capacity")
    decided(client, build, first_flag, "confirm", by=scene.admin)
    decided(client, build, second_flag, "confirm", by=scene.admin)
    decided(client, build, first_flag, "dismiss", by=scene.admin)

    first = drafted(client, build, scene, build.period(-1))

    assert settled_ids(build, first[scene.p1.id]["id"]) == {free.id}


def test_confirming_a_flag_about_settled_services_changes_no_settlement_and_no_money(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    [draft] = drafted(client, build, scene, build.period(-1)).values()
    ledger = client.get(f"{API}/programmes/{scene.programme}/ledger", headers=build.headers(scene.admin)).get_json()
    flag = plant(build, scene, scene.p1, served)

    decided(client, build, flag, "confirm", by=scene.admin)

    assert settled_ids(build, draft["id"]) == {r.id for r in served}
    assert build.settlement(draft["id"]).gross_fen == 2 * FACE
    assert client.get(f"{API}/programmes/{scene.programme}/ledger",
                      headers=build.headers(scene.admin)).get_json() == ledger


# --- deciding ---------------------------------------------------------------------------------------------

def test_confirm_records_who_when_and_why(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [6])
    flag = plant(build, scene, scene.p1, served, recipient=scene.alice)
    before = utcnow()

    body = decided(client, build, flag, "confirm", by=scene.admin)

    assert body["status"] == "confirmed"
    assert body["decided_by"] == scene.admin.id
    assert body["reason"] == "电话回访核实：老人说没有上门"
    assert datetime.fromisoformat(body["decided_at"]) >= before.replace(microsecond=0)
    assert body["redemption_ids"] == [served[0].id]
    assert body["recipient_id"] == scene.alice.id
    row = build.read(lambda: db.session.get(AnomalyFlag, flag))
    assert (row.status, row.decided_by, row.reason) == ("confirmed", scene.admin.id, "电话回访核实：老人说没有上门")


@pytest.mark.parametrize(("start", "verb", "end"), [
    ("open", "confirm", "confirmed"), ("open", "dismiss", "dismissed"), ("confirmed", "dismiss", "dismissed"),
    ("dismissed", "confirm", "confirmed")])
def test_every_allowed_decision(build, client, scene, start, verb, end):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]), status=start)
    assert decided(client, build, flag, verb, by=scene.admin)["status"] == end


@pytest.mark.parametrize(("start", "verb"), [("confirmed", "confirm"), ("dismissed", "dismiss")])
def test_deciding_the_same_way_again_is_409_and_changes_nothing(build, client, scene, start, verb):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]), status=start)
    before = build.read(lambda: db.session.get(AnomalyFlag, flag))

    response = decide(client, build, flag, verb, by=scene.other_admin, reason="再确认一次")

    assert response.status_code == 409
    assert error_code(response) == "invalid_transition"
    after = build.read(lambda: db.session.get(AnomalyFlag, flag))
    assert (after.status, after.decided_by, after.reason) == (before.status, before.decided_by, before.reason)
    assert _decision_events(build, flag) == []


def test_every_decision_is_audited_with_its_reason_rule_and_redemption_count(build, client, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6, 7]), rule="over_capacity")
    decided(client, build, flag, "confirm", by=scene.admin)
    decide(client, build, flag, "confirm", by=scene.admin)  # refused: no event
    response = decide(client, build, flag, "dismiss", by=scene.other_admin, reason="机构补交了排班表")
    assert response.status_code == 200

    events = client.get(f"{API}/audit", query_string={"entity": "anomaly_flag", "entity_id": str(flag)},
                        headers=build.headers(scene.auditor)).get_json()["items"]
    by_action = {event["action"]: event for event in events}
    assert sorted(by_action) == ["anomaly.confirmed", "anomaly.dismissed"]
    confirmed, dismissed = by_action["anomaly.confirmed"], by_action["anomaly.dismissed"]
    assert confirmed["actor"] == scene.admin.username
    assert dismissed["actor"] == scene.other_admin.username
    assert confirmed["data"]["reason"] == "电话回访核实：老人说没有上门"
    assert dismissed["data"]["reason"] == "机构补交了排班表"
    for event, was in ((confirmed, "open"), (dismissed, "confirmed")):
        assert event["data"]["rule"] == "over_capacity"
        assert event["data"]["redemptions"] == 2
        assert event["data"]["from"] == was
        assert event["region_code"] == "510131"
    assert client.get(f"{API}/audit/verify", headers=build.headers(scene.auditor)).get_json()["ok"] is True


BAD_BODIES = [{}, {"reason": ""}, {"reason": "   "}, {"reason": "x" * 501}, {"reason": 7}, {"reason": None},
              {"reason": "核实", "status": "confirmed"}]


def test_a_decision_needs_a_reason_of_at_most_500_characters(build, client, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]))
    headers = build.headers(scene.admin)
    for body in BAD_BODIES:
        for verb in ("confirm", "dismiss"):
            response = client.post(f"{API}/anomalies/{flag}/{verb}", json=body, headers=headers)
            assert response.status_code == 422, (verb, body)
            assert error_code(response) == "validation_error"
    assert build.read(lambda: db.session.get(AnomalyFlag, flag)).status == "open"


def test_a_reason_of_500_characters_is_enough_and_is_trimmed(build, client, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]))
    response = decide(client, build, flag, "dismiss", by=scene.admin, reason=f"  {'核' * 500}  ")
    assert response.status_code == 200
    assert response.get_json()["reason"] == "核" * 500


def test_an_unknown_flag_is_404(build, client, scene):
    headers = build.headers(scene.admin)
    assert client.get(f"{API}/anomalies/999999", headers=headers).status_code == 404
    for verb in ("confirm", "dismiss"):
        response = client.post(f"{API}/anomalies/999999/{verb}", json={"reason": "核实"}, headers=headers)
        assert response.status_code == 404
        assert error_code(response) == "not_found"


def test_the_lists_filters_are_validated(build, client, scene):
    headers = build.headers(scene.admin)
    for query in ({"status": "held"}, {"rule": "gut_feeling"}, {"period": "2026-13"}, {"programme_id": "0"},
                  {"provider_id": "x"}, {"per_page": "501"}):
        response = client.get(f"{API}/anomalies", query_string=query, headers=headers)
        assert response.status_code == 422, query
        assert error_code(response) == "validation_error"


# --- reading: what each reader sees -----------------------------------------------------------------------

def test_an_admin_lists_every_flag_most_severe_first_with_its_explanation(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    low = plant(build, scene, scene.p1, served[:1])
    medium = plant(build, scene, scene.p1, served, rule="over_capacity", status="confirmed")
    other = plant(build, scene, scene.p2, [], rule="typed_code_share", status="dismissed")

    body = listed(client, build, by=scene.admin)

    assert (body["total"], body["page"], body["per_page"]) == (3, 1, 50)
    assert [item["id"] for item in body["items"]] == [medium, other, low]  # medium, then the newest low
    item = body["items"][0]
    assert item["redemption_ids"] == sorted(r.id for r in served)
    assert item["evidence"] == EVIDENCE["over_capacity"]
    assert item["explanation"] == "本月服务 130 次，超过机构申报的每月服务能力 100 次（允许超出 0%）。"
    assert (item["rule"], item["severity"], item["period"], item["programme_id"], item["provider_id"]) == (
        "over_capacity", "medium", build.period(-1), scene.programme, scene.p1.id)
    assert set(item) == {"id", "programme_id", "period", "rule", "severity", "provider_id", "recipient_id",
                         "staff_user_id", "redemption_ids", "evidence", "explanation", "status", "created_at",
                         "decided_by", "decided_at", "reason"}


def test_the_explanation_follows_the_requests_language(build, client, scene):
    flag = plant(build, scene, scene.p1, [])
    headers = {**build.headers(scene.admin), "Accept-Language": "en"}
    body = client.get(f"{API}/anomalies/{flag}", headers=headers).get_json()
    assert body["explanation"] == ("2 services were recorded as shorter than the item's plausible minimum of 30 "
                                   "minutes; the shortest took 4 minutes.")


def test_evidence_that_cannot_fill_in_the_explanation_gives_the_rules_name(build, client, scene):
    flag = plant(build, scene, scene.p1, [], evidence={"count": 2})
    body = client.get(f"{API}/anomalies/{flag}", headers=build.headers(scene.admin)).get_json()
    assert body["explanation"] == "服务时长过短"


def test_the_list_filters_by_programme_period_status_rule_and_provider(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [6])
    a = plant(build, scene, scene.p1, served)
    b = plant(build, scene, scene.p1, served, rule="over_capacity", status="confirmed")
    c = plant(build, scene, scene.p2, [], rule="typed_code_share", status="dismissed", period=build.period(-2))
    elsewhere = build.programme(items=[(scene.meal, PRICE, QUOTA)]).id

    def ids(**query):
        return {item["id"] for item in listed(client, build, by=scene.auditor, **query)["items"]}

    assert ids() == {a, b, c}
    assert ids(programme_id=scene.programme) == {a, b, c}
    assert ids(programme_id=elsewhere) == set()
    assert ids(period=build.period(-1)) == {a, b}
    assert ids(status="open") == {a}
    assert ids(status="confirmed", provider_id=scene.p1.id) == {b}
    assert ids(rule="typed_code_share") == {c}
    assert ids(provider_id=scene.p2.id) == {c}


def test_the_list_is_paged(build, client, scene):
    flags = [plant(build, scene, scene.p1, [], subject=f"provider:{scene.p1.id}:{n}") for n in range(3)]
    pages = [listed(client, build, by=scene.admin, per_page=2, page=page) for page in (1, 2)]
    assert [page["total"] for page in pages] == [3, 3]
    assert [[item["id"] for item in page["items"]] for page in pages] == [flags[:0:-1], flags[:1]]


def test_a_provider_sees_only_its_own_confirmed_flags(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [6])
    mine = plant(build, scene, scene.p1, served, rule="over_capacity", status="confirmed")
    still_open = plant(build, scene, scene.p1, served)
    dismissed = plant(build, scene, scene.p1, served, rule="typed_code_share", status="dismissed")
    theirs = plant(build, scene, scene.p2, [], rule="over_capacity", status="confirmed")
    staff = build.headers(scene.p1.user)

    body = listed(client, build, by=scene.p1.user)
    assert [item["id"] for item in body["items"]] == [mine]
    assert body["total"] == 1
    for query in ({"status": "open"}, {"status": "dismissed"}, {"provider_id": scene.p2.id}):
        assert listed(client, build, by=scene.p1.user, **query)["items"] == [], query
    assert client.get(f"{API}/anomalies/{mine}", headers=staff).status_code == 200
    for hidden in (still_open, dismissed, theirs):
        response = client.get(f"{API}/anomalies/{hidden}", headers=staff)
        assert response.status_code == 404, hidden
        assert error_code(response) == "not_found"

    decided(client, build, mine, "dismiss", by=scene.admin)  # released: the provider no longer sees it
    assert listed(client, build, by=scene.p1.user)["items"] == []
    assert client.get(f"{API}/anomalies/{mine}", headers=staff).status_code == 404


def test_a_provider_never_sees_who_the_flag_names_nor_recipients_in_its_evidence(build, client, scene):
    served = deliver(build, scene, scene.p1, scene.alice, [6])
    staff_login = build.user(role="provider", provider_id=scene.p1.id)
    evidence = {"kind": "login", "at": "2026-03-06 10:00", "pairs": 1, "count": 2,
                "recipient_ids": [scene.alice.id, scene.bob.id],
                "redemptions": [{"id": served[0].id, "recipient_id": scene.alice.id, "delivered_at": "10:00"}],
                "name": "王秀兰", "windows": [["10:00", "10:45"]]}
    flag = plant(build, scene, scene.p1, served, rule="overlapping_service", status="confirmed",
                 subject=f"login:{staff_login.id}", evidence=evidence, recipient=scene.alice,
                 staff_user_id=staff_login.id)

    seen = client.get(f"{API}/anomalies/{flag}", headers=build.headers(scene.p1.user)).get_json()
    [listed_item] = listed(client, build, by=scene.p1.user)["items"]

    for item in (seen, listed_item):
        assert item["recipient_id"] is None
        assert item["staff_user_id"] is None
        assert item["evidence"] == {"kind": "login", "at": "2026-03-06 10:00", "pairs": 1, "count": 2,
                                    "redemptions": [{"id": served[0].id, "delivered_at": "10:00"}],
                                    "windows": [["10:00", "10:45"]]}
        assert item["redemption_ids"] == [served[0].id]
        assert "2026-03-06 10:00" in item["explanation"]
    admin_view = client.get(f"{API}/anomalies/{flag}", headers=build.headers(scene.admin)).get_json()
    assert (admin_view["recipient_id"], admin_view["staff_user_id"]) == (scene.alice.id, staff_login.id)
    assert admin_view["evidence"] == evidence


def test_provider_evidence_drops_recipient_keys_at_any_depth():
    evidence = {"count": 3, "Recipient_ID": 1, "pairs": [{"recipients": [1, 2], "ids": [4, 5]}],
                "nested": {"deep": [{"recipient_name": "x", "phone": "139", "at": "t"}]}}
    assert anomalies.provider_evidence(evidence) == {
        "count": 3, "pairs": [{"ids": [4, 5]}], "nested": {"deep": [{"at": "t"}]}}


def test_an_auditor_reads_every_flag_but_decides_none(build, client, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]))
    headers = build.headers(scene.auditor)
    assert listed(client, build, by=scene.auditor)["total"] == 1
    assert client.get(f"{API}/anomalies/{flag}", headers=headers).status_code == 200
    for verb in ("confirm", "dismiss"):
        response = decide(client, build, flag, verb, by=scene.auditor)
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    assert build.read(lambda: db.session.get(AnomalyFlag, flag)).status == "open"


def test_providers_decide_nothing_recipients_and_strangers_see_nothing(build, client, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]), status="confirmed")
    recipient = build.user(role="recipient", recipient_id=scene.alice.id)
    assert decide(client, build, flag, "dismiss", by=scene.p1.user).status_code == 403
    for path in ("/anomalies", f"/anomalies/{flag}"):
        assert client.get(API + path, headers=build.headers(recipient)).status_code == 403
        anonymous = client.get(API + path)
        assert anonymous.status_code == 401
        assert error_code(anonymous) == "unauthenticated"
    for verb in ("confirm", "dismiss"):
        assert decide(client, build, flag, verb, by=recipient).status_code == 403
        assert client.post(f"{API}/anomalies/{flag}/{verb}", json={"reason": "核实"}).status_code == 401
    assert build.read(lambda: db.session.get(AnomalyFlag, flag)).status == "confirmed"


def test_an_admin_of_another_region_neither_sees_nor_decides_the_programmes_flags(build, client, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]))
    outsider = build.admin(region_code="440300")

    assert listed(client, build, by=outsider) == {"items": [], "page": 1, "per_page": 50, "total": 0}
    assert client.get(f"{API}/anomalies/{flag}", headers=build.headers(outsider)).status_code == 403
    for verb in ("confirm", "dismiss"):
        response = decide(client, build, flag, verb, by=outsider)
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    assert build.read(lambda: db.session.get(AnomalyFlag, flag)).status == "open"

    insider = build.admin(region_code="510131")
    assert listed(client, build, by=insider)["total"] == 1
    assert decided(client, build, flag, "confirm", by=insider)["status"] == "confirmed"


# --- two admins at once -----------------------------------------------------------------------------------

RACERS = 6


def _race_decisions(app, build, flag_id: int, verbs: list[str], admins: list[int]) -> list[str]:
    def work(index):
        decision = anomalies.confirm if verbs[index] == "confirm" else anomalies.dismiss
        decision(flag=db.session.get(AnomalyFlag, flag_id), reason=f"第 {index} 位管理员的决定",
                 actor=db.session.get(User, admins[index % len(admins)]), now=utcnow())

    return race_transactions(app, work, racers=len(verbs))


def _decision_events(build, flag_id: int) -> list[str]:
    return build.read(lambda: db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.entity == "anomaly_flag", AuditEvent.entity_id == str(flag_id))
        .order_by(AuditEvent.id)).all())


def test_admins_racing_to_confirm_confirm_it_once(app, build, scene):
    flag = plant(build, scene, scene.p1, deliver(build, scene, scene.p1, scene.alice, [6]))

    outcomes = _race_decisions(app, build, flag, ["confirm"] * RACERS, [scene.admin.id, scene.other_admin.id])

    assert sorted(outcomes) == ["InvalidTransition"] * (RACERS - 1) + ["ok"]
    assert _decision_events(build, flag) == ["anomaly.confirmed"]
    row = build.read(lambda: db.session.get(AnomalyFlag, flag))
    assert row.status == "confirmed"
    assert row.reason == f"第 {outcomes.index('ok')} 位管理员的决定"


def test_confirm_racing_dismiss_leaves_one_true_chain_of_decisions(app, build, scene):
    for _round in range(3):
        flag = plant(build, scene, scene.p1, [], subject=f"provider:{scene.p1.id}:{_round}")

        outcomes = _race_decisions(app, build, flag, ["confirm", "dismiss"] * (RACERS // 2),
                                   [scene.admin.id, scene.other_admin.id])

        # The first decision from open wins; a decision that read its result after it committed may follow
        # (confirmed → dismissed, or dismissed → confirmed), and so on: each event follows the one before.
        assert set(outcomes) <= {"ok", "InvalidTransition"}
        events = _decision_events(build, flag)
        assert len(events) == outcomes.count("ok") >= 1
        assert all(first != second for first, second in zip(events, events[1:], strict=False))
        final = build.read(lambda f=flag: db.session.get(AnomalyFlag, f).status)
        assert events[-1] == f"anomaly.{final}"


def test_a_flag_decided_in_a_race_still_holds_exactly_by_its_final_state(app, build, client, scene):
    held, free = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    flag = plant(build, scene, scene.p1, [held])
    _race_decisions(app, build, flag, ["confirm"] * RACERS, [scene.admin.id])

    first = drafted(client, build, scene, build.period(-1))

    assert settled_ids(build, first[scene.p1.id]["id"]) == {free.id}
    assert build.count(Settlement) == 1
