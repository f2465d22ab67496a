"""Switching as the market's signal (issue 18 §4; DESIGN.md "Market integrity"; vouchers/service/switching.py).

Per provider and month, from the choice history: the distinct recipients holding the provider's choice for
some item at the month's first local midnight, those gained and lost by switching during the month, the churn
rate (lost / start, null at 0), and the switches away counted by reason — `GET /programmes/{id}/switching`
(admins in scope, auditors). Rankings carry `switch_away_rate`; the public programme page shows switching
only per item and for the whole programme, and hides any group of fewer than 5 recipients. Every test runs
on SQLite and PostgreSQL.
"""

from datetime import timedelta

import pytest

from marketplace.auth.models import User
from marketplace.db import db, utcnow
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from providers.service import enrolment
from tests.conftest import error_code
from tests.support.console import visible_text
from tests.test_recipient_pages import log_in
from vouchers.service import choice, switching

API = "/api/v1"


def choose(build, recipient, programme, item, provider, *, at, reason=None, note=None):
    """The system admin records *recipient*'s choice of *provider* at the instant *at* (a switch: with *reason*)."""
    admin_id = build.system_admin.id
    build.run(lambda: choice.set_choice(
        recipient=db.session.get(Recipient, recipient.id), programme=db.session.get(Programme, programme.id),
        item_code=item, provider_id=provider.id, switch_reason=reason, switch_note=note,
        actor=db.session.get(User, admin_id), now=at))


def figures(build, period, **scope) -> dict[int, dict]:
    found = build.read(lambda: switching.monthly_switching(periods=[period], **scope))
    return {pid: month.as_dict() for (_period, pid), month in found.items()}


@pytest.fixture
def market(build):
    """A month (two months ago, M) of switching among p1, p2 and p3 in one programme buying meals and baths.

    Before M: alice, bob chose p1 for meals; bob p1 for baths; carol p2 for meals; dan p1 then p2 for meals.
    At M's first instant: erin's first choice, p1 (a first choice is no switch; she was not there at the start).
    During M: alice p1→p2 (service_quality), bob's meals p1→p3 (price; his baths stay with p1), carol p2→p1
    (no reason), dan chooses p2 again (no switch). At the next month's first instant: frank p1→p2 (not in M).
    """
    world = build.world()
    programme, meal, bath, p1, p2 = world.programme, world.meal, world.bath, world.p1, world.p2
    p3 = build.provider(items=[meal, bath], enrol_in=[programme])
    carol, dan, erin, frank = (build.recipient() for _ in range(4))
    before = build.in_month(-3, 10)
    start = build.in_month(-2, 1, 0, 0)
    month = build.period(-2)
    next_start = build.in_month(-1, 1, 0, 0)
    for recipient, item, provider in ((world.alice, meal, p1), (world.bob, meal, p1), (world.bob, bath, p1),
                                      (carol, meal, p2), (dan, meal, p1), (frank, meal, p1)):
        choose(build, recipient, programme, item, provider, at=before)
    choose(build, dan, programme, meal, p2, at=before + timedelta(hours=1), reason="timeliness")
    choose(build, erin, programme, meal, p1, at=start)
    choose(build, world.alice, programme, meal, p2, at=start + timedelta(days=3), reason="service_quality")
    choose(build, world.bob, programme, meal, p3, at=start + timedelta(days=4), reason="price")
    choose(build, carol, programme, meal, p1, at=start + timedelta(days=5))
    choose(build, dan, programme, meal, p2, at=start + timedelta(days=6))
    choose(build, frank, programme, meal, p2, at=next_start, reason="moved")
    return world, p3, month


def test_a_month_of_switching_per_provider(build, market):
    world, p3, month = market

    found = figures(build, month, programme_id=world.programme.id)

    assert found[world.p1.id] == {"provider_id": world.p1.id, "period": month, "recipients_start": 3,
                                  "gained": 1, "lost": 2, "churn_rate": 0.6667, "switches_away": 2,
                                  "reasons": {"service_quality": 1, "price": 1}}
    assert found[world.p2.id] == {"provider_id": world.p2.id, "period": month, "recipients_start": 2,
                                  "gained": 1, "lost": 1, "churn_rate": 0.5, "switches_away": 1, "reasons": {}}
    assert found[p3.id] == {"provider_id": p3.id, "period": month, "recipients_start": 0, "gained": 1, "lost": 0,
                            "churn_rate": None, "switches_away": 0, "reasons": {}}


