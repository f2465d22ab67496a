"""The market-integrity rules (vouchers/service/anomaly_rules.py; DESIGN.md "Market integrity"), each one on
data built for it: it fires just past its threshold and stays quiet just below it. The rules' queries are
called directly (what they find, not the flags kept: tests/test_anomaly_detection.py). Both databases.

The world: last month, an active programme buying meals and baths; providers p1, p2, … each with their staff
login; recipients served through the services (presence codes), then the facts a rule looks at (durations,
how presence was proven, capacity, exit dates) set directly where no API exists for them yet.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db
from marketplace.programmes.integrity import EXPLANATIONS, RULES, explain
from marketplace.programmes.models import Programme, ProgrammeItem
from marketplace.recipients.models import Recipient
from providers.models import Provider
from tests.support.scenario import ProviderRef, RecipientRef, RedemptionRef
from vouchers.models import Redemption
from vouchers.service import anomaly_rules
from vouchers.service.anomaly_rules import Month, robust_z


@dataclass
class Market:
    programme: int
    meal: str
    bath: str
    providers: list[ProviderRef]
    recipients: list[RecipientRef]
    period: str

    @property
    def p1(self) -> ProviderRef:
        return self.providers[0]

    @property
    def p2(self) -> ProviderRef:
        return self.providers[1]


def market(build, *, providers: int = 2, recipients: int = 2) -> Market:
    """Last month's vouchers issued; recipient i chose provider i (mod the providers) for meals and provider
    i + 1 for baths."""
    meal, bath = build.item(name="助餐"), build.item(name="助浴")
    programme = build.programme(items=[meal, bath]).id
    cast = [build.provider(items=[meal, bath], enrol_in=[programme]) for _ in range(providers)]
    people = [build.recipient(login=True) for _ in range(recipients)]
    build.issue(programme, build.period(-1))
    for index, person in enumerate(people):
        build.choose(person, programme, meal, cast[index % providers])
        build.choose(person, programme, bath, cast[(index + 1) % providers])
    return Market(programme=programme, meal=meal, bath=bath, providers=cast, recipients=people,
                  period=build.period(-1))


def serve(build, provider, recipient, item, at: datetime, *, minutes: int | None = 45,
          presence: str = "presence_code") -> RedemptionRef:
    """*provider*'s login serves *recipient* with *item*, delivered at *at*, recorded as taking *minutes*."""
    served = build.redeem(provider, recipient, item, delivered_at=at)
    if minutes != 45 or presence != "presence_code":
        build.run(lambda: db.session.execute(update(Redemption).where(Redemption.id == served.id)
                                             .values(duration_minutes=minutes, presence=presence)))
    return served


def day(build, number: int, hour: int = 10, minute: int = 0) -> datetime:
    """*hour*:*minute* local time on day *number* of last month."""
    return build.in_month(-1, number, hour, minute)


def parameters(build, programme: int, rule: str, **values) -> None:
    def change():
        row = db.session.get(Programme, programme)
        row.anomaly_parameters = {**(row.anomaly_parameters or {}), rule: values}

    build.run(change)


def find(build, world: Market, rule: str) -> list[anomaly_rules.Finding]:
    """What *rule* finds in the world's programme last month, by subject."""
    def query():
        month = Month.of(db.session.get(Programme, world.programme), world.period)
        return sorted(anomaly_rules.QUERIES[rule](month), key=lambda finding: finding.subject)

    return build.read(query)


def subjects(findings) -> list[str]:
    return [finding.subject for finding in findings]


def explained(build, finding) -> str:
    with build.app.test_request_context(headers={"Accept-Language": "en"}):
        return explain(finding.rule, finding.evidence)


def test_every_rule_of_the_table_has_its_query_and_explanations_for_its_kinds():
    assert list(anomaly_rules.QUERIES) == list(RULES)
    assert {rule for rule, _kind in EXPLANATIONS} == set(RULES)


# --- overlapping_service ----------------------------------------------------------------------------

