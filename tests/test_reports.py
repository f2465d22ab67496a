"""The bureau's dashboard and public disclosure (docs/domain.md, rules 5 and 7, and #privacy).

Dashboard numbers against values computed by hand from the services delivered; who may see it; the
public endpoints (programmes, settlements, providers) disclosing what the policy requires and hiding
drafts; and privacy: after a full scenario no public or anonymous answer carries a recipient's name,
ID number (full or masked) or phone, nor a provider's legal representative or phone. Every test runs
on SQLite and PostgreSQL.
"""

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction

import pytest

from marketplace.auth.models import User
from tests.conftest import error_code
from tests.support.scenario import FullScenario, ProviderRef, RedemptionRef, face_value
from vouchers.models import Voucher

API = "/api/v1"
MEAL_PRICE, BATH_PRICE = 1237, 4999


# --- the dashboard ----------------------------------------------------------------------------------

@dataclass
class DashboardScene:
    programme: int
    meal: str
    bath: str
    social: ProviderRef
    firm: ProviderRef
    delivered: list[RedemptionRef]  # completed, in delivery order
    now: datetime
    today: date
    admin: User


@pytest.fixture
def dash(build) -> DashboardScene:
    """A social organisation and a firm serving two recipients over the last seven weeks, one service
    reversed; vouchers of the last three months issued."""
    meal, bath = build.item(name="助餐", unit="餐"), build.item(name="助浴", unit="次", price=6000)
    programme = build.programme(items=[(meal, MEAL_PRICE, 10), (bath, BATH_PRICE, 2)], reserved_share_percent=30).id
    social = build.provider(items=[meal, bath], enrol_in=[programme], kind="social_organisation")
    firm = build.provider(items=[meal, bath], enrol_in=[programme], kind="enterprise")
    alice, bob = build.recipient(tags=("low_income",)), build.recipient()
    for recipient, meal_by, bath_by in ((alice, social, firm), (bob, firm, social)):
        build.choose(recipient, programme, meal, meal_by)
        build.choose(recipient, programme, bath, bath_by)
    for offset in (-2, -1, 0):
        build.issue(programme, build.period(offset))
    now, today = build.now(), build.today()
    # two services either side of a local midnight five days ago (the same UTC day)
    evening = build.at(today - timedelta(days=5), 23, 30)
    morning = build.at(today - timedelta(days=4), 0, 30)
    plan = [(social, alice, meal, now - timedelta(days=45)), (firm, alice, bath, now - timedelta(days=31)),
            (social, bob, bath, now - timedelta(days=29)), (firm, bob, meal, now - timedelta(days=10)),
            (social, alice, meal, evening), (social, alice, meal, morning),
            (social, alice, meal, now - timedelta(days=1))]
    delivered = [build.redeem(provider, recipient, item, delivered_at=at) for provider, recipient, item, at in plan]
    build.reverse(build.redeem(firm, bob, meal, delivered_at=now - timedelta(days=2)))
    return DashboardScene(programme=programme, meal=meal, bath=bath, social=social, firm=firm, delivered=delivered,
                          now=now, today=today, admin=build.admin())


def dashboard(client, build, programme_id: int, *, by: User):
    return client.get(f"{API}/programmes/{programme_id}/dashboard", headers=build.headers(by))


