"""Monthly settlement (结算) with pay by performance (docs/domain.md, rule 6 and P8–P9).

One draft per provider with its completed, unreversed, unsettled redemptions delivered up to the end
of the month (local time) and not on hold; the performance score exactly as the README formula; the
programme's pay bands; four eyes; draft → approved → paid with the ledger moving on approval; drafts
deletable, approved and paid settlements never changing; statements as CSV and XLSX; the `settle`
command; Idempotency-Key. Every test runs on SQLite and PostgreSQL.
"""

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

import openpyxl
import pytest

from marketplace.auth.models import User
from tests.conftest import error_code
from tests.support.scenario import ProviderRef, RecipientRef, RedemptionRef, face_value
from vouchers.models import Redemption, Settlement
from vouchers.serials import serial_for

API = "/api/v1"
PRICE, QUOTA = 1237, 20  # an odd price: face value 989 fen (20 % co-payment rounded up to 248)
FACE = face_value(PRICE, 20)
NO_EVIDENCE = 75


# --- the README formula, computed exactly -----------------------------------------------------------

def readme_score(*, services: int, scores=(), mean: Fraction | None = None, upheld: int = 0,
                 evaluation: int | None = None) -> int:
    """score = 0.5·S + 0.2·K + 0.3·E with E, 0.7·S + 0.3·K without, rounded half up (README)."""
    if scores:
        satisfaction = (Fraction(sum(scores), len(scores)) - 1) / 4 * 100
    elif mean is not None:
        satisfaction = (mean - 1) / 4 * 100
    else:
        satisfaction = Fraction(NO_EVIDENCE)
    complaints = max(Fraction(0), 100 - Fraction(10 * upheld * 100, services))
    if evaluation is None:
        score = Fraction(7, 10) * satisfaction + Fraction(3, 10) * complaints
    else:
        score = Fraction(1, 2) * satisfaction + Fraction(1, 5) * complaints + Fraction(3, 10) * evaluation
    return math.floor(score + Fraction(1, 2))


def bayesian(*, weight: int, programme_scores: list[int], provider_scores: list[int]) -> Fraction:
    """(C·m + Σ scores) / (C + n), m the mean of every rating in the programme."""
    prior = Fraction(sum(programme_scores), len(programme_scores))
    return (weight * prior + sum(provider_scores)) / (weight + len(provider_scores))


# --- the cast ---------------------------------------------------------------------------------------

@dataclass
class Scene:
    """An active programme buying meals (1237 fen, 20 a month) with two social-organisation providers;
    alice chose p1 and bob chose p2; last month's vouchers are issued. `creator` drafts settlements,
    `checker` is the second admin."""

    programme: int
    meal: str
    p1: ProviderRef
    p2: ProviderRef
    alice: RecipientRef
    bob: RecipientRef
    creator: User
    checker: User
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
    return Scene(programme=programme, meal=meal, p1=p1, p2=p2, alice=alice, bob=bob, creator=build.admin(),
                 checker=build.admin(), auditor=build.auditor())


def last_month(build, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """*hour*:*minute* local time on day *day* (1-based) of last month."""
    return build.in_month(-1, day, hour, minute)


def deliver(build, scene, provider: ProviderRef, recipient: RecipientRef, days: list[int]) -> list[RedemptionRef]:
    return [build.redeem(provider, recipient, scene.meal, delivered_at=last_month(build, day)) for day in days]


def settle(client, build, programme_id: int, period: str, *, by: User, evaluations=None, key: str | None = None):
    body = {"period": period}
    if evaluations is not None:
        body["evaluations"] = [{"provider_id": pid, "score": score} for pid, score in evaluations.items()]
    headers = dict(build.headers(by))
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"{API}/programmes/{programme_id}/settlements", json=body, headers=headers)


def drafted(client, build, programme_id: int, period: str, *, by: User, evaluations=None) -> dict[int, dict]:
    """POST the period's settlements (201) and return them by provider id."""
    response = settle(client, build, programme_id, period, by=by, evaluations=evaluations)
    assert response.status_code == 201, response.get_json()
    return {item["provider_id"]: item for item in response.get_json()["items"]}


def detail(client, build, settlement_id: int, *, by: User) -> dict:
    response = client.get(f"{API}/settlements/{settlement_id}", headers=build.headers(by))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def settled_ids(build, settlement_id: int) -> set[int]:
    return {r.id for r in build.redemptions(Redemption.settlement_id == settlement_id)}


def ledger(client, build, programme_id: int, *, by: User) -> dict:
    response = client.get(f"{API}/programmes/{programme_id}/ledger", headers=build.headers(by))
    assert response.status_code == 200
    return response.get_json()


# --- drafting ---------------------------------------------------------------------------------------

