"""Voucher issuance, revocation, expiry and who sees which voucher (docs/domain.md, rule 1 and #money).

Monthly issuance gives every eligible recipient the quota of every item, all or nothing, once per
period; supplementary issues follow the same budget rule; revocation, expiry, closing a programme and
a recipient dying or moving release the commitment. Every test runs on SQLite and PostgreSQL, and
checks money in the ledger, not only status codes.
"""

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.audit.models import AuditEvent
from marketplace.programmes.models import JournalEntry
from tests.conftest import error_code
from tests.support.dates import first_of_month, last_of_month, period_days, years_before
from tests.support.scenario import BATH_PRICE, BATH_QUOTA, MEAL_PRICE, MEAL_QUOTA
from vouchers.models import Issuance, Voucher
from vouchers.serials import voucher_id_for
from vouchers.service.issuance import copay_fen

API = "/api/v1"


def ceil_percent(price: int, percent: int) -> int:
    """The co-payment by the rule: percent of the price, rounded up to the whole fen."""
    return -(-price * percent // 100)


def face(price: int, percent: int) -> int:
    return price - ceil_percent(price, percent)


def issue(client, headers, programme_id: int, period: str):
    return client.post(f"{API}/programmes/{programme_id}/issuance", json={"period": period}, headers=headers)


def issued(client, headers, programme_id: int, period: str) -> dict:
    response = issue(client, headers, programme_id, period)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def listed(client, headers, **query) -> dict:
    response = client.get(f"{API}/vouchers", query_string={"per_page": 500, **query}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ledger_of(client, headers, programme_id: int) -> dict:
    response = client.get(f"{API}/programmes/{programme_id}/ledger", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def reconciled(client, headers, programme_id: int) -> bool:
    response = client.get(f"{API}/programmes/{programme_id}/reconciliation", headers=headers)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["ok"], [check for check in body["checks"] if not check["ok"]]
    return body["ok"]


def world_total(world_alice_percent=5, world_bob_percent=20) -> int:
    """What one month of the standard world commits: alice (low_income, 5 %) and bob (default, 20 %)."""
    return sum(MEAL_QUOTA * face(MEAL_PRICE, percent) + BATH_QUOTA * face(BATH_PRICE, percent)
               for percent in (world_alice_percent, world_bob_percent))


def recipients_with_vouchers(build, programme_id: int) -> set[int]:
    return {voucher.recipient_id for voucher in build.vouchers(Voucher.programme_id == programme_id)}


# --- monthly issuance -----------------------------------------------------------------------------

def test_monthly_issuance_gives_each_eligible_recipient_the_quota_of_every_item(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    period = build.period()

    body = issued(client, headers, world.programme.id, period)

    assert body["period"] == period
    assert body["recipients"] == 2
    assert body["vouchers"] == 2 * (MEAL_QUOTA + BATH_QUOTA)
    assert body["committed_fen"] == world_total() == 25_900
    vouchers = build.vouchers(Voucher.programme_id == world.programme.id)
    for recipient in (world.alice, world.bob):
        mine = [voucher for voucher in vouchers if voucher.recipient_id == recipient.id]
        assert sorted(voucher.item_code for voucher in mine) == sorted(
            [world.meal] * MEAL_QUOTA + [world.bath] * BATH_QUOTA)
    first, last = period_days(period)
    assert {(voucher.valid_from, voucher.valid_until, voucher.status) for voucher in vouchers} == {
        (first, last, "issued")}


def test_issued_vouchers_are_listed_with_serial_values_and_validity(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())

    items = listed(client, headers, recipient_id=world.alice.id)["items"]

    assert len(items) == MEAL_QUOTA + BATH_QUOTA
    meal = next(item for item in items if item["item_code"] == world.meal)
    assert meal["face_value_fen"] == 1140
    assert meal["copay_fen"] == 60
    assert meal["status"] == "issued"
    assert voucher_id_for(meal["serial"]) == meal["id"]
    assert {"serial", "item_code", "face_value_fen", "copay_fen", "valid_from", "valid_until", "status"} <= set(meal)


def test_issuance_commits_the_sum_of_face_values_and_reconciles(build, client):
    world = build.world(budget_fen=1_000_000)
    headers = build.headers(world.admin)

    body = issued(client, headers, world.programme.id, build.period())

    balances = ledger_of(client, headers, world.programme.id)
    assert balances["committed_fen"] == body["committed_fen"] == build.issued_face_value(world.programme)
    assert balances["available_fen"] == 1_000_000 - body["committed_fen"]
    assert balances["allocated_fen"] == 1_000_000
    assert balances["redeemed_fen"] == balances["released_fen"] == 0
    assert reconciled(client, headers, world.programme.id)


def test_issuance_is_recorded_in_the_audit_trail(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())

    response = client.get(f"{API}/audit", query_string={"entity": "programme", "entity_id": world.programme.id},
                          headers=headers)

    events = [event for event in response.get_json()["items"] if event["action"] == "vouchers.issued_monthly"]
    assert len(events) == 1
    assert events[0]["data"]["vouchers"] == 12
    assert events[0]["data"]["committed_fen"] == 25_900


def test_only_active_recipients_living_inside_the_programme_region_are_issued(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], region_code="510100", min_age=None,
                                copay={"default": 0})
    inside = [build.recipient(region_code="510131"), build.recipient(region_code="510104")]
    outside = [build.recipient(region_code="510200"), build.recipient(region_code="520102"),
               build.recipient(region_code="510131", status="moved"),
               build.recipient(region_code="510131", status="deceased")]
    headers = build.headers(build.system_admin)

    body = issued(client, headers, programme.id, build.period())

    assert body["recipients"] == 2
    assert body["vouchers"] == 2
    assert recipients_with_vouchers(build, programme.id) == {recipient.id for recipient in inside}
    assert not {recipient.id for recipient in outside} & recipients_with_vouchers(build, programme.id)


def test_a_county_programme_does_not_issue_to_the_rest_of_the_city(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], region_code="510131", min_age=None)
    here = build.recipient(region_code="510131")
    build.recipient(region_code="510132")
    build.recipient(region_code="510100")

    issued(client, build.headers(build.system_admin), programme.id, build.period())

    assert recipients_with_vouchers(build, programme.id) == {here.id}


def test_age_is_reckoned_on_the_first_day_of_the_period(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], min_age=60)
    period = build.period()
    first_day = period_days(period)[0]
    sixty_on_the_first = build.recipient(birth=years_before(first_day, 60))
    sixty_on_the_second = build.recipient(birth=years_before(first_day, 60) + timedelta(days=1))
    well_over = build.recipient(birth=years_before(first_day, 85))
    build.recipient(birth=years_before(first_day, 59))
    headers = build.headers(build.system_admin)

    issued(client, headers, programme.id, period)

    assert recipients_with_vouchers(build, programme.id) == {sixty_on_the_first.id, well_over.id}

    # A month later the one born on the second has turned 60 before the first day: now eligible.
    next_period = build.period(1)
    issued(client, headers, programme.id, next_period)
    next_first = period_days(next_period)[0]
    next_month = {voucher.recipient_id for voucher in build.vouchers(Voucher.programme_id == programme.id,
                                                                      Voucher.valid_from >= next_first)}
    assert next_month == {sixty_on_the_first.id, sixty_on_the_second.id, well_over.id}


def test_a_programme_without_a_minimum_age_issues_to_any_adult_or_child(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], min_age=None)
    young = build.recipient(birth=date(2010, 6, 1))

    issued(client, build.headers(build.system_admin), programme.id, build.period())

    assert recipients_with_vouchers(build, programme.id) == {young.id}