def test_a_recipient_served_by_two_providers_at_once_is_found_and_touching_windows_are_not(build):
    world = market(build)
    alice, bob = world.recipients  # alice: meals from p1, baths from p2; bob: meals from p2, baths from p1
    # alice: a meal 09:30–10:00 at p1, a bath 09:59–10:29 at p2: one minute together.
    meal = serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=30)
    bath = serve(build, world.p2, alice, world.bath, day(build, 3, 10, 29), minutes=30)
    # bob: a meal 09:30–10:00 at p2, a bath 10:00–10:30 at p1: one after the other.
    serve(build, world.p2, bob, world.meal, day(build, 5, 10, 0), minutes=30)
    serve(build, world.p1, bob, world.bath, day(build, 5, 10, 30), minutes=30)

    found = [f for f in find(build, world, "overlapping_service") if f.evidence["kind"] == "recipient"]

    assert subjects(found) == [f"recipient:{alice.id}"]
    finding = found[0]
    assert finding.recipient_id == alice.id
    assert finding.provider_id is None  # two providers: the finding is about the recipient
    assert sorted(finding.redemption_ids) == sorted([meal.id, bath.id])
    assert finding.evidence["pairs"] == 1
    assert finding.evidence["count"] == 2
    assert finding.evidence["provider_ids"] == sorted([world.p1.id, world.p2.id])
    assert finding.evidence["at"] == day(build, 3, 10, 0).astimezone(build.zone()).strftime("%m-%d %H:%M")
    assert finding.severity == "high"
    assert "two providers at the same time" in explained(build, finding)


def test_grace_minutes_forgive_an_overlap_no_longer_than_them(build):
    world = market(build)
    alice = world.recipients[0]
    serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=30)
    serve(build, world.p2, alice, world.bath, day(build, 3, 10, 28), minutes=30)  # two minutes together

    parameters(build, world.programme, "overlapping_service", grace_minutes=2)
    assert [f for f in find(build, world, "overlapping_service") if f.evidence["kind"] == "recipient"] == []
    parameters(build, world.programme, "overlapping_service", grace_minutes=1)
    assert len([f for f in find(build, world, "overlapping_service") if f.evidence["kind"] == "recipient"]) == 1


def test_a_window_without_a_recorded_duration_is_the_items_default_then_the_fallback(build):
    world = market(build)
    alice, bob = world.recipients
    build.run(lambda: db.session.execute(update(ServiceItem).where(ServiceItem.code == world.meal)
                                         .values(default_duration_minutes=60)))
    # alice: a meal at 10:00 with no duration (the meal's default, 60: 09:00–10:00), a bath at p2 09:00–09:30
    # recorded at 09:31 with 30 minutes: they overlap only through the default.
    serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=None)
    serve(build, world.p2, alice, world.bath, day(build, 3, 9, 31), minutes=30)
    # bob: a bath at 10:00 with no duration (baths have no default: 30 minutes, 09:30–10:00), a meal at p2
    # 09:00–09:30: touching, not overlapping; at 09:31 it would.
    serve(build, world.p1, bob, world.bath, day(build, 5, 10, 0), minutes=None)
    serve(build, world.p2, bob, world.meal, day(build, 5, 9, 30), minutes=30)

    found = [f for f in find(build, world, "overlapping_service") if f.evidence["kind"] == "recipient"]

    assert subjects(found) == [f"recipient:{alice.id}"]


def test_one_login_serving_two_recipients_at_once_is_found_and_one_after_the_other_is_not(build):
    world = market(build)
    alice, bob = world.recipients
    # p1's login: alice's meal 09:30–10:00 and bob's bath 09:59–10:29.
    first = serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=30)
    second = serve(build, world.p1, bob, world.bath, day(build, 3, 10, 29), minutes=30)
    # p2's login: bob's meal 09:30–10:00 and alice's bath 10:00–10:30.
    serve(build, world.p2, bob, world.meal, day(build, 5, 10, 0), minutes=30)
    serve(build, world.p2, alice, world.bath, day(build, 5, 10, 30), minutes=30)
    # One login serving one recipient twice at once is not this rule's business.
    serve(build, world.p1, alice, world.meal, day(build, 7, 10, 0), minutes=30)
    serve(build, world.p1, alice, world.meal, day(build, 7, 10, 10), minutes=30)

    found = [f for f in find(build, world, "overlapping_service") if f.evidence["kind"] == "login"]

    assert subjects(found) == [f"login:{world.p1.user.id}"]
    assert found[0].staff_user_id == world.p1.user.id
    assert found[0].provider_id == world.p1.id
    assert sorted(found[0].redemption_ids) == sorted([first.id, second.id])
    assert "one staff login served two recipients" in explained(build, found[0])