def test_drafts_one_settlement_per_provider_with_totals_equal_to_its_redemptions(build, client, scene):
    mine = deliver(build, scene, scene.p1, scene.alice, [3, 9, 17])
    theirs = deliver(build, scene, scene.p2, scene.bob, [5, 28])

    response = settle(client, build, scene.programme, build.period(-1), by=scene.creator)

    assert response.status_code == 201
    items = {item["provider_id"]: item for item in response.get_json()["items"]}
    assert set(items) == {scene.p1.id, scene.p2.id}
    for provider, redemptions in ((scene.p1, mine), (scene.p2, theirs)):
        item = items[provider.id]
        assert item["programme_id"] == scene.programme
        assert item["period"] == build.period(-1)
        assert item["status"] == "draft"
        assert item["created_by"] == scene.creator.id
        assert item["redemptions_count"] == len(redemptions)
        assert item["gross_fen"] == sum(r.face_value_fen for r in redemptions) == FACE * len(redemptions)
        body = detail(client, build, item["id"], by=scene.auditor)
        assert [(line["redemption_id"], line["voucher_serial"], line["item_code"], line["face_value_fen"])
                for line in body["lines"]] == [(r.id, serial_for(r.voucher_id), scene.meal, FACE)
                                               for r in redemptions]
        assert [datetime.fromisoformat(line["delivered_at"]) for line in body["lines"]] == [
            r.delivered_at for r in redemptions]
        assert body["gross_fen"] == sum(line["face_value_fen"] for line in body["lines"])
        assert settled_ids(build, item["id"]) == {r.id for r in redemptions}


def test_the_month_ends_at_local_midnight(build, client, scene):
    """Asia/Shanghai: 23:30 on the last day belongs to the month; 00:30 on the next day does not."""
    build.issue(scene.programme, build.period(-2))
    late = build.redeem(scene.p1, scene.alice, scene.meal, delivered_at=build.at(build.last_day(-2), 23, 30))
    after = build.redeem(scene.p1, scene.alice, scene.meal, delivered_at=build.at(build.first_day(-1), 0, 30))
    assert late.delivered_at.hour == 15
    assert after.delivered_at.hour == 16

    first = drafted(client, build, scene.programme, build.period(-2), by=scene.creator)[scene.p1.id]
    assert first["redemptions_count"] == 1
    assert first["gross_fen"] == FACE
    assert settled_ids(build, first["id"]) == {late.id}

    second = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)[scene.p1.id]
    assert settled_ids(build, second["id"]) == {after.id}


def test_reversed_redemptions_are_not_settled(build, client, scene):
    kept, undone = deliver(build, scene, scene.p1, scene.alice, [2, 4])
    build.reverse(undone)

    item = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)[scene.p1.id]

    assert item["redemptions_count"] == 1
    assert item["gross_fen"] == FACE
    assert settled_ids(build, item["id"]) == {kept.id}
    assert build.redemption(undone.id).settlement_id is None


def test_a_redemption_on_hold_waits_until_its_complaint_is_resolved(build, client, scene):
    held, free = deliver(build, scene, scene.p1, scene.alice, [6, 7])
    complaint = build.complain(scene.p1, redemption=held)
    [only] = deliver(build, scene, scene.p2, scene.bob, [8])
    lonely = build.complain(scene.p2, redemption=only)

    first = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)
    assert set(first) == {scene.p1.id}  # p2's only redemption is on hold: nothing to settle for p2
    assert settled_ids(build, first[scene.p1.id]["id"]) == {free.id}
    assert first[scene.p1.id]["gross_fen"] == FACE

    build.resolve(complaint, upheld=False)
    build.resolve(lonely, upheld=False)

    # p1 was settled for the month already: its released redemption waits for the next run, p2's comes now.
    again = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)
    assert set(again) == {scene.p2.id}
    assert settled_ids(build, again[scene.p2.id]["id"]) == {only.id}
    assert build.redemption(held.id).settlement_id is None
    following = drafted(client, build, scene.programme, build.period(), by=scene.creator)
    assert set(following) == {scene.p1.id}
    assert settled_ids(build, following[scene.p1.id]["id"]) == {held.id}


def test_a_second_call_for_the_same_period_creates_nothing_twice(build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [1, 2])
    deliver(build, scene, scene.p2, scene.bob, [3])
    first = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)
    late = deliver(build, scene, scene.p1, scene.alice, [20])[0]  # scanned after the run, delivered in the month

    second = settle(client, build, scene.programme, build.period(-1), by=scene.checker)

    assert second.status_code == 201
    assert second.get_json()["items"] == []
    assert build.count(Settlement) == 2
    assert {s.id: s.redemptions_count for s in build.settlements()} == {
        first[scene.p1.id]["id"]: 2, first[scene.p2.id]["id"]: 1}
    assert build.redemption(late.id).settlement_id is None
    nxt = drafted(client, build, scene.programme, build.period(), by=scene.creator)
    assert settled_ids(build, nxt[scene.p1.id]["id"]) == {late.id}


def test_nothing_to_settle_gives_an_empty_list(build, client, scene):
    response = settle(client, build, scene.programme, build.period(-1), by=scene.creator)
    assert response.status_code == 201
    assert response.get_json() == {"items": []}


@pytest.mark.parametrize("body", [{}, {"period": "2026-13"}, {"period": "2026-1"}, {"period": 202601},
                                  {"period": "2026-01", "evaluations": [{"provider_id": 1, "score": 101}]},
                                  {"period": "2026-01", "evaluations": [{"provider_id": 1}]},
                                  {"period": "2026-01", "unknown": 1}])
def test_a_bad_request_is_refused_with_validation_error(build, client, scene, body):
    response = client.post(f"{API}/programmes/{scene.programme}/settlements", json=body,
                           headers=build.headers(scene.creator))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert build.count(Settlement) == 0


def test_an_unknown_programme_is_404(build, client, scene):
    response = settle(client, build, 999_999, build.period(-1), by=scene.creator)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