def test_tags_any_requires_at_least_one_of_the_listed_tags(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], tags_any=("disabled", "low_income"))
    disabled = build.recipient(tags=("disabled",))
    low_income_alone = build.recipient(tags=("low_income", "living_alone"))
    both = build.recipient(tags=("disabled", "low_income"))
    build.recipient(tags=("living_alone",))
    build.recipient(tags=("advanced_age", "extreme_poverty"))
    build.recipient()

    body = issued(client, build.headers(build.system_admin), programme.id, build.period())

    assert body["recipients"] == 3
    assert recipients_with_vouchers(build, programme.id) == {disabled.id, low_income_alone.id, both.id}


# --- co-payment arithmetic ------------------------------------------------------------------------

COPAY_RULES = {"default": 20, "low_income": 5, "disabled": 10, "extreme_poverty": 0, "advanced_age": 30}
# tags → the percent the rule gives: the lowest among the recipient's priced tags, else the default.
COPAY_CASES = [
    ((), 20),
    (("living_alone",), 20),  # a tag the programme does not price
    (("low_income",), 5),
    (("disabled", "low_income"), 5),
    (("disabled", "living_alone"), 10),
    (("advanced_age",), 30),  # the only priced tag, though above the default
    (("advanced_age", "low_income"), 5),
    (("extreme_poverty",), 0),
    (("extreme_poverty", "advanced_age", "disabled"), 0),
]


def test_copay_is_the_lowest_tag_percent_rounded_up_to_the_fen_and_face_value_the_rest(build, client):
    odd, dear = build.item(price=1001), build.item(price=1999)
    programme = build.programme(items=[(odd, 1001, 1), (dear, 1999, 1)], copay=COPAY_RULES, min_age=None)
    people = [(build.recipient(tags=tags), percent) for tags, percent in COPAY_CASES]
    headers = build.headers(build.system_admin)

    body = issued(client, headers, programme.id, build.period())

    expected_total = 0
    items = listed(client, headers, programme_id=programme.id)["items"]
    for recipient, percent in people:
        mine = {item["item_code"]: item for item in items if item["recipient_id"] == recipient.id}
        for code, price in ((odd, 1001), (dear, 1999)):
            assert mine[code]["copay_fen"] == ceil_percent(price, percent), (recipient.tags, code)
            assert mine[code]["face_value_fen"] == price - ceil_percent(price, percent)
            expected_total += mine[code]["face_value_fen"]
    assert body["committed_fen"] == expected_total


@pytest.mark.parametrize(("price", "percent", "copay", "face_value"), [
    (1001, 5, 51, 950),  # 50.05 fen → 51
    (1001, 20, 201, 800),  # 200.2 → 201
    (1001, 30, 301, 700),  # 300.3 → 301
    (1999, 5, 100, 1899),  # 99.95 → 100
    (1999, 10, 200, 1799),  # 199.9 → 200
    (1000, 5, 50, 950),  # exact: no rounding
    (1001, 0, 0, 1001),
    (1, 1, 1, 0),  # one fen at 1 %: the recipient pays the fen
])
def test_copay_rounds_up_to_the_whole_fen(price, percent, copay, face_value):
    assert copay_fen(price, percent) == copay
    assert price - copay_fen(price, percent) == face_value


@given(st.integers(min_value=1, max_value=1_000_000), st.integers(min_value=0, max_value=100))
def test_copay_is_never_less_than_the_exact_share_nor_a_fen_more(price, percent):
    copay = copay_fen(price, percent)
    assert copay * 100 >= price * percent
    assert (copay - 1) * 100 < price * percent
    assert 0 <= copay <= price