def test_the_dashboard_numbers_are_those_of_the_services_delivered(build, client, dash):
    response = dashboard(client, build, dash.programme, by=dash.admin)
    assert response.status_code == 200
    body = response.get_json()
    ledger = client.get(f"{API}/programmes/{dash.programme}/ledger", headers=build.headers(dash.admin)).get_json()

    meal_low, meal_default = face_value(MEAL_PRICE, 5), face_value(MEAL_PRICE, 20)
    bath_low, bath_default = face_value(BATH_PRICE, 5), face_value(BATH_PRICE, 20)
    assert (meal_low, meal_default, bath_low, bath_default) == (1175, 989, 4749, 3999)
    assert [r.face_value_fen for r in dash.delivered] == [1175, 4749, 3999, 989, 1175, 1175, 1175]

    assert body["ledger"] == ledger
    # burn rate: what was redeemed over the last 30 days, per day (the 45- and 31-day-old services are out)
    recent = 3999 + 989 + 3 * 1175
    assert body["burn_window_days"] == 30
    assert abs(body["burn_rate_fen_per_day"] - Fraction(recent, 30)) <= Fraction(1, 2)
    unspent = ledger["available_fen"] + ledger["committed_fen"]
    assert body["projected_exhaustion_date"] == (dash.today + timedelta(days=unspent * 30 // recent)).isoformat()

    assert body["redemptions_by_item"] == sorted([
        {"item_code": dash.meal, "count": 5, "face_value_fen": 4 * 1175 + 989},
        {"item_code": dash.bath, "count": 2, "face_value_fen": 4749 + 3999},
    ], key=lambda row: row["item_code"])
    social_fen, firm_fen = 4 * 1175 + 3999, 4749 + 989
    by_provider = {row["provider_id"]: row for row in body["redemptions_by_provider"]}
    assert by_provider == {
        dash.social.id: {"provider_id": dash.social.id, "name": dash.social.name, "kind": "social_organisation",
                         "count": 5, "face_value_fen": social_fen},
        dash.firm.id: {"provider_id": dash.firm.id, "name": dash.firm.name, "kind": "enterprise", "count": 2,
                       "face_value_fen": firm_fen},
    }

    expected_days: dict[str, list[int]] = {}
    for redemption in dash.delivered:
        local = redemption.delivered_at.astimezone(build.zone()).date().isoformat()
        expected_days.setdefault(local, []).append(redemption.face_value_fen)
    assert body["redemptions_by_day"] == [{"date": day, "count": len(values), "face_value_fen": sum(values)}
                                          for day, values in sorted(expected_days.items())]
    evening_day = (dash.today - timedelta(days=5)).isoformat()
    morning_day = (dash.today - timedelta(days=4)).isoformat()
    days = {row["date"]: row for row in body["redemptions_by_day"]}
    assert days[evening_day]["count"] >= 1
    assert days[morning_day]["count"] >= 1

    total = social_fen + firm_fen
    assert body["reserved_share"] == {"target_percent": 30, "actual_percent": round(100 * social_fen / total, 2),
                                      "social_organisation_fen": social_fen, "redeemed_fen": total}
    assert body["reserved_share"]["actual_percent"] == 60.25  # 8699 of 14437 fen


def test_the_dashboard_of_a_programme_with_nothing_spent(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, MEAL_PRICE, 4)], budget_fen=1_000_000).id
    body = dashboard(client, build, programme, by=build.auditor()).get_json()

    assert body["burn_rate_fen_per_day"] == 0
    assert body["projected_exhaustion_date"] is None
    assert body["redemptions_by_item"] == body["redemptions_by_provider"] == body["redemptions_by_day"] == []
    assert body["reserved_share"] == {"target_percent": 30, "actual_percent": None, "social_organisation_fen": 0,
                                      "redeemed_fen": 0}
    assert body["ledger"]["allocated_fen"] == body["ledger"]["available_fen"] == 1_000_000


def test_settled_services_still_count_on_the_dashboard(build, client, dash):
    """Settlement moves money from redeemed to settled; what was delivered does not change."""
    before = dashboard(client, build, dash.programme, by=dash.admin).get_json()
    [*drafts] = build.settle(dash.programme, build.period(-1))
    for settlement_id in drafts:
        build.approve(settlement_id, by=dash.admin)

    after = dashboard(client, build, dash.programme, by=dash.admin).get_json()

    for key in ("redemptions_by_item", "redemptions_by_provider", "redemptions_by_day", "reserved_share",
                "burn_rate_fen_per_day"):
        assert after[key] == before[key], key
    assert after["ledger"]["settled_fen"] > 0


def test_only_staff_and_auditors_see_the_dashboard(build, client, dash):
    assert dashboard(client, build, dash.programme, by=build.auditor()).status_code == 200
    assert dashboard(client, build, dash.programme, by=build.admin(region_code="510131")).status_code == 200
    recipient = build.recipient(login=True)
    for user in (dash.social.user, recipient.user):
        response = dashboard(client, build, dash.programme, by=user)
        assert response.status_code == 403
        assert error_code(response) == "forbidden"
    outsider = dashboard(client, build, dash.programme, by=build.admin(region_code="440300"))
    assert outsider.status_code == 403
    assert error_code(outsider) == "forbidden"
    anonymous = client.get(f"{API}/programmes/{dash.programme}/dashboard")
    assert anonymous.status_code == 401
    assert error_code(anonymous) == "unauthenticated"
    missing = dashboard(client, build, 999_999, by=dash.admin)
    assert missing.status_code == 404
    assert error_code(missing) == "not_found"