# --- the performance score --------------------------------------------------------------------------

def scored(build, client, scene, provider, *, evaluations=None) -> dict:
    return drafted(client, build, scene.programme, build.period(-1), by=scene.creator,
                   evaluations=evaluations)[provider.id]


def test_score_from_the_months_ratings(build, client, scene):
    redemptions = deliver(build, scene, scene.p1, scene.alice, [1, 2, 3, 4])
    for redemption, score in zip(redemptions, [5, 4, 4, 2], strict=True):
        build.rate(redemption, score)

    item = scored(build, client, scene, scene.p1)

    # S = (3.75 − 1) / 4 × 100 = 68.75; K = 100; 0.7·68.75 + 0.3·100 = 78.125
    assert item["performance_score"] == readme_score(services=4, scores=[5, 4, 4, 2]) == 78
    assert item["evaluation_score"] is None
    assert item["upheld_complaints"] == 0
    assert item["pay_percent"] == 60
    assert item["flagged_for_termination"] is True
    assert item["net_fen"] == 4 * FACE * 60 // 100


def test_score_with_a_third_party_evaluation(build, client, scene):
    redemptions = deliver(build, scene, scene.p1, scene.alice, [1, 2, 3, 4])
    for redemption, score in zip(redemptions, [5, 4, 4, 2], strict=True):
        build.rate(redemption, score)

    item = scored(build, client, scene, scene.p1, evaluations={scene.p1.id: 90})

    # 0.5·68.75 + 0.2·100 + 0.3·90 = 81.375
    assert item["performance_score"] == readme_score(services=4, scores=[5, 4, 4, 2], evaluation=90) == 81
    assert item["evaluation_score"] == 90
    assert item["pay_percent"] == 100
    assert item["net_fen"] == item["gross_fen"] == 4 * FACE
    assert item["flagged_for_termination"] is False


def test_upheld_complaints_about_its_services_or_in_its_month_lower_the_score(build, client, scene):
    redemptions = deliver(build, scene, scene.p1, scene.alice, list(range(1, 21)))
    build.choose(scene.bob, scene.programme, scene.meal, scene.p1)  # alice's 20 vouchers are used up
    redemptions += deliver(build, scene, scene.p1, scene.bob, [21, 22, 23, 24, 25])
    build.rate(redemptions[0], 5)
    build.rate(redemptions[1], 5)
    counted = [build.complain(scene.p1, redemption=redemptions[2]),                       # about a settled service
               build.complain(scene.p1, at=last_month(build, 15))]                        # in the month
    ignored = [build.complain(scene.p1, redemption=redemptions[3]),                       # not upheld
               build.complain(scene.p1, at=build.at(build.first_day(-2), 12))]            # another month
    other = build.complain(scene.p2, at=last_month(build, 15))                            # another provider
    for complaint in counted:
        build.resolve(complaint, upheld=True)
    build.resolve(ignored[0], upheld=False)
    build.resolve(ignored[1], upheld=True)
    build.resolve(other, upheld=True)
    build.complain(scene.p1, at=last_month(build, 16))  # still open: no verdict, no penalty

    item = scored(build, client, scene, scene.p1)

    # 25 services, 2 upheld: K = 100 − 10 × 8 = 20; S = 100; 0.7·100 + 0.3·20 = 76
    assert item["redemptions_count"] == 25
    assert item["upheld_complaints"] == 2
    assert item["performance_score"] == readme_score(services=25, scores=[5, 5], upheld=2) == 76


def test_the_complaint_part_never_goes_below_zero(build, client, scene):
    redemptions = deliver(build, scene, scene.p1, scene.alice, [1, 2, 3, 4])
    for redemption in redemptions:
        build.rate(redemption, 4)
    build.resolve(build.complain(scene.p1, redemption=redemptions[0]), upheld=True)

    item = scored(build, client, scene, scene.p1)

    # 1 upheld in 4 services is 25 per 100: K = max(0, 100 − 250) = 0; 0.7·75 = 52.5, rounded half up
    assert item["upheld_complaints"] == 1
    assert item["performance_score"] == readme_score(services=4, scores=[4, 4, 4, 4], upheld=1) == 53


def test_without_ratings_in_the_month_the_providers_programme_bayesian_counts(app, build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [1, 2, 3])  # p1's month: nobody rated
    for redemption, score in zip(deliver(build, scene, scene.p2, scene.bob, [4, 5]), [5, 3], strict=True):
        build.rate(redemption, score)
    build.issue(scene.programme, build.period())
    for score in (2, 2):  # p1 is rated this month, after the settled period
        build.rate(build.redeem(scene.p1, scene.alice, scene.meal), score)

    item = scored(build, client, scene, scene.p1)

    # m = (5 + 3 + 2 + 2) / 4 = 3; p1: (10·3 + 4) / (10 + 2) = 34/12; S = 45.83…; 0.7·S + 30 = 62.08…
    mean = bayesian(weight=app.config["RANKING_PRIOR_WEIGHT"], programme_scores=[5, 3, 2, 2],
                    provider_scores=[2, 2])
    assert mean == Fraction(34, 12)
    assert item["redemptions_count"] == 3
    assert item["performance_score"] == readme_score(services=3, mean=mean) == 62