def test_odd_price_at_five_percent_issues_51_fen_copay_and_950_face_value(build, client):
    odd = build.item(price=1001)
    programme = build.programme(items=[(odd, 1001, 3)], copay={"default": 20, "low_income": 5}, min_age=None)
    poor = build.recipient(tags=("low_income",))
    headers = build.headers(build.system_admin)

    body = issued(client, headers, programme.id, build.period())

    assert [(v.copay_fen, v.face_value_fen) for v in build.vouchers(Voucher.recipient_id == poor.id)] == [(51, 950)] * 3
    assert body["committed_fen"] == 3 * 950
    assert ledger_of(client, headers, programme.id)["committed_fen"] == 2850


def test_supplementary_and_monthly_issues_compute_the_same_copay(build, client):
    odd, dear = build.item(price=1001), build.item(price=1999)
    programme = build.programme(items=[(odd, 1001, 1), (dear, 1999, 1)], copay=COPAY_RULES, min_age=None)
    people = [build.recipient(tags=tags) for tags, _percent in COPAY_CASES]
    headers = build.headers(build.system_admin)
    issued(client, headers, programme.id, build.period())

    for recipient in people:
        for code in (odd, dear):
            response = client.post(f"{API}/vouchers", json={"programme_id": programme.id, "recipient_id": recipient.id,
                                                            "item_code": code, "count": 1}, headers=headers)
            assert response.status_code == 201, response.get_json()
            extra = response.get_json()["items"][0]
            monthly = build.vouchers(Voucher.recipient_id == recipient.id, Voucher.item_code == code)[0]
            assert (extra["copay_fen"], extra["face_value_fen"]) == (monthly.copay_fen, monthly.face_value_fen)


def test_a_recipient_who_pays_the_whole_price_gets_no_voucher_and_commits_nothing(build, client):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 2)], copay={"default": 100, "low_income": 0}, min_age=None)
    build.recipient()
    poor = build.recipient(tags=("low_income",))

    body = issued(client, build.headers(build.system_admin), programme.id, build.period())

    assert body["vouchers"] == 2
    assert body["recipients"] == 1
    assert body["committed_fen"] == 2000
    assert recipients_with_vouchers(build, programme.id) == {poor.id}


# --- validity -------------------------------------------------------------------------------------

def test_validity_is_the_whole_month(build, client):
    world = build.world()
    period = build.period(1)

    issued(client, build.headers(world.admin), world.programme.id, period)

    first, last = period_days(period)
    assert {(v.valid_from, v.valid_until) for v in build.vouchers()} == {(first, last)}


def test_validity_is_clipped_to_the_programme_dates(build, client):
    today = build.today()
    starts_on = first_of_month(today, -1) + timedelta(days=9)  # the 10th of last month
    ends_on = first_of_month(today, 1) + timedelta(days=19)  # the 20th of next month
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], starts_on=starts_on, ends_on=ends_on, min_age=None)
    recipient = build.recipient()
    headers = build.headers(build.system_admin)

    for offset in (-1, 0, 1):
        issued(client, headers, programme.id, build.period(offset))

    validity = [(v.valid_from, v.valid_until) for v in build.vouchers(Voucher.recipient_id == recipient.id)]
    assert validity == [
        (starts_on, last_of_month(starts_on)),
        (first_of_month(today), last_of_month(today)),
        (first_of_month(today, 1), ends_on),
    ]


def test_february_vouchers_end_on_the_last_day_of_february(build, client):
    year = build.today().year
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], starts_on=date(year - 1, 1, 1), ends_on=date(year + 1, 12, 31),
                                min_age=None)
    build.recipient()
    headers = build.headers(build.system_admin)

    issued(client, headers, programme.id, f"{year}-02")

    expected = date(year, 3, 1) - timedelta(days=1)
    assert [v.valid_until for v in build.vouchers()] == [expected]


# --- all or nothing -------------------------------------------------------------------------------

@pytest.mark.parametrize("short_by", [1, 15_900])
def test_a_budget_that_cannot_cover_the_run_refuses_it_whole_with_the_exact_shortfall(build, client, short_by):
    world = build.world(budget_fen=world_total() - short_by)
    headers = build.headers(world.admin)
    before = build.footprint(world.programme)

    response = issue(client, headers, world.programme.id, build.period())

    assert response.status_code == 409
    assert error_code(response) == "budget_exceeded"
    details = response.get_json()["error"]["details"]
    assert details["shortfall_fen"] == short_by
    assert details["required_fen"] == world_total()
    assert details["available_fen"] == world_total() - short_by
    assert build.footprint(world.programme) == before
    assert build.count(Voucher) == 0
    assert build.count(Issuance) == 0
    balances = ledger_of(client, headers, world.programme.id)
    assert balances["committed_fen"] == 0
    assert balances["available_fen"] == world_total() - short_by
    assert reconciled(client, headers, world.programme.id)


def test_after_a_refused_run_topping_up_the_budget_lets_the_same_period_issue_to_the_last_fen(build, client):
    world = build.world(budget_fen=world_total() - 1)
    headers = build.headers(world.admin)
    assert issue(client, headers, world.programme.id, build.period()).status_code == 409

    build.add_budget(world.programme.id, 1)
    body = issued(client, headers, world.programme.id, build.period())

    assert body["committed_fen"] == world_total()
    assert body.get("already_issued") in (None, False)
    assert ledger_of(client, headers, world.programme.id)["available_fen"] == 0
    assert reconciled(client, headers, world.programme.id)


