"""Detection (vouchers/service/anomaly_detection.py): every rule over a programme's month, its findings kept as
open flags with their redemptions, once; from the API (`POST /programmes/{id}/anomalies/detect`), the CLI
(`flask detect-anomalies`) and by itself before every settlement draft. Both databases.
"""

import json
from datetime import timedelta

from sqlalchemy import select, update

from marketplace.audit.models import AuditEvent
from marketplace.auth.models import User
from marketplace.db import db
from marketplace.programmes.integrity import RULES
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from tests.conftest import error_code
from tests.test_anomaly_rules import day, market, serve
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption, Redemption, Settlement
from vouchers.service.anomaly_detection import detect_anomalies

API = "/api/v1"


def planted(build):
    """Last month: alice served by p1 and p2 at once (the pair), p1's login serving bob meanwhile (with alice's
    meal, a second overlapping pair), and alice served by p1 once more after her recorded death; bob's meal
    at p2 is fine."""
    world = market(build)
    alice, bob = world.recipients
    pair = [serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=30),
            serve(build, world.p2, alice, world.bath, day(build, 3, 10, 20), minutes=30)]
    crossing = serve(build, world.p1, bob, world.bath, day(build, 3, 10, 10), minutes=30)
    after_death = serve(build, world.p1, alice, world.meal, day(build, 12, 9, 0), minutes=30)
    fine = [crossing, serve(build, world.p2, bob, world.meal, day(build, 14, 9, 0), minutes=30)]
    build.set_recipient_status(alice, "deceased")
    exit_day = build.first_day(-1) + timedelta(days=10)
    build.run(lambda: db.session.execute(update(Recipient).where(Recipient.id == alice.id)
                                         .values(status_effective_on=exit_day)))
    return world, pair, after_death, fine


def detect(build, world, *, period=None, progress=None):
    admin_id = build.system_admin.id
    return build.run(lambda: detect_anomalies(programme=db.session.get(Programme, world.programme),
                                              period=period or world.period, actor=db.session.get(User, admin_id),
                                              now=build.now(), progress=progress))


def flags(build) -> dict[str, dict]:
    """Every flag by "rule subject", with its linked redemptions."""
    def read():
        links = {}
        for flag_id, redemption_id in db.session.execute(select(AnomalyFlagRedemption.flag_id,
                                                                AnomalyFlagRedemption.redemption_id)):
            links.setdefault(flag_id, set()).add(redemption_id)
        return {f"{flag.rule} {flag.subject}": {"id": flag.id, "status": flag.status, "severity": flag.severity,
                                                "period": flag.period, "provider_id": flag.provider_id,
                                                "recipient_id": flag.recipient_id, "evidence": flag.evidence,
                                                "redemptions": links.get(flag.id, set())}
                for flag in db.session.scalars(select(AnomalyFlag))}

    return build.read(read)


def detected_events(build) -> list[dict]:
    return build.read(lambda: [{"entity_id": event.entity_id, "data": json.loads(event.data)}
                               for event in db.session.scalars(select(AuditEvent).where(
                                   AuditEvent.action == "anomalies.detected").order_by(AuditEvent.id))])


# --- the service --------------------------------------------------------------------------------------

def test_detection_keeps_each_finding_as_an_open_flag_with_its_redemptions(build):
    world, pair, after_death, _fine = planted(build)
    alice = world.recipients[0]

    result = detect(build, world)

    kept = flags(build)
    assert sorted(kept) == sorted([f"overlapping_service recipient:{alice.id}",
                                   f"overlapping_service login:{world.p1.user.id}",
                                   f"served_after_exit recipient:{alice.id}:provider:{world.p1.id}"])
    overlap = kept[f"overlapping_service recipient:{alice.id}"]
    assert overlap["status"] == "open"
    assert overlap["severity"] == "high"
    assert overlap["period"] == world.period
    assert overlap["recipient_id"] == alice.id
    assert overlap["redemptions"] == {r.id for r in pair}
    assert overlap["evidence"]["pairs"] == 1
    exit_flag = kept[f"served_after_exit recipient:{alice.id}:provider:{world.p1.id}"]
    assert exit_flag["redemptions"] == {after_death.id}
    assert exit_flag["provider_id"] == world.p1.id
    assert result.period == world.period
    assert result.flags_created == result.flags_total == 3
    assert result.by_rule == dict.fromkeys(RULES, 0) | {"overlapping_service": 2, "served_after_exit": 1}