def test_without_any_rating_in_the_programme_satisfaction_is_75(build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [1, 2, 3])

    item = scored(build, client, scene, scene.p1)

    # 0.7·75 + 0.3·100 = 82.5, rounded half up
    assert item["performance_score"] == readme_score(services=3) == 83
    assert item["pay_percent"] == 100
    assert item["net_fen"] == 3 * FACE


def test_the_score_is_rounded_half_up_exactly(build, client, scene):
    redemptions = deliver(build, scene, scene.p1, scene.alice, list(range(1, 16)))
    for redemption, score in zip(redemptions, [5, 4, 2], strict=False):
        build.rate(redemption, score)
    build.resolve(build.complain(scene.p1, at=last_month(build, 20)), upheld=True)

    item = scored(build, client, scene, scene.p1, evaluations={scene.p1.id: 75})

    # S = (11/3 − 1) × 25 = 200/3; K = 100 − 1000/15 = 100/3; 0.5·S + 0.2·K + 0.3·75 = 62.5 exactly → 63
    assert readme_score(services=15, scores=[5, 4, 2], upheld=1, evaluation=75) == 63
    assert item["performance_score"] == 63


# --- pay bands --------------------------------------------------------------------------------------

BANDS = ({"min_score": 0, "pay_percent": 50}, {"min_score": 60, "pay_percent": 80},
         {"min_score": 80, "pay_percent": 100})


def test_pay_percent_is_that_of_the_highest_band_not_above_the_score(build, client):
    """No rating anywhere (S = 75, K = 100): score = 57.5 + 0.3·E, so E picks the band."""
    meal = build.item()
    programme = build.programme(items=[(meal, PRICE, QUOTA)], rules=BANDS).id
    # evaluation → (score, pay percent, flagged)
    cases = {0: (58, 50, True), 5: (59, 50, True), 8: (60, 80, False), 73: (79, 80, False), 75: (80, 100, False),
             100: (88, 100, False)}
    cast = [(build.provider(items=[meal], enrol_in=[programme]), build.recipient()) for _case in cases]
    build.issue(programme, build.period(-1))
    providers = {}
    for (provider, recipient), evaluation, services in zip(cast, cases, (1, 3, 5, 7, 2, 9), strict=True):
        build.serve(provider, [recipient], programme, meal,
                    delivered_at=[last_month(build, day) for day in range(1, services + 1)])
        providers[provider.id] = (evaluation, services)
    creator = build.admin()

    items = drafted(client, build, programme, build.period(-1), by=creator,
                    evaluations={pid: evaluation for pid, (evaluation, _n) in providers.items()})

    assert set(items) == set(providers)
    for provider_id, (evaluation, services) in providers.items():
        score, percent, flagged = cases[evaluation]
        item = items[provider_id]
        gross = services * FACE
        assert readme_score(services=services, evaluation=evaluation) == score
        assert (item["performance_score"], item["pay_percent"], item["flagged_for_termination"]) == (
            score, percent, flagged), evaluation
        assert item["gross_fen"] == gross
        assert item["net_fen"] == gross * percent // 100  # rounded down to the fen
    assert any(item["gross_fen"] * item["pay_percent"] % 100 for item in items.values())  # odd amounts happened


def test_a_single_band_never_flags_for_termination(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, PRICE, QUOTA)], rules=[{"min_score": 0, "pay_percent": 90}]).id
    provider, recipient = build.provider(items=[meal], enrol_in=[programme]), build.recipient()
    build.issue(programme, build.period(-1))
    build.serve(provider, [recipient], programme, meal, delivered_at=[last_month(build, 2), last_month(build, 3)])

    item = drafted(client, build, programme, build.period(-1), by=build.admin(),
                   evaluations={provider.id: 0})[provider.id]

    assert item["performance_score"] == 58
    assert item["pay_percent"] == 90
    assert item["flagged_for_termination"] is False
    assert item["net_fen"] == 2 * FACE * 90 // 100 == 1780


# --- the workflow -----------------------------------------------------------------------------------

def writes(build, programme_id: int, settlement_id: int) -> list[tuple[str, str, dict | None]]:
    """Every settlement write, each with a valid body: (method, path, json)."""
    return [("post", f"{API}/programmes/{programme_id}/settlements", {"period": build.period(-1)}),
            ("post", f"{API}/settlements/{settlement_id}/approve", None),
            ("post", f"{API}/settlements/{settlement_id}/pay", {"payment_reference": "国库集中支付-X"}),
            ("delete", f"{API}/settlements/{settlement_id}", None)]


def approve(client, build, settlement_id: int, *, by: User, key: str | None = None):
    headers = dict(build.headers(by))
    if key:
        headers["Idempotency-Key"] = key
    return client.post(f"{API}/settlements/{settlement_id}/approve", headers=headers)


def pay(client, build, settlement_id: int, *, by: User, reference: str = "国库集中支付-2026-0001"):
    return client.post(f"{API}/settlements/{settlement_id}/pay", json={"payment_reference": reference},
                       headers=build.headers(by))


def delete(client, build, settlement_id: int, *, by: User):
    return client.delete(f"{API}/settlements/{settlement_id}", headers=build.headers(by))