def test_a_budget_exactly_equal_to_the_run_is_enough(build, client):
    world = build.world(budget_fen=world_total())
    headers = build.headers(world.admin)

    body = issued(client, headers, world.programme.id, build.period())

    assert body["committed_fen"] == world_total()
    assert ledger_of(client, headers, world.programme.id)["available_fen"] == 0


# --- once per period ------------------------------------------------------------------------------

def test_a_second_run_for_the_same_period_issues_nothing_new_and_commits_nothing(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    period = build.period()
    issued(client, headers, world.programme.id, period)
    build.recipient(name="新来的")  # enrolled after the first run: the period is done all the same
    before = build.footprint(world.programme)
    balances = ledger_of(client, headers, world.programme.id)

    body = issued(client, headers, world.programme.id, period)

    assert body["already_issued"] is True
    assert (body["recipients"], body["vouchers"], body["committed_fen"]) == (0, 0, 0)
    assert build.footprint(world.programme) == before
    assert ledger_of(client, headers, world.programme.id) == balances


def test_each_period_is_issued_once_and_independently(build, client):
    world = build.world()
    headers = build.headers(world.admin)

    first = issued(client, headers, world.programme.id, build.period())
    second = issued(client, headers, world.programme.id, build.period(1))

    assert first["vouchers"] == second["vouchers"] == 12
    assert build.count(Issuance) == 2
    assert ledger_of(client, headers, world.programme.id)["committed_fen"] == 2 * world_total()


# --- refusals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["draft", "closed"])
def test_a_programme_that_is_not_active_issues_nothing(build, client, status):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], status=status, min_age=None)
    build.recipient()
    headers = build.headers(build.system_admin)
    before = build.footprint(programme)

    response = issue(client, headers, programme.id, build.period())

    assert response.status_code == 409
    assert error_code(response) == "programme_not_active"
    assert build.footprint(programme) == before


@pytest.mark.parametrize("offset", [-13, -24, 13, 30])
def test_a_period_outside_the_programme_dates_is_refused(build, client, offset):
    world = build.world()
    response = issue(client, build.headers(world.admin), world.programme.id, build.period(offset))

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "period" in response.get_json()["error"]["details"]["fields"]
    assert build.count(Voucher) == 0
    assert build.count(Issuance) == 0


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "2026-1", "26-01", "2026-01-01", "", "january", 202601,
                                    None])
def test_a_malformed_period_is_a_validation_error(build, client, period):
    world = build.world()
    response = client.post(f"{API}/programmes/{world.programme.id}/issuance", json={"period": period},
                           headers=build.headers(world.admin))

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert "period" in response.get_json()["error"]["details"]["fields"]


def test_issuance_needs_a_period_and_nothing_else(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    url = f"{API}/programmes/{world.programme.id}/issuance"

    assert client.post(url, json={}, headers=headers).status_code == 422
    assert client.post(url, json={"period": build.period(), "budget": 1}, headers=headers).status_code == 422
    assert build.count(Voucher) == 0


def test_issuing_for_an_unknown_programme_is_not_found(build, client):
    response = issue(client, build.headers(build.system_admin), 999_999, build.period())
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["auditor", "provider", "recipient"])
def test_only_admins_issue(build, client, role):
    world = build.world()
    user = {"auditor": lambda: build.auditor(), "provider": lambda: world.p1.user,
            "recipient": lambda: world.alice.user}[role]()

    response = issue(client, build.headers(user), world.programme.id, build.period())

    assert response.status_code == 403
    assert build.count(Voucher) == 0


def test_issuing_anonymously_is_unauthenticated(build, client):
    world = build.world()
    response = client.post(f"{API}/programmes/{world.programme.id}/issuance", json={"period": build.period()})
    assert response.status_code == 401


def test_a_region_scoped_admin_cannot_issue_for_another_region(build, client):
    meal = build.item()
    elsewhere = build.programme(items=[(meal, 1000, 1)], region_code="510132", min_age=None)
    build.recipient(region_code="510132")
    county_admin = build.admin(region_code="510131")

    response = issue(client, build.headers(county_admin), elsewhere.id, build.period())

    assert response.status_code == 403
    assert build.count(Voucher) == 0


# --- the CLI --------------------------------------------------------------------------------------

def test_the_issue_vouchers_command_issues_a_month_once(build, runner):
    world = build.world()
    period = build.period()

    first = runner.invoke(args=["issue-vouchers", str(world.programme.id), period])
    again = runner.invoke(args=["issue-vouchers", str(world.programme.id), period])

    assert first.exit_code == 0, first.output
    assert f"issued 12 vouchers to 2 recipients, committing {world_total()} fen" in first.output
    assert again.exit_code == 0, again.output
    assert "nothing new" in again.output
    assert build.count(Voucher) == 12
    assert build.ledger(world.programme).committed_fen == world_total()
    assert build.failing_checks(world.programme) == []


def test_the_issue_vouchers_command_refuses_an_uncovered_run_and_writes_nothing(build, runner):
    world = build.world(budget_fen=world_total() - 7)
    before = build.footprint(world.programme)

    result = runner.invoke(args=["issue-vouchers", str(world.programme.id), build.period()])

    assert result.exit_code == 1
    assert "budget" in result.output
    assert "7" in result.output
    assert build.footprint(world.programme) == before