def test_the_next_month_starts_where_the_last_one_ended(build, market):
    world, p3, _month = market

    found = figures(build, build.period(-1), programme_id=world.programme.id)

    # p1 at the start: bob (baths), carol, erin, frank; p2: alice, dan; p3: bob (meals). Then frank p1→p2.
    assert {pid: (row["recipients_start"], row["gained"], row["lost"]) for pid, row in found.items()} == {
        world.p1.id: (4, 0, 1), world.p2.id: (2, 1, 0), p3.id: (1, 0, 0)}
    assert found[world.p1.id]["reasons"] == {"moved": 1}


def test_several_months_at_once_match_each_month_alone(build, market):
    world, _p3, month = market
    periods = [build.period(-3), month, build.period(-1)]

    together = build.read(lambda: switching.monthly_switching(periods=periods, programme_id=world.programme.id))

    for period in periods:
        alone = figures(build, period, programme_id=world.programme.id)
        assert {pid: row.as_dict() for (p, pid), row in together.items() if p == period} == alone


def test_one_provider_across_programmes(build, market):
    world, _p3, month = market
    other = build.programme(items=[world.meal])
    admin_id = build.system_admin.id
    build.run(lambda: enrolment.enrol(programme=db.session.get(Programme, other.id), provider_id=world.p1.id,
                                      actor=db.session.get(User, admin_id), now=utcnow()))
    gina = build.recipient()
    choose(build, gina, other, world.meal, world.p1, at=build.in_month(-3, 2))
    choose(build, world.alice, other, world.meal, world.p1, at=build.in_month(-3, 2))  # counted once

    history = build.read(lambda: switching.provider_history(provider_id=world.p1.id,
                                                            periods=[build.period(-1), month]))

    assert [(row.period, row.recipients_start, row.gained, row.lost) for row in history] == [
        (month, 4, 1, 2), (build.period(-1), 6, 0, 1)]
    assert figures(build, month, programme_id=other.id) == {
        world.p1.id: {"provider_id": world.p1.id, "period": month, "recipients_start": 2, "gained": 0, "lost": 0,
                      "churn_rate": 0.0, "switches_away": 0, "reasons": {}}}


# --- the API -----------------------------------------------------------------------------------------

def test_the_api_lists_every_enrolled_provider(build, client, market):
    world, p3, month = market
    idle = build.provider(items=[world.meal], enrol_in=[world.programme])

    response = client.get(f"{API}/programmes/{world.programme.id}/switching", query_string={"period": month},
                          headers=build.headers(build.auditor()))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["programme_id"], body["period"]) == (world.programme.id, month)
    rows = {row["provider_id"]: row for row in body["items"]}
    assert list(rows) == sorted([world.p1.id, world.p2.id, p3.id, idle.id])
    assert rows[world.p1.id]["churn_rate"] == pytest.approx(0.6667)
    assert rows[world.p1.id]["reasons"] == {"service_quality": 1, "price": 1}
    assert rows[idle.id] == {"provider_id": idle.id, "recipients_start": 0, "gained": 0, "lost": 0,
                             "churn_rate": None, "switches_away": 0, "reasons": {}}


def test_the_api_defaults_to_last_month(build, client, market):
    world, _p3, _month = market

    response = client.get(f"{API}/programmes/{world.programme.id}/switching", headers=build.headers(world.admin))

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["period"] == build.period(-1)
    assert {row["provider_id"]: row["lost"] for row in body["items"]}[world.p1.id] == 1


@pytest.mark.parametrize("period", ["2026-13", "26-01", "now"])
def test_a_period_that_is_not_a_month_is_refused(build, client, market, period):
    world, _p3, _month = market

    response = client.get(f"{API}/programmes/{world.programme.id}/switching", query_string={"period": period},
                          headers=build.headers(world.admin))

    assert response.status_code == 422
    assert "period" in response.get_json()["error"]["details"]["fields"]


def test_who_may_read_switching(build, client, market):
    world, _p3, _month = market
    url = f"{API}/programmes/{world.programme.id}/switching"
    allowed = [world.admin, build.auditor(), build.admin(region_code="510131"), build.admin(region_code="510100")]
    refused = [world.p1.user, world.alice.user, build.admin(region_code="510132")]

    assert client.get(url).status_code == 401
    for user in allowed:
        assert client.get(url, headers=build.headers(user)).status_code == 200, user.username
    for user in refused:
        response = client.get(url, headers=build.headers(user))
        assert response.status_code == 403, user.username
        assert error_code(response) == "forbidden"
    assert client.get(f"{API}/programmes/999999/switching", headers=build.headers(world.admin)).status_code == 404