def test_detecting_twice_creates_nothing_new(build):
    world, *_ = planted(build)
    detect(build, world)
    before = flags(build)

    again = detect(build, world)

    assert again.flags_created == 0
    assert again.flags_total == 3
    assert flags(build) == before
    assert [event["data"]["flags_created"] for event in detected_events(build)] == [3, 0]


def test_a_decided_flag_is_neither_made_again_nor_widened(build):
    world = market(build)
    alice = world.recipients[0]
    pair = [serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=30),
            serve(build, world.p2, alice, world.bath, day(build, 3, 10, 20), minutes=30)]
    detect(build, world)
    key = f"overlapping_service recipient:{alice.id}"
    flag_id = flags(build)[key]["id"]
    build.run(lambda: db.session.execute(update(AnomalyFlag).where(AnomalyFlag.id == flag_id)
                                         .values(status="dismissed", reason="两家机构确认时间记错了")))
    # A third overlapping service of alice's, found after the dismissal.
    serve(build, world.p2, alice, world.bath, day(build, 3, 9, 50), minutes=30)

    result = detect(build, world)

    assert result.flags_created == 0
    assert flags(build)[key]["status"] == "dismissed"
    assert flags(build)[key]["redemptions"] == {r.id for r in pair}


def test_detection_reports_progress_rule_by_rule_and_is_audited_once(build):
    world, *_ = planted(build)
    told = []

    result = detect(build, world, progress=lambda rule, found: told.append((rule, found)))

    assert [rule for rule, _found in told] == list(RULES)
    assert dict(told)["overlapping_service"] == 2
    events = detected_events(build)
    assert len(events) == 1
    assert events[0]["entity_id"] == str(world.programme)
    assert events[0]["data"] == {"period": world.period, "flags_created": 3, "flags_total": 3,
                                 "by_rule": result.by_rule}


def test_flags_are_kept_per_programme_and_period(build):
    world, *_ = planted(build)
    detect(build, world)

    result = detect(build, world, period=build.period(0))

    assert result.flags_created == 0
    assert result.flags_total == 0  # this month has none; last month's are not counted


# --- before every settlement draft ---------------------------------------------------------------------

def test_a_settlement_draft_detects_first_and_open_flags_hold_nothing(build):
    world, pair, after_death, fine = planted(build)

    drafted = build.settle(world.programme, world.period)

    assert len(flags(build)) == 3  # detected on the way
    settled = {r.id for r in build.redemptions(Redemption.settlement_id.in_(drafted))}
    assert settled == {pair[0].id, pair[1].id, after_death.id} | {r.id for r in fine}


def test_a_settlement_run_with_nothing_to_draft_detects_nothing(build):
    world, *_ = planted(build)
    build.settle(world.programme, world.period)
    build.run(lambda: db.session.execute(AnomalyFlag.__table__.delete()))
    events = len(detected_events(build))

    assert build.settle(world.programme, world.period) == []  # everyone is settled for the month

    assert flags(build) == {}
    assert len(detected_events(build)) == events