@pytest.mark.parametrize(("args", "message"), [
    (["999999", "2026-01"], "No programme 999999"),
    (["{programme}", "2026-13"], "YYYY-MM"),
])
def test_the_issue_vouchers_command_reports_bad_arguments(build, runner, args, message):
    world = build.world()
    result = runner.invoke(args=["issue-vouchers", *(arg.format(programme=world.programme.id) for arg in args)])

    assert result.exit_code != 0
    assert message in result.output
    assert build.count(Voucher) == 0


def test_the_expire_vouchers_command_expires_past_vouchers_of_one_or_every_programme(build, runner):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.issue(world.programme, build.period())
    past = build.vouchers(Voucher.valid_until < build.today())

    result = runner.invoke(args=["expire-vouchers", str(world.programme.id)])
    again = runner.invoke(args=["expire-vouchers"])

    assert result.exit_code == 0, result.output
    released = sum(voucher.face_value_fen for voucher in past)
    assert f"programme {world.programme.id}: expired {len(past)}, released {released} fen" in result.output
    assert again.exit_code == 0, again.output
    assert f"programme {world.programme.id}: expired 0, released 0 fen" in again.output
    assert {v.status for v in build.vouchers(Voucher.valid_until < build.today())} == {"expired"}
    assert build.ledger(world.programme).committed_fen == world_total()
    assert build.failing_checks(world.programme) == []


# --- supplementary issues -------------------------------------------------------------------------

def supplement(client, headers, **body):
    return client.post(f"{API}/vouchers", json=body, headers=headers)


def test_a_supplementary_issue_gives_one_recipient_extra_vouchers_of_this_month(build, client):
    world = build.world()
    headers = build.headers(world.admin)

    response = supplement(client, headers, programme_id=world.programme.id, recipient_id=world.alice.id,
                          item_code=world.bath, count=3)

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["total"] == len(body["items"]) == 3
    first, last = period_days(build.period())
    for voucher in body["items"]:
        assert voucher["recipient_id"] == world.alice.id
        assert voucher["item_code"] == world.bath
        assert (voucher["copay_fen"], voucher["face_value_fen"]) == (250, 4750)
        assert (voucher["valid_from"], voucher["valid_until"], voucher["status"]) == (
            first.isoformat(), last.isoformat(), "issued")
        assert voucher_id_for(voucher["serial"]) == voucher["id"]
    assert ledger_of(client, headers, world.programme.id)["committed_fen"] == 3 * 4750
    assert reconciled(client, headers, world.programme.id)


def test_supplementary_issues_are_not_limited_to_one_per_period(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())

    for _ in range(2):
        response = supplement(client, headers, programme_id=world.programme.id, recipient_id=world.bob.id,
                              item_code=world.meal, count=1)
        assert response.status_code == 201

    assert len(build.vouchers(Voucher.recipient_id == world.bob.id, Voucher.item_code == world.meal)) == MEAL_QUOTA + 2
    assert ledger_of(client, headers, world.programme.id)["committed_fen"] == world_total() + 2 * 960


def test_a_supplementary_issue_beyond_the_budget_is_refused_whole_with_the_exact_shortfall(build, client):
    world = build.world(budget_fen=3 * 4750 - 1)
    headers = build.headers(world.admin)
    before = build.footprint(world.programme)

    response = supplement(client, headers, programme_id=world.programme.id, recipient_id=world.alice.id,
                          item_code=world.bath, count=3)

    assert response.status_code == 409
    assert error_code(response) == "budget_exceeded"
    assert response.get_json()["error"]["details"]["shortfall_fen"] == 1
    assert build.footprint(world.programme) == before
    assert ledger_of(client, headers, world.programme.id)["available_fen"] == 3 * 4750 - 1
    # Two of them fit.
    assert supplement(client, headers, programme_id=world.programme.id, recipient_id=world.alice.id,
                      item_code=world.bath, count=2).status_code == 201


@pytest.mark.parametrize("status", ["draft", "closed"])
def test_a_supplementary_issue_needs_an_active_programme(build, client, status):
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], status=status, min_age=None)
    recipient = build.recipient()

    response = supplement(client, build.headers(build.system_admin), programme_id=programme.id,
                          recipient_id=recipient.id, item_code=meal, count=1)

    assert response.status_code == 409
    assert error_code(response) == "programme_not_active"
    assert build.count(Voucher) == 0


def test_a_supplementary_issue_of_an_item_the_programme_does_not_buy_is_refused(build, client):
    world = build.world()
    other = build.item()

    response = supplement(client, build.headers(world.admin), programme_id=world.programme.id,
                          recipient_id=world.alice.id, item_code=other, count=1)

    assert response.status_code == 422
    assert "item_code" in response.get_json()["error"]["details"]["fields"]
    assert build.count(Voucher) == 0


@pytest.mark.parametrize(("status", "region_code"), [("moved", "510131"), ("deceased", "510131"),
                                                      ("active", "510132")])
def test_a_supplementary_issue_to_someone_not_active_in_the_region_is_refused(build, client, status, region_code):
    world = build.world()
    recipient = build.recipient(status=status, region_code=region_code)

    response = supplement(client, build.headers(world.admin), programme_id=world.programme.id,
                          recipient_id=recipient.id, item_code=world.meal, count=1)

    assert response.status_code == 422
    assert "recipient_id" in response.get_json()["error"]["details"]["fields"]
    assert build.count(Voucher) == 0


@pytest.mark.parametrize("body", [
    {"count": 0}, {"count": 101}, {"count": "2"}, {"count": 1.5}, {"count": None}, {"item_code": ""},
    {"programme_id": 0}, {"recipient_id": -1}, {"unexpected": 1},
])
def test_a_malformed_supplementary_issue_is_a_validation_error(build, client, body):
    world = build.world()
    payload = {"programme_id": world.programme.id, "recipient_id": world.alice.id, "item_code": world.meal, "count": 1,
               **body}

    response = supplement(client, build.headers(world.admin), **payload)

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert build.count(Voucher) == 0