# --- rankings ------------------------------------------------------------------------------------------

def ranking(client, **query) -> dict[int, dict]:
    response = client.get(f"{API}/rankings", query_string=query)
    assert response.status_code == 200, response.get_json()
    return {row["provider_id"]: row for row in response.get_json()["items"]}


@pytest.mark.parametrize(("chose", "rate"), [(4, None), (5, 0.4), (6, 0.3333)])
def test_switch_away_rate_in_rankings_is_hidden_below_5_recipients(build, client, chose, rate):
    world = build.world()
    people = [build.recipient() for _ in range(chose)]
    day = build.in_month(-2, 3)
    for person in people:
        choose(build, person, world.programme, world.meal, world.p1, at=day)
    for person in people[:2]:
        choose(build, person, world.programme, world.meal, world.p2, at=day + timedelta(days=1), reason="price")
    choose(build, people[0], world.programme, world.meal, world.p1, at=day + timedelta(days=2), reason="other",
           note="又换回来了")  # back again: still one recipient who left p1

    rows = ranking(client, item_code=world.meal)

    assert rows[world.p1.id]["switch_away_rate"] == (rate if rate is None else pytest.approx(rate))
    assert rows[world.p2.id]["switch_away_rate"] is None  # two chose it: too few to show
    assert ranking(client, item_code=world.bath)[world.p1.id]["switch_away_rate"] is None  # nobody chose baths


def test_switch_away_rate_in_a_programme_counts_that_programme_only(build, client):
    world = build.world()
    other = build.programme(items=[world.meal])
    admin_id = build.system_admin.id
    build.run(lambda: enrolment.enrol(programme=db.session.get(Programme, other.id), provider_id=world.p1.id,
                                      actor=db.session.get(User, admin_id), now=utcnow()))
    day = build.in_month(-1, 3)
    here = [build.recipient() for _ in range(5)]
    there = [build.recipient() for _ in range(5)]
    for person in here:
        choose(build, person, world.programme, world.meal, world.p1, at=day)
    for person in there:
        choose(build, person, other, world.meal, world.p1, at=day)
    choose(build, here[0], world.programme, world.meal, world.p2, at=day + timedelta(hours=1))

    assert ranking(client, item_code=world.meal)[world.p1.id]["switch_away_rate"] == pytest.approx(0.1)
    assert ranking(client, item_code=world.meal, programme_id=world.programme.id)[world.p1.id][
        "switch_away_rate"] == pytest.approx(0.2)
    assert ranking(client, item_code=world.meal, programme_id=other.id)[world.p1.id]["switch_away_rate"] == 0.0


def test_a_remembered_rate_follows_the_next_choice(build, client):
    world = build.world()
    people = [build.recipient() for _ in range(5)]
    day = build.in_month(-1, 3)
    for person in people:
        choose(build, person, world.programme, world.meal, world.p1, at=day)
    assert ranking(client, item_code=world.meal)[world.p1.id]["switch_away_rate"] == 0.0

    choose(build, people[0], world.programme, world.meal, world.p2, at=day + timedelta(days=1))

    assert ranking(client, item_code=world.meal)[world.p1.id]["switch_away_rate"] == pytest.approx(0.2)
    assert figures(build, build.period(-1), programme_id=world.programme.id)[world.p1.id]["lost"] == 1


# --- the public portal: aggregates only, no group under 5 recipients ----------------------------------

def switched(build, world, count: int, reason: str = "price", *, item=None):
    """*count* new recipients chose p1 for *item* (meals) last month, then switched to p2 with *reason*."""
    item = item or world.meal
    day = build.in_month(-1, 3)
    for _ in range(count):
        person = build.recipient()
        choose(build, person, world.programme, item, world.p1, at=day)
        choose(build, person, world.programme, item, world.p2, at=day + timedelta(days=1), reason=reason,
               note="换一家" if reason == "other" else None)


def public_row(client, world, label: str) -> str:
    text = visible_text(client.get(f"/public/programmes/{world.programme.id}"))
    section = text[text.index("老人更换服务机构的情况"):]
    return section[section.index(label):][:60]


def test_the_public_page_hides_a_group_of_4_recipients(build, client):
    world = build.world()
    switched(build, world, 4)

    assert public_row(client, world, "助餐").startswith("助餐 不到 5 位老人，不公开")
    assert public_row(client, world, "全部服务项目").startswith("全部服务项目 不到 5 位老人，不公开")
    groups = build.read(lambda: switching.public_switching(db.session.get(Programme, world.programme.id)))
    assert [(g.item_code, g.recipients, g.switches, g.top_reasons) for g in groups] == [
        (world.meal, None, None, []), (world.bath, None, None, []), (None, None, None, [])]
    assert not groups[-1].shields_items  # four in all: too few by itself