# --- public disclosure ------------------------------------------------------------------------------

@pytest.fixture
def full(build) -> FullScenario:
    return build.full_scenario()


def test_public_programmes_disclose_services_budgets_and_vouchers_but_hide_drafts(build, client, full):
    draft = build.programme(items=[(full.meal, 1000, 1)], status="draft", name="尚未发布的草稿项目").id
    closed = build.programme(items=[(full.bath, 4000, 1)], status="closed", budget_fen=123_456, name="已结束的项目").id

    response = client.get(f"{API}/public/programmes")

    assert response.status_code == 200
    items = {item["id"]: item for item in response.get_json()["items"]}
    assert set(items) == {full.programme, closed}
    assert "尚未发布的草稿项目" not in response.get_data(as_text=True)
    public = items[full.programme]
    balances = build.ledger(full.programme)
    vouchers = build.vouchers(Voucher.programme_id == full.programme)
    assert public["name"] == "蒲江县居家养老服务券（全流程）"
    assert public["authority"] == "蒲江县民政局"
    assert public["region_code"] == "510131"
    assert public["status"] == "active"
    assert public["starts_on"] == build.first_day(-12).isoformat()
    assert public["ends_on"] == build.last_day(12).isoformat()
    assert sorted(public["items"], key=lambda item: item["item_code"]) == sorted([
        {"item_code": full.meal, "name": "助餐", "unit": "餐", "standard_price_fen": 1500, "unit_price_fen": 1237,
         "monthly_quota": 6},
        {"item_code": full.bath, "name": "助浴", "unit": "次", "standard_price_fen": 6000, "unit_price_fen": 4999,
         "monthly_quota": 2},
    ], key=lambda item: item["item_code"])
    assert public["budget_allocated_fen"] == 50_000_000 == balances.allocated_fen
    assert public["budget_spent_fen"] == balances.redeemed_fen + balances.settled_fen > 0
    assert public["vouchers_issued"] == len(vouchers)
    assert public["vouchers_redeemed"] == sum(v.status == "redeemed" for v in vouchers) == 9
    assert items[closed]["status"] == "closed"
    assert items[closed]["budget_allocated_fen"] == 123_456
    assert items[closed]["vouchers_issued"] == items[closed]["vouchers_redeemed"] == items[closed][
        "budget_spent_fen"] == 0

    one = client.get(f"{API}/public/programmes/{full.programme}")
    assert one.status_code == 200
    assert one.get_json() == public
    for hidden in (draft, 999_999):
        response = client.get(f"{API}/public/programmes/{hidden}")
        assert response.status_code == 404
        assert error_code(response) == "not_found"


def test_public_voucher_counts_are_recounted_every_five_minutes_and_say_when(app, build):
    """Counting a county's vouchers reads millions of rows: the disclosed counts are remembered for
    VOUCHER_COUNTS_SECONDS per worker and carry the instant they were counted; money is always current."""
    from marketplace.reports import service

    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    counted = datetime.now().astimezone()
    with app.app_context():
        first = service.public_programme(world.programme.id, now=counted)
    build.redeem(world.p1, world.alice, world.meal)
    with app.app_context():
        soon = service.public_programme(world.programme.id, now=counted + timedelta(seconds=299))
        later = service.public_programme(world.programme.id, now=counted + timedelta(seconds=300))
    assert first["vouchers_counted_at"] == soon["vouchers_counted_at"] == counted
    assert (soon["vouchers_issued"], soon["vouchers_redeemed"]) == (first["vouchers_issued"], 0)
    assert soon["budget_spent_fen"] > first["budget_spent_fen"] == 0
    assert later["vouchers_counted_at"] == counted + timedelta(seconds=300)
    assert (later["vouchers_issued"], later["vouchers_redeemed"]) == (first["vouchers_issued"], 1)


def test_public_settlements_show_approved_and_paid_ones_only(build, client, full):
    p1, p2, p3 = full.providers

    response = client.get(f"{API}/public/settlements")

    assert response.status_code == 200
    items = response.get_json()["items"]
    assert {item["provider_id"] for item in items} == {p1.id, p2.id}  # p3's draft is not public
    for item, settlement_id, provider in ((i, s, p) for s, p in ((full.paid, p1), (full.approved, p2))
                                          for i in items if i["provider_id"] == p.id):
        settlement = build.settlement(settlement_id)
        assert item["programme_id"] == full.programme
        assert item["period"] == build.period(-1)
        assert item["provider_name"] == provider.name
        assert (item["net_fen"], item["performance_score"], item["pay_percent"], item["gross_fen"],
                item["redemptions_count"], item["status"]) == (
            settlement.net_fen, settlement.performance_score, settlement.pay_percent, settlement.gross_fen,
            settlement.redemptions_count, settlement.status)
    assert {item["status"] for item in items} == {"paid", "approved"}