def test_a_supplementary_issue_to_unknown_programmes_or_recipients_is_not_found(build, client):
    world = build.world()
    headers = build.headers(world.admin)

    assert supplement(client, headers, programme_id=999_999, recipient_id=world.alice.id, item_code=world.meal,
                      count=1).status_code == 404
    assert supplement(client, headers, programme_id=world.programme.id, recipient_id=999_999, item_code=world.meal,
                      count=1).status_code == 404


@pytest.mark.parametrize("role", ["auditor", "provider", "recipient"])
def test_only_admins_make_supplementary_issues(build, client, role):
    world = build.world()
    user = {"auditor": lambda: build.auditor(), "provider": lambda: world.p1.user,
            "recipient": lambda: world.alice.user}[role]()

    response = supplement(client, build.headers(user), programme_id=world.programme.id, recipient_id=world.alice.id,
                          item_code=world.meal, count=1)

    assert response.status_code == 403
    assert build.count(Voucher) == 0


# --- revocation -----------------------------------------------------------------------------------

def revoke(client, headers, voucher_id: int, reason: str = "重复发放"):
    return client.post(f"{API}/vouchers/{voucher_id}/revoke", json={"reason": reason}, headers=headers)


def test_revoking_an_issued_voucher_releases_its_value(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.bath)[0]

    response = revoke(client, headers, voucher.id, "重复发放")

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "revoked"
    assert response.get_json()["status_reason"] == "重复发放"
    assert build.voucher(voucher.id).status == "revoked"
    balances = ledger_of(client, headers, world.programme.id)
    assert balances["committed_fen"] == world_total() - 4750
    assert balances["released_fen"] == 4750
    assert balances["available_fen"] == 10_000_000 - world_total() + 4750
    assert reconciled(client, headers, world.programme.id)
    assert build.count(AuditEvent, AuditEvent.action == "voucher.revoked",
                       AuditEvent.entity_id == str(voucher.id)) == 1


def test_a_voucher_that_is_not_issued_cannot_be_revoked(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    build.choose_all(world, world.p1, world.alice)
    [voucher_id] = build.supplementary(world.programme, world.alice.id, world.meal, 1)
    [redeemed_id] = build.supplementary(world.programme, world.alice.id, world.meal, 1)
    build.redeem(world.p1, voucher=redeemed_id)
    assert revoke(client, headers, voucher_id).status_code == 200
    balances = ledger_of(client, headers, world.programme.id)

    twice = revoke(client, headers, voucher_id)
    used = revoke(client, headers, redeemed_id)

    for response in (twice, used):
        assert response.status_code == 409
        assert error_code(response) == "invalid_transition"
    assert build.voucher(redeemed_id).status == "redeemed"
    assert ledger_of(client, headers, world.programme.id) == balances
    assert reconciled(client, headers, world.programme.id)


def test_revoking_needs_a_reason_an_admin_and_a_voucher(build, client):
    world = build.world()
    [voucher_id] = build.supplementary(world.programme, world.alice.id, world.meal, 1)
    headers = build.headers(world.admin)

    no_reason = client.post(f"{API}/vouchers/{voucher_id}/revoke", json={}, headers=headers)
    by_recipient = revoke(client, build.headers(world.alice.user), voucher_id)
    by_provider = revoke(client, build.headers(world.p1.user), voucher_id)
    missing = revoke(client, headers, 999_999)

    assert no_reason.status_code == 422
    assert by_recipient.status_code == by_provider.status_code == 403
    assert missing.status_code == 404
    assert build.voucher(voucher_id).status == "issued"


# --- expiry ---------------------------------------------------------------------------------------

def test_expiry_ends_only_issued_vouchers_past_their_validity_and_releases_them_exactly(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period(-1))
    issued(client, headers, world.programme.id, build.period())
    build.choose_all(world, world.p1, world.alice)
    last_month = first_of_month(build.today(), -1) + timedelta(days=14)
    used = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.valid_until < build.today())[0]
    build.redeem(world.p1, voucher=used.id, now=build.at(last_month))
    past = [v for v in build.vouchers(Voucher.valid_until < build.today()) if v.id != used.id]

    response = client.post(f"{API}/programmes/{world.programme.id}/expire", headers=headers)

    assert response.status_code == 200, response.get_json()
    released = sum(voucher.face_value_fen for voucher in past)
    assert len(past) == 2 * (MEAL_QUOTA + BATH_QUOTA) - 1
    assert response.get_json() == {"expired": len(past), "released_fen": released}
    assert released == world_total() - used.face_value_fen
    assert build.voucher(used.id).status == "redeemed"
    assert {v.status for v in build.vouchers(Voucher.id.in_([v.id for v in past]))} == {"expired"}
    assert {v.status for v in build.vouchers(Voucher.valid_until >= build.today())} == {"issued"}
    balances = ledger_of(client, headers, world.programme.id)
    assert balances["committed_fen"] == world_total()
    assert balances["released_fen"] == released
    assert balances["redeemed_fen"] == used.face_value_fen
    assert reconciled(client, headers, world.programme.id)


def test_expiring_again_finds_nothing(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period(-1))
    client.post(f"{API}/programmes/{world.programme.id}/expire", headers=headers)
    before = build.footprint(world.programme)

    response = client.post(f"{API}/programmes/{world.programme.id}/expire", headers=headers)

    assert response.get_json() == {"expired": 0, "released_fen": 0}
    assert build.footprint(world.programme) == before