def test_the_public_page_shows_a_group_of_5_recipients(build, client):
    world = build.world()
    switched(build, world, 5)

    assert public_row(client, world, "助餐").startswith("助餐 5 位 5 次 自付太多 5 次")
    assert public_row(client, world, "助浴").startswith("助浴 不到 5 位老人，不公开")
    assert public_row(client, world, "全部服务项目").startswith("全部服务项目 5 位 5 次 自付太多 5 次")


def test_a_reason_given_by_fewer_than_5_recipients_is_not_named(build, client):
    world = build.world()
    switched(build, world, 5, "price")
    switched(build, world, 4, "timeliness")

    assert public_row(client, world, "助餐").startswith("助餐 9 位 9 次 自付太多 5 次 ")
    assert "不准时" not in public_row(client, world, "助餐")
    assert public_row(client, world, "全部服务项目").startswith("全部服务项目 9 位 9 次 自付太多 5 次 ")


def test_the_programme_row_does_not_give_away_a_hidden_item(build, client):
    """Meals (9) are shown and baths (1) hidden: the programme's 10 less the meals' 9 would tell the baths' 1."""
    world = build.world()
    switched(build, world, 9, "price")
    switched(build, world, 1, "other", item=world.bath)

    assert public_row(client, world, "助餐").startswith("助餐 9 位 9 次 自付太多 9 次")
    assert public_row(client, world, "助浴").startswith("助浴 不到 5 位老人，不公开")
    assert public_row(client, world, "全部服务项目").startswith("全部服务项目 不公开：从这一行能推算出上面不公开的数字")


def test_the_programme_row_does_not_give_away_a_reason_hidden_in_an_item(build, client):
    """Meals: 5 for lateness and 3 for the price (too few to name); baths: 5 for the price. The programme's 8 for
    the price less the baths' 5 would tell the meals' 3, so the programme's row names lateness only."""
    world = build.world()
    switched(build, world, 5, "timeliness")
    switched(build, world, 3, "price")
    switched(build, world, 5, "price", item=world.bath)

    assert public_row(client, world, "助餐").startswith("助餐 8 位 8 次 不准时 5 次 ")
    assert public_row(client, world, "助浴").startswith("助浴 5 位 5 次 自付太多 5 次 ")
    row = public_row(client, world, "全部服务项目")
    assert row.startswith("全部服务项目 13 位 13 次 不准时 5 次 ")
    assert "自付太多" not in row


def test_the_public_group_threshold_is_one_constant():
    assert switching.MIN_PUBLIC_GROUP == 5


# --- the console: the programme dashboard and the provider page ----------------------------------------

def test_the_dashboard_shows_last_months_switching_per_provider(build, client, market):
    world, p3, _month = market
    log_in(client, build.auditor())

    text = visible_text(client.get(f"/staff/programmes/{world.programme.id}"))

    section = text[text.index("换机构（"):]
    last = build.period(-1)
    assert section.startswith(f"换机构（{int(last[:4])}年{int(last[5:])}月）")
    # The providers that lost the most first: p1 lost frank (moved) of its 4 at the start.
    rows = section[section.index("主要原因") + len("主要原因"):]
    assert rows.strip().startswith(f"{world.p1.name} 4 0 1 25.0% 搬家 1 次 {world.p2.name} 2 1 0 0.0% —")
    assert f"{p3.name} 1 0 0 0.0% —" in rows


def test_the_dashboard_says_when_nobody_switched(build, client):
    world = build.world()
    log_in(client, world.admin)

    text = visible_text(client.get(f"/staff/programmes/{world.programme.id}"))

    last = build.period(-1)
    assert f"{int(last[:4])}年{int(last[5:])}月没有老人更换服务机构。" in text


def test_the_provider_page_shows_its_last_six_months(build, client, market):
    world, _p3, month = market
    log_in(client, build.auditor())

    text = visible_text(client.get(f"/staff/providers/{world.p1.id}"))

    section = text[text.index("换机构（最近 6 个月）"):]
    last = build.period(-1)
    assert f"{int(last[:4])}年{int(last[5:])}月 4 0 1 25.0% 搬家 1 次" in section
    assert f"{int(month[:4])}年{int(month[5:])}月 3 1 2 66.7% 服务质量 1 次、自付太多 1 次" in section