# --- served_after_exit ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["deceased", "moved"])
def test_a_service_on_a_local_date_after_the_recorded_exit_is_found_and_one_that_day_is_not(build, status):
    world = market(build)
    alice, bob = world.recipients
    # 23:59 and 00:01 local are the same UTC date (Asia/Shanghai is UTC+8): the local date decides.
    that_day = serve(build, world.p1, alice, world.meal, day(build, 10, 23, 59))
    after = serve(build, world.p1, alice, world.meal, day(build, 11, 0, 1))
    later = serve(build, world.p2, alice, world.bath, day(build, 20, 9, 0))
    serve(build, world.p2, bob, world.meal, day(build, 20, 9, 0))  # bob is alive and at home
    build.set_recipient_status(alice, status)
    exit_day = build.first_day(-1) + timedelta(days=9)
    build.run(lambda: db.session.execute(update(Recipient).where(Recipient.id == alice.id)
                                         .values(status_effective_on=exit_day)))

    found = find(build, world, "served_after_exit")

    assert subjects(found) == sorted([f"recipient:{alice.id}:provider:{world.p1.id}",
                                      f"recipient:{alice.id}:provider:{world.p2.id}"])
    by_provider = {finding.provider_id: finding for finding in found}
    assert by_provider[world.p1.id].redemption_ids == [after.id]
    assert by_provider[world.p2.id].redemption_ids == [later.id]
    assert that_day.id not in {rid for finding in found for rid in finding.redemption_ids}
    evidence = by_provider[world.p1.id].evidence
    assert evidence["kind"] == status
    assert evidence["effective_on"] == exit_day.isoformat()
    assert evidence["count"] == 1
    assert evidence["last_at"] == day(build, 11, 0, 1).astimezone(build.zone()).strftime("%m-%d %H:%M")
    assert by_provider[world.p1.id].recipient_id == alice.id
    assert str(exit_day) in explained(build, by_provider[world.p1.id])


def test_an_exit_without_a_recorded_date_finds_nothing(build):
    world = market(build)
    alice = world.recipients[0]
    serve(build, world.p1, alice, world.meal, day(build, 11))
    build.set_recipient_status(alice, "deceased")  # older records: no effective date

    assert find(build, world, "served_after_exit") == []


# --- staff_velocity ---------------------------------------------------------------------------------

def test_a_login_whose_hour_needs_more_minutes_than_it_has_is_found_and_one_that_fills_it_is_not(build):
    world = market(build)
    alice, bob = world.recipients
    # p1's login: three meals for alice from 10:00, 21 minutes each: 63 minutes in the hour.
    fast = [serve(build, world.p1, alice, world.meal, day(build, 3, 10, minute), minutes=21) for minute in (0, 20, 40)]
    # p2's login: four meals for bob 20 minutes apart, 20 minutes each: every hour holds exactly 60 (11:00
    # starts the next hour, not this one).
    for minute in (0, 20, 40, 60):
        serve(build, world.p2, bob, world.meal, day(build, 3, 10) + timedelta(minutes=minute), minutes=20)
    # p1's login on another day: two long services, 80 minutes in an hour, but fewer than min_services.
    serve(build, world.p1, alice, world.meal, day(build, 6, 10, 0), minutes=40)
    serve(build, world.p1, alice, world.meal, day(build, 6, 10, 30), minutes=40)

    found = find(build, world, "staff_velocity")

    assert subjects(found) == [f"login:{world.p1.user.id}"]
    finding = found[0]
    assert sorted(finding.redemption_ids) == sorted(r.id for r in fast)
    assert finding.staff_user_id == world.p1.user.id
    assert finding.provider_id == world.p1.id
    assert finding.evidence["count"] == 3
    assert finding.evidence["minutes"] == 63
    assert finding.evidence["minutes_per_hour"] == 60
    assert finding.evidence["hour_start"] == day(build, 3, 10, 0).astimezone(build.zone()).strftime("%m-%d %H:%M")
    assert "63 minutes" in explained(build, finding)


def test_min_services_of_staff_velocity_is_the_programmes_to_set(build):
    world = market(build)
    alice = world.recipients[0]
    serve(build, world.p1, alice, world.meal, day(build, 6, 10, 0), minutes=40)
    serve(build, world.p1, alice, world.meal, day(build, 6, 10, 30), minutes=40)

    assert find(build, world, "staff_velocity") == []
    parameters(build, world.programme, "staff_velocity", min_services=2)
    assert subjects(find(build, world, "staff_velocity")) == [f"login:{world.p1.user.id}"]