def test_vouchers_valid_today_do_not_expire(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())
    issued(client, headers, world.programme.id, build.period(1))

    response = client.post(f"{API}/programmes/{world.programme.id}/expire", headers=headers)

    assert response.get_json() == {"expired": 0, "released_fen": 0}
    assert {v.status for v in build.vouchers()} == {"issued"}


def test_expiry_touches_only_the_programme_it_is_asked_about(build, client):
    world = build.world()
    other = build.programme(items=[(world.meal, 1000, 1)])
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period(-1))
    issued(client, headers, other.id, build.period(-1))

    client.post(f"{API}/programmes/{world.programme.id}/expire", headers=headers)

    assert {v.status for v in build.vouchers(Voucher.programme_id == other.id)} == {"issued"}


def test_only_admins_expire_vouchers(build, client):
    world = build.world()
    build.issue(world.programme, build.period(-1))
    for user in (build.auditor(), world.p1.user, world.alice.user):
        response = client.post(f"{API}/programmes/{world.programme.id}/expire", headers=build.headers(user))
        assert response.status_code == 403
    assert {v.status for v in build.vouchers()} == {"issued"}


# --- closing a programme; a recipient dies or moves -----------------------------------------------

def test_closing_a_programme_revokes_its_open_vouchers_and_releases_the_commitment(build, client):
    world = build.world()
    other = build.programme(items=[(world.meal, 1000, 1)])
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())
    issued(client, headers, other.id, build.period())
    build.choose_all(world, world.p1, world.alice)
    used = build.redeem(world.p1, world.alice, world.bath)

    response = client.post(f"{API}/programmes/{world.programme.id}/close", headers=headers)

    assert response.status_code == 200, response.get_json()
    mine = build.vouchers(Voucher.programme_id == world.programme.id)
    assert {v.status for v in mine if v.id != used.voucher_id} == {"revoked"}
    assert {v.status_reason for v in mine if v.id != used.voucher_id} == {"programme closed"}
    assert build.voucher(used.voucher_id).status == "redeemed"
    balances = ledger_of(client, headers, world.programme.id)
    assert balances["committed_fen"] == 0
    assert balances["released_fen"] == world_total() - 4750
    assert balances["redeemed_fen"] == 4750
    assert reconciled(client, headers, world.programme.id)
    assert {v.status for v in build.vouchers(Voucher.programme_id == other.id)} == {"issued"}


@pytest.mark.parametrize("status", ["deceased", "moved"])
def test_a_recipient_who_dies_or_moves_loses_their_open_vouchers(build, client, status):
    world = build.world()
    other = build.programme(items=[(world.meal, 1000, 1)])
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())
    issued(client, headers, world.programme.id, build.period(1))
    issued(client, headers, other.id, build.period())
    build.choose_all(world, world.p1, world.alice)
    used = build.redeem(world.p1, world.alice, world.meal)
    bob_before = {v.id: v.status for v in build.vouchers(Voucher.recipient_id == world.bob.id)}

    response = client.patch(f"{API}/recipients/{world.alice.id}", json={"status": status}, headers=headers)

    assert response.status_code == 200, response.get_json()
    alices = build.vouchers(Voucher.recipient_id == world.alice.id)
    assert {v.status for v in alices if v.id != used.voucher_id} == {"revoked"}
    assert {v.status_reason for v in alices if v.id != used.voucher_id} == {f"recipient {status}"}
    assert build.voucher(used.voucher_id).status == "redeemed"
    assert {v.id: v.status for v in build.vouchers(Voucher.recipient_id == world.bob.id)} == bob_before
    released = sum(v.face_value_fen for v in alices if v.id != used.voucher_id and v.programme_id == world.programme.id)
    balances = ledger_of(client, headers, world.programme.id)
    assert balances["released_fen"] == released
    assert balances["committed_fen"] == build.issued_face_value(world.programme)
    assert ledger_of(client, headers, other.id)["released_fen"] == 1000 - 50  # alice's one meal there (5 %)
    assert reconciled(client, headers, world.programme.id)
    assert reconciled(client, headers, other.id)