def test_public_settlements_filter_by_programme_and_period(build, client, full):
    def providers(**query):
        response = client.get(f"{API}/public/settlements", query_string=query)
        assert response.status_code == 200
        return sorted(item["provider_id"] for item in response.get_json()["items"])

    paid_and_approved = sorted(p.id for p in full.providers[:2])
    assert providers(programme_id=full.programme) == paid_and_approved
    assert providers(period=build.period(-1)) == paid_and_approved
    assert providers(programme_id=full.programme, period=build.period(-1)) == paid_and_approved
    assert providers(period=build.period(-2)) == []
    assert providers(period=build.period()) == []
    assert providers(programme_id=full.programme + 1) == []
    for query in ({"period": "2026-13"}, {"programme_id": "x"}, {"period": "last"}):
        response = client.get(f"{API}/public/settlements", query_string=query)
        assert response.status_code == 422
        assert error_code(response) == "validation_error"


def test_public_providers_are_the_approved_ones_with_their_rating_summary(build, client, full):
    build.provider(items=[full.meal], status="pending", name="尚未审核的服务机构")
    p1, p2, p3 = full.providers

    response = client.get(f"{API}/public/providers", query_string={"per_page": 500})

    assert response.status_code == 200
    body = response.get_json()
    by_id = {item["id"]: item for item in body["items"]}
    assert set(by_id) == {p1.id, p2.id, p3.id}
    assert body["total"] == 3
    assert "尚未审核的服务机构" not in response.get_data(as_text=True)
    # the scenario's phone follow-ups: p1 5, 4, 5; p2 2; p3 3 — m = 19/5 and C = 10
    weight = build.app.config["RANKING_PRIOR_WEIGHT"]
    prior = Fraction(19, 5)
    for provider, scores in ((p1, [5, 4, 5]), (p2, [2]), (p3, [3])):
        rating = by_id[provider.id]["rating"]
        assert rating["count"] == len(scores)
        assert rating["mean"] == pytest.approx(sum(scores) / len(scores))
        assert rating["bayesian"] == pytest.approx(float((weight * prior + sum(scores)) / (weight + len(scores))))
        assert rating["satisfaction_rate"] == pytest.approx(sum(s >= 4 for s in scores) / len(scores))
        assert by_id[provider.id]["name"] == provider.name
        assert "legal_representative" not in by_id[provider.id]
        assert "phone" not in by_id[provider.id]


# --- privacy ----------------------------------------------------------------------------------------

def secrets_of(full: FullScenario) -> dict[str, str]:
    """Every piece of personal data the scenario put in, by what it is."""
    found = {}
    for recipient in full.recipients:
        found[f"name of recipient {recipient.id}"] = recipient.name
        found[f"ID number of recipient {recipient.id}"] = recipient.id_number
        found[f"masked ID number of recipient {recipient.id}"] = recipient.id_number_masked
        found[f"phone of recipient {recipient.id}"] = recipient.phone
    for provider in full.providers:
        found[f"legal representative of provider {provider.id}"] = provider.legal_representative
        found[f"phone of provider {provider.id}"] = provider.phone
        if "-" in provider.phone:
            found[f"phone of provider {provider.id} without dashes"] = provider.phone.replace("-", "")
    return found


def leaks(response, secrets: dict[str, str]) -> list[str]:
    raw = response.get_data()
    haystacks = [raw.decode("utf-8", errors="replace")]
    if response.is_json:
        haystacks.append(json.dumps(response.get_json(), ensure_ascii=False))
        haystacks.append(json.dumps(response.get_json(), ensure_ascii=True))
    return [what for what, value in secrets.items()
            if any(value in haystack or value.lower() in haystack for haystack in haystacks)]