def test_a_confirmed_flag_holds_its_redemptions_out_of_the_next_draft(build):
    world, pair, after_death, fine = planted(build)
    alice = world.recipients[0]
    detect(build, world)
    flag_id = flags(build)[f"served_after_exit recipient:{alice.id}:provider:{world.p1.id}"]["id"]
    build.run(lambda: db.session.execute(update(AnomalyFlag).where(AnomalyFlag.id == flag_id)
                                         .values(status="confirmed", reason="老人去世后不可能再接受服务")))

    drafted = build.settle(world.programme, world.period)

    settled = {r.id for r in build.redemptions(Redemption.settlement_id.in_(drafted))}
    assert settled == {pair[0].id, pair[1].id} | {r.id for r in fine}
    assert build.redemption(after_death.id).settlement_id is None


# --- the API -------------------------------------------------------------------------------------------

def test_an_admin_in_scope_detects_through_the_api(build, client):
    world, *_ = planted(build)
    admin = build.admin(region_code="510131")

    response = client.post(f"{API}/programmes/{world.programme}/anomalies/detect", json={"period": world.period},
                           headers=build.headers(admin))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body == {"period": world.period, "flags_created": 3, "flags_total": 3,
                    "by_rule": dict.fromkeys(RULES, 0) | {"overlapping_service": 2, "served_after_exit": 1}}
    again = client.post(f"{API}/programmes/{world.programme}/anomalies/detect", json={"period": world.period},
                        headers=build.headers(admin))
    assert again.get_json()["flags_created"] == 0
    assert detected_events(build)[0]["data"]["flags_created"] == 3


def test_only_admins_in_scope_may_detect(build, client):
    world = market(build)
    url = f"{API}/programmes/{world.programme}/anomalies/detect"
    body = {"period": world.period}

    assert client.post(url, json=body, headers=build.headers(build.admin(region_code="510132"))).status_code == 403
    for user in (build.auditor(), world.p1.user, world.recipients[0].user):
        response = client.post(url, json=body, headers=build.headers(user))
        assert response.status_code == 403, user.role
    assert client.post(url, json=body).status_code == 401
    assert flags(build) == {}
    assert detected_events(build) == []


def test_detect_refuses_a_bad_period_and_an_unknown_programme(build, client):
    world = market(build)
    admin = build.admin()

    bad = client.post(f"{API}/programmes/{world.programme}/anomalies/detect", json={"period": "2026-13"},
                      headers=build.headers(admin))
    unknown = client.post(f"{API}/programmes/999999/anomalies/detect", json={"period": world.period},
                          headers=build.headers(admin))

    assert bad.status_code == 422
    assert "period" in bad.get_json()["error"]["details"]["fields"]
    assert unknown.status_code == 404
    assert error_code(unknown) == "not_found"


# --- the command ---------------------------------------------------------------------------------------

def test_the_command_shows_each_rule_as_it_goes_and_the_totals(build, runner):
    world, *_ = planted(build)

    result = runner.invoke(args=["detect-anomalies", str(world.programme), world.period])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()  # the command's own log lines go to stderr
    for rule in RULES:
        assert any(line.strip().startswith(f"{rule}:") for line in lines), rule
    assert "  overlapping_service: 2 found" in lines
    assert lines[-1] == f"3 new flags; 3 flags for {world.period} in all"
    again = runner.invoke(args=["detect-anomalies", str(world.programme), world.period])
    assert again.stdout.splitlines()[-1] == f"0 new flags; 3 flags for {world.period} in all"


def test_the_command_fails_in_one_line_for_an_unknown_programme_or_a_bad_period(build, runner):
    world = market(build)

    unknown = runner.invoke(args=["detect-anomalies", "999999", world.period])
    bad = runner.invoke(args=["detect-anomalies", str(world.programme), "2026-13"])

    # The reason is one line (the command's log lines, on stderr too, carry no "Error:").
    assert unknown.exit_code != 0
    assert [line for line in unknown.output.splitlines() if line.startswith("Error:")] == [
        "Error: No programme 999999."]
    assert bad.exit_code != 0
    said = [line for line in bad.output.splitlines() if line.startswith("Error:")]
    assert len(said) == 1
    assert "period: A month as YYYY-MM" in said[0]
    assert flags(build) == {}
    assert build.count(Settlement) == 0