def test_a_recipient_who_moves_is_left_out_of_the_next_monthly_run(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    client.patch(f"{API}/recipients/{world.bob.id}", json={"status": "moved"}, headers=headers)

    body = issued(client, headers, world.programme.id, build.period())

    assert body["recipients"] == 1
    assert recipients_with_vouchers(build, world.programme.id) == {world.alice.id}


def test_changing_a_recipients_phone_leaves_their_vouchers_alone(build, client):
    world = build.world()
    headers = build.headers(world.admin)
    issued(client, headers, world.programme.id, build.period())

    response = client.patch(f"{API}/recipients/{world.alice.id}", json={"phone": "13800138000"}, headers=headers)

    assert response.status_code == 200
    assert {v.status for v in build.vouchers()} == {"issued"}
    assert build.ledger(world.programme).released_fen == 0


# --- who sees which voucher -----------------------------------------------------------------------

def test_a_recipient_lists_only_their_own_vouchers(build, client):
    world = build.world()
    build.issue(world.programme, build.period())
    headers = build.headers(world.alice.user)

    own = listed(client, headers)
    asking_for_bob = listed(client, headers, recipient_id=world.bob.id)

    assert own["total"] == MEAL_QUOTA + BATH_QUOTA
    assert {item["recipient_id"] for item in own["items"]} == {world.alice.id}
    assert asking_for_bob["total"] == 0
    assert asking_for_bob["items"] == []


def test_a_recipient_reads_their_own_voucher_and_not_someone_elses(build, client):
    world = build.world()
    build.issue(world.programme, build.period())
    alices = build.vouchers(Voucher.recipient_id == world.alice.id)[0]
    bobs = build.vouchers(Voucher.recipient_id == world.bob.id)[0]
    headers = build.headers(world.alice.user)

    own = client.get(f"{API}/vouchers/{alices.id}", headers=headers)
    other = client.get(f"{API}/vouchers/{bobs.id}", headers=headers)

    assert own.status_code == 200
    assert own.get_json()["serial"] == alices.serial
    assert other.status_code == 404
    assert error_code(other) == "not_found"
    for suffix in ("card.png", "card.svg"):
        assert client.get(f"{API}/vouchers/{bobs.id}/{suffix}", headers=headers).status_code == 404
    assert client.get(f"{API}/vouchers/999999", headers=headers).status_code == 404


def test_a_region_scoped_admin_sees_only_vouchers_of_programmes_in_their_region(build, client):
    world = build.world()
    elsewhere = build.programme(items=[(world.meal, 1000, 1)], region_code="510132", min_age=None)
    build.recipient(region_code="510132")
    build.issue(world.programme, build.period())
    build.issue(elsewhere, build.period())
    county_admin = build.admin(region_code="510131")
    headers = build.headers(county_admin)
    theirs = build.vouchers(Voucher.programme_id == elsewhere.id)[0]
    ours = build.vouchers(Voucher.programme_id == world.programme.id)[0]

    seen = listed(client, headers)

    assert seen["total"] == 12
    assert {item["programme_id"] for item in seen["items"]} == {world.programme.id}
    assert listed(client, headers, programme_id=elsewhere.id)["total"] == 0
    assert client.get(f"{API}/vouchers/{ours.id}", headers=headers).status_code == 200
    forbidden = client.get(f"{API}/vouchers/{theirs.id}", headers=headers)
    assert forbidden.status_code == 403
    assert error_code(forbidden) == "forbidden"
    assert revoke(client, headers, theirs.id).status_code == 403
    assert build.voucher(theirs.id).status == "issued"
    assert listed(client, build.headers(world.admin))["total"] == 13


def test_admins_filter_vouchers_by_recipient_status_and_programme(build, client):
    world = build.world()
    other = build.programme(items=[(world.meal, 1000, 1)])
    build.issue(world.programme, build.period())
    build.issue(other, build.period())
    headers = build.headers(world.admin)
    revoke(client, headers, build.vouchers(Voucher.recipient_id == world.bob.id)[0].id)

    assert listed(client, headers)["total"] == 14
    assert listed(client, headers, programme_id=other.id)["total"] == 2
    assert listed(client, headers, recipient_id=world.bob.id, programme_id=world.programme.id)["total"] == 6
    assert listed(client, headers, status="revoked")["total"] == 1
    assert listed(client, headers, status="issued", recipient_id=world.bob.id)["total"] == 6
    page = listed(client, headers, per_page=5, page=3)
    assert (page["total"], len(page["items"]), page["page"], page["per_page"]) == (14, 4, 3, 5)
    bad = client.get(f"{API}/vouchers", query_string={"status": "spent"}, headers=headers)
    assert bad.status_code == 422


@pytest.mark.parametrize("role", ["auditor", "provider"])
def test_auditors_and_providers_may_not_read_vouchers(build, client, role):
    world = build.world()
    build.issue(world.programme, build.period())
    user = build.auditor() if role == "auditor" else world.p1.user
    voucher = build.vouchers()[0]
    headers = build.headers(user)

    for url in (f"{API}/vouchers", f"{API}/vouchers/{voucher.id}", f"{API}/vouchers/{voucher.id}/card.png"):
        response = client.get(url, headers=headers)
        assert response.status_code == 403, url
        assert error_code(response) == "forbidden"


def test_anonymous_requests_for_vouchers_are_unauthenticated(build, client):
    world = build.world()
    build.issue(world.programme, build.period())
    voucher = build.vouchers()[0]

    for url in (f"{API}/vouchers", f"{API}/vouchers/{voucher.id}", f"{API}/vouchers/{voucher.id}/card.svg"):
        assert client.get(url).status_code == 401


def test_nothing_is_written_by_a_refused_issue_even_to_the_journal(build, client):
    """The journal is the ledger's truth: a refused run leaves not even an empty entry behind."""
    world = build.world(budget_fen=100)
    entries = build.count(JournalEntry)

    issue(client, build.headers(world.admin), world.programme.id, build.period())

    assert build.count(JournalEntry) == entries


@pytest.mark.parametrize("window", ["ended_last_month", "starts_next_month"])
def test_a_supplementary_issue_outside_the_programme_dates_is_refused(build, client, window):
    today = build.today()
    dates = {"ended_last_month": (first_of_month(today, -3), first_of_month(today) - timedelta(days=1)),
             "starts_next_month": (first_of_month(today, 1), first_of_month(today, 4))}[window]
    meal = build.item()
    programme = build.programme(items=[(meal, 1000, 1)], starts_on=dates[0], ends_on=dates[1], min_age=None)
    recipient = build.recipient()

    response = supplement(client, build.headers(build.system_admin), programme_id=programme.id,
                          recipient_id=recipient.id, item_code=meal, count=1)

    assert response.status_code == 422
    assert "period" in response.get_json()["error"]["details"]["fields"]
    assert build.count(Voucher) == 0