def test_the_scenarios_personal_data_is_where_it_belongs(build, client, full):
    """The search below finds what it looks for: staff see the recipients and providers."""
    admin = build.headers(full.approver)
    r0 = full.recipients[0]
    recipient = client.get(f"{API}/recipients/{r0.id}", headers=admin)
    assert leaks(recipient, secrets_of(full)) == [
        f"name of recipient {r0.id}", f"masked ID number of recipient {r0.id}", f"phone of recipient {r0.id}"]
    provider = client.get(f"{API}/providers/{full.providers[0].id}", headers=admin)
    assert set(leaks(provider, secrets_of(full))) == {
        f"legal representative of provider {full.providers[0].id}", f"phone of provider {full.providers[0].id}"}


def public_gets(app, full: FullScenario) -> list[str]:
    """Every GET in the URL map with its parameters filled from the scenario (ids of real rows)."""
    base = {"programme_id": full.programme, "settlement_id": full.paid, "recipient_id": full.recipients[0].id,
            "redemption_id": full.settled.id, "voucher_id": full.issued_voucher, "complaint_id": 1}
    id_sets = [{**base, "provider_id": provider.id} for provider in full.providers]
    queries = {"/api/v1/rankings": [f"?item_code={full.meal}", f"?item_code={full.bath}&programme_id={full.programme}",
                                    f"?item_code={full.meal}&region_code=510131"],
               "/api/v1/providers": ["", "?per_page=500"], "/api/v1/public/providers": ["", "?per_page=500"],
               "/api/v1/public/settlements": ["", f"?programme_id={full.programme}"]}
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if any(name not in id_sets[0] for name in rule.arguments):
            continue  # a file name (docs assets): not data
        paths = []
        for ids in id_sets if "provider_id" in rule.arguments else id_sets[:1]:  # every provider
            path = rule.rule
            for name in rule.arguments:
                path = path.replace(f"<int:{name}>", str(ids[name]))
            paths.append(path)
        urls.extend(path + query for path in paths for query in queries.get(rule.rule, [""]))
    return urls


def test_no_public_or_anonymous_answer_carries_personal_data(app, build, client, full):
    secrets = secrets_of(full)
    assert all(secrets.values())
    assert len(set(secrets.values())) == len(secrets)
    build.resolve(build.complain(full.providers[1], redemption=full.settled), upheld=True)

    urls = public_gets(app, full)
    answered = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code < 500, url
        if response.status_code == 401:
            continue  # needs a login: not public
        answered[url] = response.status_code
        assert leaks(response, secrets) == [], url

    public = {f"{API}/public/programmes", f"{API}/public/programmes/{full.programme}", f"{API}/public/settlements",
              f"{API}/public/providers", f"{API}/providers", f"{API}/providers/{full.providers[0].id}",
              f"{API}/programmes/{full.programme}/providers", f"{API}/rankings?item_code={full.meal}",
              f"{API}/catalogue/items", f"{API}/openapi.json"}
    assert public <= set(answered), answered
    assert all(answered[url] == 200 for url in public), answered
    assert f"{API}/settlements/{full.paid}" not in answered
    assert f"{API}/recipients/{full.recipients[0].id}" not in answered


def one_meal_programme(build, *, budget_fen: int):
    """One recipient with one meal voucher this month (989 fen), redeemed just now."""
    meal = build.item()
    programme = build.programme(items=[(meal, MEAL_PRICE, 1)], budget_fen=budget_fen).id
    provider, recipient = build.provider(items=[meal], enrol_in=[programme]), build.recipient()
    build.choose(recipient, programme, meal, provider)
    build.issue(programme, build.period())
    build.redeem(provider, recipient, meal)
    return programme


def test_the_projected_date_is_exact_when_the_money_lasts_a_whole_number_of_days(build, client):
    """16,813 fen left at 989 fen per 30 days lasts exactly 510 days (no floating-point day lost)."""
    programme = one_meal_programme(build, budget_fen=16_813 + 989)
    admin = build.admin()

    body = dashboard(client, build, programme, by=admin).get_json()

    assert body["ledger"]["available_fen"] + body["ledger"]["committed_fen"] == 16_813
    assert 16_813 * 30 == 510 * 989
    assert body["projected_exhaustion_date"] == (build.today() + timedelta(days=510)).isoformat()


def test_a_large_budget_barely_touched_still_has_a_dashboard(build, client):
    """¥3,000,000 and one 9.89 yuan meal in the last 30 days: the money outlasts any calendar."""
    programme = one_meal_programme(build, budget_fen=300_000_000)

    response = dashboard(client, build, programme, by=build.auditor())

    assert response.status_code == 200
    projected = response.get_json()["projected_exhaustion_date"]
    assert projected is not None
    assert date.fromisoformat(projected) > build.last_day(12)