# --- over_capacity ----------------------------------------------------------------------------------

def test_services_above_the_declared_capacity_are_found_and_the_excess_is_held(build):
    world = market(build)
    alice, bob = world.recipients
    for provider in world.providers:
        build.run(lambda provider=provider: db.session.execute(
            update(Provider).where(Provider.id == provider.id).values(capacity=3)))
    p1_services = [serve(build, world.p1, alice, world.meal, day(build, number)) for number in (2, 4, 6, 8)]
    for number in (2, 4, 6):
        serve(build, world.p2, bob, world.meal, day(build, number))  # exactly its capacity

    found = find(build, world, "over_capacity")

    assert subjects(found) == [f"provider:{world.p1.id}"]
    finding = found[0]
    assert finding.redemption_ids == [p1_services[-1].id]  # the fourth, in delivery order
    assert finding.evidence | {"redemptions": None} == {
        "count": 4, "capacity": 3, "tolerance_percent": 0, "allowed": 3, "excess": 1, "redemptions": None}
    assert "more than the provider's declared monthly capacity of 3" in explained(build, finding)

    parameters(build, world.programme, "over_capacity", tolerance_percent=34)  # 3 × 1.34 = 4.02: 4 allowed
    assert find(build, world, "over_capacity") == []
    parameters(build, world.programme, "over_capacity", tolerance_percent=33)  # 3.99: 3 allowed
    assert subjects(find(build, world, "over_capacity")) == [f"provider:{world.p1.id}"]


# --- month_end_burst --------------------------------------------------------------------------------

def test_robust_z_scales_by_mad_then_by_mean_absolute_deviation_and_gives_up_without_spread():
    assert robust_z(0.5, [0.1, 0.1, 0.2, 0.2]) == pytest.approx((0.5 - 0.15) / (1.4826 * 0.05))
    # More than half the others equal: MAD is 0, the mean absolute deviation (0.05) takes its place.
    assert robust_z(0.5, [0.1, 0.1, 0.1, 0.3]) == pytest.approx((0.5 - 0.1) / (1.2533 * 0.05))
    assert robust_z(0.5, [0.1, 0.1, 0.1]) is None
    assert robust_z(0.5, []) is None


def test_a_month_ending_in_a_burst_far_above_the_others_is_found_and_one_just_below_is_not(build):
    # Five providers with ten services each; the others deliver 1, 1, 2 and 2 of theirs in the month's last
    # three days (median 15 %, MAD 5 points): p1's share is judged against them, z = (x − 0.15) / 0.0741.
    world = market(build, providers=5, recipients=5)
    build.run(lambda: db.session.execute(update(Programme).where(Programme.id == world.programme).values(
        anomaly_parameters={"month_end_burst": {"min_services": 10}})))
    last = (build.last_day(-1) - build.first_day(-1)).days + 1
    bursts = {0: 5, 1: 1, 2: 1, 3: 2, 4: 2}
    served = {}
    for index, provider in enumerate(world.providers):
        days = [1 + n for n in range(10 - bursts[index])] + [last - n % 3 for n in range(bursts[index])]
        served[index] = [serve(build, provider, world.recipients[index], world.meal, day(build, number))
                         for number in days]

    found = find(build, world, "month_end_burst")  # p1: 50 %, z = 4.7

    assert subjects(found) == [f"provider:{world.p1.id}"]
    finding = found[0]
    assert sorted(finding.redemption_ids) == sorted(r.id for r in served[0][-5:])
    assert finding.evidence | {"redemptions": None} == {
        "last_days": 3, "share_percent": 50, "median_percent": 15, "z": 4.7, "z_threshold": 3.5, "count": 10,
        "burst_count": 5, "providers_compared": 4, "redemptions": None}
    assert "robust z-score 4.7" in explained(build, finding)

    # One of p1's burst services a day earlier: 40 %, z = 3.4, just below the threshold.
    moved = served[0][-1]
    build.run(lambda: db.session.execute(update(Redemption).where(Redemption.id == moved.id).values(
        delivered_at=day(build, last - 3))))
    assert find(build, world, "month_end_burst") == []