@pytest.fixture
def draft(build, client, scene) -> dict:
    """p1's draft for last month: 3 services, no ratings, evaluation 40 → score 69.5 → 70 → 60 %."""
    deliver(build, scene, scene.p1, scene.alice, [2, 11, 23])
    item = drafted(client, build, scene.programme, build.period(-1), by=scene.creator,
                   evaluations={scene.p1.id: 40})[scene.p1.id]
    assert (item["performance_score"], item["pay_percent"]) == (70, 60)
    assert item["gross_fen"] == 3 * FACE
    assert item["net_fen"] == 3 * FACE * 60 // 100 == 1780
    return item


def test_the_creator_may_not_approve_its_own_settlement(build, client, scene, draft):
    response = approve(client, build, draft["id"], by=scene.creator)

    assert response.status_code == 403
    assert error_code(response) == "four_eyes_required"
    assert build.settlement(draft["id"]).status == "draft"


def test_a_login_the_drafter_created_may_not_approve_either(build, client, scene, draft):
    """Four eyes that one person cannot fake: a second admin account of the drafter's making is still
    the drafter."""
    second_self = {"username": "second-self", "password": "Correct-Horse-Battery-42", "role": "admin"}
    assert client.post(f"{API}/users", json=second_self, headers=build.headers(scene.creator)).status_code == 201
    token = client.post(f"{API}/auth/token", json={"username": "second-self",
                                                    "password": second_self["password"]}).get_json()["token"]

    response = client.post(f"{API}/settlements/{draft['id']}/approve", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 403
    assert error_code(response) == "four_eyes_required"
    assert build.settlement(draft["id"]).status == "draft"


def test_a_deleted_drafts_id_is_never_given_to_another_settlement(build, client, scene, draft):
    """Audit events and statements name settlements by id: a new draft never takes a deleted one's."""
    assert delete(client, build, draft["id"], by=scene.creator).status_code == 204

    again = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)[scene.p1.id]

    assert again["id"] > draft["id"]


def test_another_admin_approves(build, client, scene, draft):
    response = approve(client, build, draft["id"], by=scene.checker)

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "approved"
    assert body["approved_by"] == scene.checker.id
    assert body["approved_at"]
    assert approve(client, build, draft["id"], by=scene.checker).status_code == 409  # only a draft is approved


def test_approval_moves_the_net_to_settled_and_the_deduction_to_available(build, client, scene, draft):
    before = ledger(client, build, scene.programme, by=scene.auditor)
    assert before["redeemed_fen"] == 3 * FACE
    assert before["settled_fen"] == 0

    assert approve(client, build, draft["id"], by=scene.checker).status_code == 200

    after = ledger(client, build, scene.programme, by=scene.auditor)
    net, deduction = 1780, 3 * FACE - 1780
    assert after["redeemed_fen"] == before["redeemed_fen"] - 3 * FACE == 0
    assert after["settled_fen"] == net
    assert after["available_fen"] == before["available_fen"] + deduction
    assert after["released_fen"] == before["released_fen"] + deduction
    assert after["deducted_fen"] == before.get("deducted_fen", 0) + deduction == 1187
    assert after["allocated_fen"] == before["allocated_fen"]
    assert after["committed_fen"] == before["committed_fen"]
    assert build.guarded_available(scene.programme) == after["available_fen"]
    assert build.failing_checks(scene.programme) == []


def test_full_pay_moves_everything_to_settled_and_deducts_nothing(build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [1, 2])
    item = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)[scene.p1.id]
    assert item["pay_percent"] == 100
    before = ledger(client, build, scene.programme, by=scene.auditor)

    assert approve(client, build, item["id"], by=scene.checker).status_code == 200

    after = ledger(client, build, scene.programme, by=scene.auditor)
    assert after["settled_fen"] == 2 * FACE
    assert after["redeemed_fen"] == 0
    assert after["available_fen"] == before["available_fen"]
    assert after["deducted_fen"] == 0


def test_payment_needs_approval_and_happens_once(build, client, scene, draft):
    early = pay(client, build, draft["id"], by=scene.checker)
    assert early.status_code == 409
    assert error_code(early) == "not_approved"
    assert build.settlement(draft["id"]).status == "draft"

    assert approve(client, build, draft["id"], by=scene.checker).status_code == 200
    paid = pay(client, build, draft["id"], by=scene.creator, reference="国库集中支付-2026-0042")

    assert paid.status_code == 200
    body = paid.get_json()
    assert body["status"] == "paid"
    assert body["payment_reference"] == "国库集中支付-2026-0042"
    assert body["paid_at"]
    twice = pay(client, build, draft["id"], by=scene.checker, reference="again")
    assert twice.status_code == 409
    assert build.settlement(draft["id"]).payment_reference == "国库集中支付-2026-0042"
    assert ledger(client, build, scene.programme, by=scene.auditor)["settled_fen"] == 1780  # paying moves nothing


@pytest.mark.parametrize("body", [{}, {"payment_reference": ""}, {"payment_reference": "x" * 101}])
def test_a_payment_names_its_reference(build, client, scene, draft, body):
    assert approve(client, build, draft["id"], by=scene.checker).status_code == 200
    response = client.post(f"{API}/settlements/{draft['id']}/pay", json=body, headers=build.headers(scene.checker))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_deleting_a_draft_releases_its_redemptions_for_the_next_run(build, client, scene, draft):
    before = settled_ids(build, draft["id"])

    response = delete(client, build, draft["id"], by=scene.checker)

    assert response.status_code == 204
    assert build.settlement(draft["id"]) is None
    assert all(build.redemption(rid).settlement_id is None for rid in before)
    assert delete(client, build, draft["id"], by=scene.checker).status_code == 404
    again = drafted(client, build, scene.programme, build.period(-1), by=scene.creator,
                    evaluations={scene.p1.id: 40})[scene.p1.id]
    assert settled_ids(build, again["id"]) == before
    assert (again["redemptions_count"], again["gross_fen"], again["net_fen"]) == (3, 3 * FACE, 1780)