# --- typed_code_share -------------------------------------------------------------------------------

def test_a_provider_proving_presence_by_typed_codes_too_often_is_found_and_one_at_the_threshold_is_not(build):
    world = market(build, providers=3, recipients=3)
    parameters(build, world.programme, "typed_code_share", min_services=10)
    presences = {0: ["typed_code"] * 3 + ["voucher_card"] + ["presence_code"] * 6,  # 40 %
                 1: ["typed_code"] * 3 + ["presence_code"] * 7,  # 30 %: not above 30
                 2: ["typed_code"] * 9}  # 100 %, but nine services: too few to judge
    served = {}
    for index, presence in presences.items():
        served[index] = [serve(build, world.providers[index], world.recipients[index], world.meal,
                               day(build, 1 + number), presence=kind) for number, kind in enumerate(presence)]

    found = find(build, world, "typed_code_share")

    assert subjects(found) == [f"provider:{world.p1.id}"]
    finding = found[0]
    assert sorted(finding.redemption_ids) == sorted(r.id for r in served[0][:4])
    assert finding.evidence | {"redemptions": None} == {
        "share_percent": 40, "count": 10, "typed": 4, "voucher_card": 1, "max_share_percent": 30,
        "redemptions": None}
    assert "40% of the services (4 of 10)" in explained(build, finding)


def test_a_typed_short_code_counts_as_typed(build):
    world = market(build)
    parameters(build, world.programme, "typed_code_share", min_services=2, max_share_percent=49)
    alice = world.recipients[0]
    build.redeem(world.p1, alice, world.meal, delivered_at=day(build, 3), typed=True)
    build.redeem(world.p1, alice, world.meal, delivered_at=day(build, 4))

    assert subjects(find(build, world, "typed_code_share")) == [f"provider:{world.p1.id}"]


# --- short_duration ---------------------------------------------------------------------------------

def test_services_shorter_than_the_items_minimum_are_found_per_provider_and_item(build):
    world = market(build)
    alice, bob = world.recipients
    build.run(lambda: db.session.execute(update(ProgrammeItem).where(
        ProgrammeItem.programme_id == world.programme, ProgrammeItem.item_code == world.meal)
        .values(min_duration_minutes=20)))
    short = [serve(build, world.p1, alice, world.meal, day(build, number), minutes=minutes)
             for number, minutes in ((2, 19), (3, 5))]
    serve(build, world.p1, alice, world.meal, day(build, 4), minutes=20)  # at the minimum
    serve(build, world.p1, alice, world.meal, day(build, 5), minutes=None)  # not recorded: not judged
    serve(build, world.p1, bob, world.bath, day(build, 6), minutes=1)  # baths have no minimum
    serve(build, world.p2, bob, world.meal, day(build, 7), minutes=20)

    found = find(build, world, "short_duration")

    assert subjects(found) == [f"provider:{world.p1.id}:{world.meal}"]
    finding = found[0]
    assert sorted(finding.redemption_ids) == sorted(r.id for r in short)
    assert finding.evidence | {"redemptions": None} == {
        "item_code": world.meal, "count": 2, "min_minutes": 20, "shortest": 5, "redemptions": None}
    assert "plausible minimum of 20 minutes; the shortest took 5 minutes" in explained(build, finding)


# --- rating_pattern ---------------------------------------------------------------------------------

def test_most_ratings_by_one_admins_phone_follow_ups_are_found_and_half_of_them_is_not(build):
    world = market(build, providers=3, recipients=3)
    caller, other = build.admin(), build.admin()
    # p1: 10 ratings, 6 by the caller's phone follow-ups (60 %); p2: 10, 5 by the caller (50 %, not above);
    # p3: 9, all by the caller (fewer than min_ratings).
    plan = {0: [caller] * 6 + [other] * 2 + [None] * 2, 1: [caller] * 5 + [None] * 5, 2: [caller] * 9}
    rated = {}
    for index, raters in plan.items():
        recipient = world.recipients[index]
        rated[index] = []
        for number, rater in enumerate(raters):
            served = serve(build, world.providers[index], recipient, world.meal, day(build, 1 + number))
            build.rate(served, 4, by=rater or recipient.user)
            rated[index].append((served, rater))

    found = find(build, world, "rating_pattern")

    assert subjects(found) == [f"provider:{world.p1.id}:phone"]
    finding = found[0]
    assert sorted(finding.redemption_ids) == sorted(served.id for served, rater in rated[0] if rater == caller)
    assert finding.staff_user_id == caller.id
    assert finding.evidence["kind"] == "phone"
    assert (finding.evidence["share_percent"], finding.evidence["ratings"], finding.evidence["phone"]) == (60, 10, 6)
    assert "60% of the ratings (6 of 10)" in explained(build, finding)