@pytest.mark.parametrize("stage", ["approved", "paid"])
def test_approved_and_paid_settlements_cannot_be_deleted(build, client, scene, draft, stage):
    assert approve(client, build, draft["id"], by=scene.checker).status_code == 200
    if stage == "paid":
        assert pay(client, build, draft["id"], by=scene.checker).status_code == 200

    response = delete(client, build, draft["id"], by=scene.checker)

    assert response.status_code == 409
    assert build.settlement(draft["id"]).status == stage
    assert len(settled_ids(build, draft["id"])) == 3


@pytest.mark.parametrize("stage", ["approved", "paid"])
def test_approved_and_paid_settlements_never_change(build, client, scene, draft, stage):
    assert approve(client, build, draft["id"], by=scene.checker).status_code == 200
    if stage == "paid":
        assert pay(client, build, draft["id"], by=scene.checker).status_code == 200
    frozen = detail(client, build, draft["id"], by=scene.auditor)
    late = deliver(build, scene, scene.p1, scene.alice, [27])[0]  # delivered in the month, scanned afterwards

    rerun = settle(client, build, scene.programme, build.period(-1), by=scene.creator,
                   evaluations={scene.p1.id: 100})
    assert rerun.status_code == 201
    assert rerun.get_json()["items"] == []
    for reverser in (scene.checker, scene.p1.user):
        response = client.post(f"{API}/redemptions/{frozen['lines'][0]['redemption_id']}/reverse",
                               json={"reason": "录入错误"}, headers=build.headers(reverser))
        assert response.status_code == 409
        assert error_code(response) == "already_settled"
    assert approve(client, build, draft["id"], by=scene.creator).status_code in (403, 409)

    assert detail(client, build, draft["id"], by=scene.auditor) == frozen
    assert build.redemption(late.id).settlement_id is None
    nxt = drafted(client, build, scene.programme, build.period(), by=scene.creator)[scene.p1.id]
    assert settled_ids(build, nxt["id"]) == {late.id}
    assert detail(client, build, draft["id"], by=scene.auditor) == frozen


def test_a_drafts_redemptions_cannot_be_reversed_either(build, client, scene, draft):
    line = detail(client, build, draft["id"], by=scene.auditor)["lines"][0]
    response = client.post(f"{API}/redemptions/{line['redemption_id']}/reverse", json={"reason": "录入错误"},
                           headers=build.headers(scene.checker))
    assert response.status_code == 409
    assert error_code(response) == "already_settled"


def audit_actions(client, build, settlement_id: int, *, by: User) -> list[tuple[str, str | None]]:
    response = client.get(f"{API}/audit", query_string={"entity": "settlement", "entity_id": str(settlement_id)},
                          headers=build.headers(by))
    assert response.status_code == 200
    return sorted((event["action"], event["actor"]) for event in response.get_json()["items"])


def test_every_step_is_audited(build, client, scene, draft):
    assert approve(client, build, draft["id"], by=scene.checker).status_code == 200
    assert pay(client, build, draft["id"], by=scene.creator).status_code == 200
    deliver(build, scene, scene.p2, scene.bob, [3])
    doomed = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)[scene.p2.id]
    assert delete(client, build, doomed["id"], by=scene.checker).status_code == 204

    actions = audit_actions(client, build, draft["id"], by=scene.auditor)
    assert [action for action, _actor in actions] == ["settlement.approved", "settlement.drafted", "settlement.paid"]
    assert dict(actions) == {"settlement.drafted": scene.creator.username,
                             "settlement.approved": scene.checker.username,
                             "settlement.paid": scene.creator.username}
    assert [action for action, _actor in audit_actions(client, build, doomed["id"], by=scene.auditor)] == [
        "settlement.deleted", "settlement.drafted"]
    verify = client.get(f"{API}/audit/verify", headers=build.headers(scene.auditor)).get_json()
    assert verify["ok"] is True


# --- who may do what --------------------------------------------------------------------------------

def test_a_provider_sees_only_its_own_settlements(build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [1])
    deliver(build, scene, scene.p2, scene.bob, [2])
    items = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)
    mine, theirs = items[scene.p1.id]["id"], items[scene.p2.id]["id"]
    staff = build.headers(scene.p1.user)

    listed = client.get(f"{API}/settlements", headers=staff).get_json()
    assert [item["id"] for item in listed["items"]] == [mine]
    assert listed["total"] == 1
    filtered = client.get(f"{API}/settlements", query_string={"provider_id": scene.p2.id}, headers=staff).get_json()
    assert filtered["items"] == []
    assert client.get(f"{API}/settlements/{mine}", headers=staff).status_code == 200
    assert client.get(f"{API}/settlements/{mine}/statement.csv", headers=staff).status_code == 200
    for path in (f"/settlements/{theirs}", f"/settlements/{theirs}/statement.csv",
                 f"/settlements/{theirs}/statement.xlsx"):
        response = client.get(API + path, headers=staff)
        assert response.status_code == 404, path
        assert error_code(response) == "not_found", path
    for method, path, body in writes(build, scene.programme, mine):
        response = getattr(client, method)(path, json=body, headers=staff)
        assert response.status_code == 403, path
        assert error_code(response) == "forbidden", path
    assert build.settlement(mine).status == "draft"


def test_an_auditor_reads_but_never_writes(build, client, scene, draft):
    headers = build.headers(scene.auditor)
    assert client.get(f"{API}/settlements", headers=headers).get_json()["total"] == 1
    assert client.get(f"{API}/settlements/{draft['id']}", headers=headers).status_code == 200
    workbook = client.get(f"{API}/settlements/{draft['id']}/statement.xlsx", headers=headers)
    assert workbook.status_code == 200
    workbook.close()
    for method, path, body in writes(build, scene.programme, draft["id"]):
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 403, path
        assert error_code(response) == "forbidden", path


def test_recipients_and_strangers_see_no_settlements(build, client, scene, draft):
    recipient = build.user(role="recipient", recipient_id=scene.alice.id)
    for path in ("/settlements", f"/settlements/{draft['id']}", f"/settlements/{draft['id']}/statement.csv"):
        assert client.get(API + path, headers=build.headers(recipient)).status_code == 403
        anonymous = client.get(API + path)
        assert anonymous.status_code == 401
        assert error_code(anonymous) == "unauthenticated"
    assert client.post(f"{API}/settlements/{draft['id']}/approve").status_code == 401


def test_an_admin_limited_to_another_region_cannot_touch_the_programmes_settlements(build, client, scene, draft):
    outsider = build.admin(region_code="440300")
    headers = build.headers(outsider)

    assert client.get(f"{API}/settlements", headers=headers).get_json()["items"] == []
    reads = [("get", f"{API}/settlements/{draft['id']}{suffix}", None)
             for suffix in ("", "/statement.csv", "/statement.xlsx")]
    for method, path, body in reads + writes(build, scene.programme, draft["id"]):
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == 403, path
        assert error_code(response) == "forbidden", path
    assert build.settlement(draft["id"]).status == "draft"

    insider = build.admin(region_code="510131")
    assert client.get(f"{API}/settlements", headers=build.headers(insider)).get_json()["total"] == 1
    assert approve(client, build, draft["id"], by=insider).status_code == 200


def test_the_list_filters(build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [1])
    deliver(build, scene, scene.p2, scene.bob, [2])
    items = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)
    assert approve(client, build, items[scene.p2.id]["id"], by=scene.checker).status_code == 200
    headers = build.headers(scene.auditor)

    def ids(**query):
        response = client.get(f"{API}/settlements", query_string=query, headers=headers)
        assert response.status_code == 200
        return [item["id"] for item in response.get_json()["items"]]

    both = [items[scene.p1.id]["id"], items[scene.p2.id]["id"]]
    assert sorted(ids()) == sorted(both) == sorted(ids(programme_id=scene.programme, period=build.period(-1)))
    assert ids(period=build.period(-2)) == []
    assert ids(programme_id=scene.programme + 1) == []
    assert ids(status="approved") == [items[scene.p2.id]["id"]] == ids(provider_id=scene.p2.id)
    assert ids(status="draft") == [items[scene.p1.id]["id"]]
    assert client.get(f"{API}/settlements", query_string={"status": "lost"}, headers=headers).status_code == 422


# --- statements -------------------------------------------------------------------------------------

@pytest.fixture
def statement_case(build, client, scene) -> tuple[dict, list[RedemptionRef]]:
    """p1 served alice four times last month, the last one late in the evening of the last day."""
    redemptions = deliver(build, scene, scene.p1, scene.alice, [9, 3, 14])
    redemptions.append(build.redeem(scene.p1, scene.alice, scene.meal,
                                    delivered_at=build.at(build.last_day(-1), 23, 30)))
    item = drafted(client, build, scene.programme, build.period(-1), by=scene.creator)[scene.p1.id]
    return item, sorted(redemptions, key=lambda r: r.delivered_at)


def nonblank(rows) -> list[list[str]]:
    """Rows as lists of strings without trailing empty cells, blank rows left out."""
    result = []
    for row in rows:
        cells = ["" if cell is None else str(cell) for cell in row]
        while cells and cells[-1] == "":
            cells.pop()
        if cells:
            result.append(cells)
    return result