def test_a_run_of_identical_scores_within_minutes_is_found_and_one_a_minute_too_slow_is_not(build):
    world = market(build, providers=3, recipients=3)
    alice, bob, carol = world.recipients

    def rated_run(provider, recipient, scores, gaps, start_day):
        services = [serve(build, provider, recipient, world.meal, day(build, start_day + n, 8))
                    for n in range(len(scores))]
        at = day(build, start_day + len(scores), 9)
        for served, score, gap in zip(services, scores, gaps, strict=True):
            at += timedelta(minutes=gap)
            build.rate(served, score, by=recipient.user, now=at)
        return services

    # p1: five 5s over exactly 10 minutes; p2: five 5s over 11 minutes; p3: ten ratings within 10 minutes,
    # but a 4 breaks every run of five 5s.
    run = rated_run(world.p1, alice, [5] * 5, [0, 2, 2, 2, 4], 1)
    rated_run(world.p2, bob, [5] * 5, [0, 2, 2, 2, 5], 1)
    rated_run(world.providers[2], carol, [5, 5, 5, 5, 4, 5, 5, 5, 5, 3],
              [0, 1, 1, 1, 1, 1, 1, 1, 1, 1], 1)

    found = find(build, world, "rating_pattern")

    assert subjects(found) == [f"provider:{world.p1.id}:run"]
    finding = found[0]
    assert sorted(finding.redemption_ids) == sorted(r.id for r in run)
    assert finding.evidence | {"redemptions": None} == {
        "kind": "run", "run_length": 5, "minutes": 10, "score": 5,
        "at": day(build, 6, 9).astimezone(build.zone()).strftime("%m-%d %H:%M"), "runs": 1, "run_minutes": 10,
        "redemptions": None}
    assert "5 ratings in a row gave the same score of 5 within 10 minutes" in explained(build, finding)


def test_a_burst_of_complaints_by_one_login_is_added_to_the_providers_rating_pattern_evidence(build):
    world = market(build)
    alice, bob = world.recipients
    parameters(build, world.programme, "rating_pattern", run_length=2, run_minutes=10)
    services = [serve(build, world.p1, alice, world.meal, day(build, n, 8)) for n in (1, 2)]
    for minute, served in enumerate(services):
        build.rate(served, 1, by=alice.user, now=day(build, 3, 9, minute))
    # alice complains three times within a day, bob twice.
    for hours in (0, 5, 23):
        build.complain(world.p1, recipient=alice, by=alice.user, at=day(build, 4, 1) + timedelta(hours=hours))
    for hours in (0, 1):
        build.complain(world.p1, recipient=bob, by=bob.user, at=day(build, 4, 1) + timedelta(hours=hours))

    found = find(build, world, "rating_pattern")

    assert subjects(found) == [f"provider:{world.p1.id}:run"]
    assert found[0].evidence["complaint_bursts"] == [
        {"login_id": alice.user.id, "complaints": 3,
         "from": day(build, 4, 1).astimezone(build.zone()).strftime("%m-%d %H:%M")}]


# --- every rule ---------------------------------------------------------------------------------------

def test_services_of_another_programme_month_or_reversed_are_not_judged(build):
    world = market(build)
    alice = world.recipients[0]
    build.issue(world.programme, build.period(0))
    # The overlapping pair of the first test, but reversed, or in this month.
    serve(build, world.p1, alice, world.meal, day(build, 3, 10, 0), minutes=30)
    reversed_bath = serve(build, world.p2, alice, world.bath, day(build, 3, 10, 29), minutes=30)
    build.reverse(reversed_bath)
    start = build.at(build.first_day(0), 0, 10)
    if start + timedelta(minutes=30) < build.now():
        serve(build, world.p1, alice, world.meal, start, minutes=30)
        serve(build, world.p2, alice, world.bath, start + timedelta(minutes=29), minutes=30)

    assert find(build, world, "overlapping_service") == []