def csv_rows(client, build, settlement_id: int, *, by: User) -> tuple[bytes, list[list[str]]]:
    response = client.get(f"{API}/settlements/{settlement_id}/statement.csv", headers=build.headers(by))
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    data = response.data
    return data, nonblank(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def has_cjk(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


def test_the_csv_statement_opens_in_excel_with_chinese_headers_one_line_per_service_and_totals(
        build, client, scene, statement_case):
    item, redemptions = statement_case

    data, rows = csv_rows(client, build, item["id"], by=scene.p1.user)

    assert data.startswith(b"\xef\xbb\xbf")
    header, lines, totals = rows[0], rows[1:1 + len(redemptions)], rows[1 + len(redemptions):]
    assert header
    assert all(has_cjk(cell) for cell in header)
    assert [line[0] for line in lines] == [str(r.id) for r in redemptions]
    assert [line[1] for line in lines] == [serial_for(r.voucher_id) for r in redemptions]
    assert all(line[2] == scene.meal and "9.89" in line for line in lines)
    assert any(f"{build.last_day(-1):%Y-%m-%d} 23:30" in cell for cell in lines[-1])  # local time
    total_row = next(row for row in totals if "合计" in row[0])
    assert str(len(redemptions)) in total_row
    assert f"{4 * FACE / 100:.2f}" in total_row
    flat = [cell for row in totals for cell in row]
    assert f"{item['net_fen'] / 100:.2f}" in flat
    assert str(item["performance_score"]) in flat


def test_the_xlsx_statement_opens_with_openpyxl_and_has_the_same_rows(build, client, scene, statement_case):
    item, redemptions = statement_case
    _data, expected = csv_rows(client, build, item["id"], by=scene.auditor)

    response = client.get(f"{API}/settlements/{item['id']}/statement.xlsx", headers=build.headers(scene.auditor))

    assert response.status_code == 200
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    data = response.data
    response.close()  # a WSGI server closes the streamed temporary file; the test client leaves it to us
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    rows = nonblank(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    assert rows == expected
    assert len(rows) > len(redemptions) + 1


# --- the settle command -----------------------------------------------------------------------------

def test_the_settle_command_drafts_and_prints_each_provider(build, runner, scene):
    deliver(build, scene, scene.p1, scene.alice, [1, 2, 3])
    deliver(build, scene, scene.p2, scene.bob, [4])

    result = runner.invoke(args=["settle", str(scene.programme), build.period(-1)])

    assert result.exit_code == 0, result.output
    drafts = {s.provider_id: s for s in build.settlements()}
    assert set(drafts) == {scene.p1.id, scene.p2.id}
    for provider_id, draft in drafts.items():
        assert draft.status == "draft"
        assert draft.period == build.period(-1)
        line = next(line for line in result.output.splitlines() if line.startswith(f"provider {provider_id}:"))
        assert f"{draft.redemptions_count} redemptions" in line
        assert f"gross {draft.gross_fen} fen" in line
        assert f"score {draft.performance_score}" in line
        assert f"{draft.pay_percent}% = {draft.net_fen} fen" in line
    assert drafts[scene.p1.id].gross_fen == 3 * FACE

    again = runner.invoke(args=["settle", str(scene.programme), build.period(-1)])
    assert again.exit_code == 0
    assert "nothing to settle" in again.output
    assert build.count(Settlement) == 2
    # Drafted by no admin in particular: any admin approves it.
    build.approve(drafts[scene.p1.id].id, by=scene.creator)
    assert build.settlement(drafts[scene.p1.id].id).status == "approved"


@pytest.mark.parametrize("args", [["settle", "999999", "2026-01"], ["settle", "PROGRAMME", "2026-01"]])
def test_the_settle_command_refuses_an_unknown_programme(runner, args):
    result = runner.invoke(args=args)
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_the_settle_command_refuses_a_bad_period(build, runner, scene):
    result = runner.invoke(args=["settle", str(scene.programme), "2026-13"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert build.count(Settlement) == 0


# --- Idempotency-Key --------------------------------------------------------------------------------

def test_a_retried_settlement_run_with_the_same_key_replays_the_first_answer(build, client, scene):
    deliver(build, scene, scene.p1, scene.alice, [5])
    first = settle(client, build, scene.programme, build.period(-1), by=scene.creator, key="settle-2026-01")
    assert first.status_code == 201
    assert len(first.get_json()["items"]) == 1
    [created] = first.get_json()["items"]
    assert delete(client, build, created["id"], by=scene.checker).status_code == 204

    replay = settle(client, build, scene.programme, build.period(-1), by=scene.creator, key="settle-2026-01")

    assert replay.status_code == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json() == first.get_json()
    assert build.count(Settlement) == 0  # the replay ran nothing
    reused = settle(client, build, scene.programme, build.period(-2), by=scene.creator, key="settle-2026-01")
    assert reused.status_code == 422
    assert error_code(reused) == "idempotency_key_reused"
    fresh = settle(client, build, scene.programme, build.period(-1), by=scene.creator, key="settle-2026-01-b")
    assert fresh.status_code == 201
    assert len(fresh.get_json()["items"]) == 1


def test_a_retried_approval_with_the_same_key_moves_money_once(build, client, scene, draft):
    first = approve(client, build, draft["id"], by=scene.checker, key="approve-1")
    replay = approve(client, build, draft["id"], by=scene.checker, key="approve-1")

    assert first.status_code == replay.status_code == 200
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json() == first.get_json()
    assert ledger(client, build, scene.programme, by=scene.auditor)["settled_fen"] == 1780
    assert build.failing_checks(scene.programme) == []


def test_settlements_are_one_per_redemption_in_the_database(build, scene):
    """The claim is a guarded UPDATE: a redemption in one settlement is never claimed by another run."""
    deliver(build, scene, scene.p1, scene.alice, [1, 2])
    [first] = build.settle(scene.programme, build.period(-1))
    assert build.settle(scene.programme, build.period(-1)) == []
    assert build.settle(scene.programme, build.period()) == []
    assert build.count(Redemption, Redemption.settlement_id == first) == 2
