"""The demo's planted market-integrity cases have exactly the shapes described (issue 18 §7), and its background
has none of them, read back from the seeded database with plain queries (the detection itself is tested
where it lives): a provider whose last month ends in a burst (≥ 40 % of its month in the last 3 days, the
others about 10 %), one recipient served by two providers at overlapping times, one service after a recorded
death; items with their usual durations and the bath's shortest plausible duration. Seeded at a fixed instant
(a mid-month morning, and the first half-hour of a month after a short February), on both databases."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from marketplace.auth.models import User
from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, transaction
from marketplace.demo import (
    BURST_DAYS,
    BURST_PROVIDER,
    DEMO_DURATIONS,
    DEMO_MIN_DURATIONS,
    SUN,
    SUN_DIED_ON_DAY,
    ZHAO,
    seed_demo,
)
from marketplace.programmes.integrity import FALLBACK_DURATION_MINUTES
from marketplace.programmes.models import ProgrammeItem
from marketplace.recipients.models import Recipient
from providers.models import Provider, Rating
from vouchers.models import Redemption

LOCAL = ZoneInfo("Asia/Shanghai")
RECIPIENTS = 60


@pytest.fixture(scope="module", params=["2026-12-06T10:00", "2027-03-01T00:30"], ids=["mid-month", "first-half-hour"])
def demo(request, app):
    """The demo seeded at a local instant; the facts the tests read, as plain values (read once: the tables are
    emptied after each test, the values stay)."""
    local = datetime.fromisoformat(request.param).replace(tzinfo=LOCAL)
    with app.app_context():
        with transaction():
            seed_demo(now=local.astimezone(UTC), recipients=RECIPIENTS)
        logins = {user.id: user.username for user in db.session.scalars(select(User))}
        providers = {p.id: p for p in db.session.scalars(select(Provider))}
        defaults = {item.code: item.default_duration_minutes for item in db.session.scalars(select(ServiceItem))}
        services = [{
            "id": r.id, "recipient": r.recipient_id, "provider": r.provider_id, "login": logins[r.scanned_by],
            "item": r.item_code, "presence": r.presence, "recorded": r.duration_minutes,
            "minutes": r.duration_minutes or defaults[r.item_code] or FALLBACK_DURATION_MINUTES,
            "end": r.delivered_at, "local": r.delivered_at.astimezone(LOCAL)}
            for r in db.session.scalars(select(Redemption).where(Redemption.status == "completed"))]
        recipients = {r.id: (r.name, r.status, r.status_effective_on) for r in db.session.scalars(select(Recipient))}
        ratings = [(rating.provider_id, rating.created_at, rating.score, rating.source, rating.rated_by)
                   for rating in db.session.scalars(select(Rating))]
        minimums = {row.item_code: row.min_duration_minutes for row in db.session.scalars(select(ProgrammeItem))}
        capacity = {p.id: p.capacity for p in providers.values()}
        names = {p.id: logins_of(p.id, logins, db) for p in providers.values()}
    first = local.date().replace(day=1)
    last_month = (first - timedelta(days=1)).replace(day=1)
    return {"local": local, "last_month": last_month, "services": services, "recipients": recipients,
            "ratings": ratings, "defaults": defaults, "minimums": minimums, "capacity": capacity,
            "manager": names, "providers": providers}


def logins_of(provider_id, logins, database) -> str:
    """The provider's first login (its manager), by which the demo names it."""
    return database.session.scalar(select(User.username).where(User.provider_id == provider_id)
                                   .order_by(User.id).limit(1))


def window(service):
    return service["end"] - timedelta(minutes=service["minutes"]), service["end"]


def overlapping(first, second) -> bool:
    (a_start, a_end), (b_start, b_end) = window(first), window(second)
    return a_start < b_end and b_start < a_end


def last_month_services(demo):
    month = demo["last_month"]
    return [s for s in demo["services"] if (s["local"].year, s["local"].month) == (month.year, month.month)]


def month_end_shares(demo) -> dict[str, tuple[int, float]]:
    """Per provider (its login): services last month, and the share delivered in its last BURST_DAYS days."""
    month = demo["last_month"]
    last_day = ((month + timedelta(days=32)).replace(day=1) - timedelta(days=1)).day
    counts, late = defaultdict(int), defaultdict(int)
    for service in last_month_services(demo):
        login = demo["manager"][service["provider"]]
        counts[login] += 1
        late[login] += service["local"].day > last_day - BURST_DAYS
    return {login: (counts[login], late[login] / counts[login]) for login in counts}


# --- the planted cases --------------------------------------------------------------------------------------

def test_one_provider_ends_last_month_in_a_burst_and_the_others_do_not(demo):
    shares = month_end_shares(demo)
    count, share = shares.pop(BURST_PROVIDER)
    assert count >= 100
    assert share >= 0.40
    others = [share for count, share in shares.values() if count >= 20]
    assert len(others) >= 3
    for other in others:
        assert 0.03 <= other <= 0.20, shares  # about the 10 % that 3 days of 30 make


def test_exactly_one_person_is_served_by_two_providers_at_once(demo):
    by_recipient = defaultdict(list)
    for service in demo["services"]:
        by_recipient[service["recipient"]].append(service)
    pairs = [(a, b) for services in by_recipient.values() for i, a in enumerate(services) for b in services[i + 1:]
             if a["provider"] != b["provider"] and overlapping(a, b)]
    assert len(pairs) == 1
    [(a, b)] = pairs
    assert demo["recipients"][a["recipient"]][0] == ZHAO["name"]
    assert {a["item"], b["item"]} == {"HC-MEDICAL", "HC-CLEAN"}
    assert {demo["manager"][a["provider"]], demo["manager"][b["provider"]]} == {"provider-hospital",
                                                                                  "provider-heshan"}
    overlap = min(window(a)[1], window(b)[1]) - max(window(a)[0], window(b)[0])
    assert overlap >= timedelta(minutes=30)  # not a matter of clocks a minute apart


def test_exactly_one_service_comes_after_a_recorded_death(demo):
    after = [(service, demo["recipients"][service["recipient"]]) for service in demo["services"]
             if demo["recipients"][service["recipient"]][2] is not None
             and service["local"].date() > demo["recipients"][service["recipient"]][2]]
    assert len(after) == 1
    [(service, (name, status, died_on))] = after
    assert (name, status) == (SUN["name"], "deceased")
    assert died_on == demo["last_month"].replace(day=SUN_DIED_ON_DAY)
    assert service["item"] == "HC-MEAL"
    assert service["local"].date() == demo["last_month"].replace(day=21)
    before = [s for s in demo["services"] if s["recipient"] == service["recipient"] and s["id"] != service["id"]]
    assert before  # she was served before she died, by the same provider
    assert all(s["local"].date() < died_on for s in before)
    # Nobody else has left: no other exit date to serve after.
    assert [r for r in demo["recipients"].values() if r[2] is not None] == [(name, status, died_on)]


def test_items_have_their_usual_durations_and_the_bath_its_shortest(demo):
    assert {code: demo["defaults"][code] for code in DEMO_DURATIONS} == DEMO_DURATIONS
    assert {code: minutes for code, minutes in demo["minimums"].items() if minutes} == DEMO_MIN_DURATIONS


# --- the background has none of the rules' shapes ---------------------------------------------------------

def test_no_login_serves_two_people_at_once(demo):
    by_login = defaultdict(list)
    for service in demo["services"]:
        by_login[service["login"]].append(service)
    for login, services in by_login.items():
        services.sort(key=lambda s: window(s)[0])
        for earlier, later in zip(services, services[1:], strict=False):
            assert not (overlapping(earlier, later) and earlier["recipient"] != later["recipient"]), login


def test_no_login_serves_more_in_an_hour_than_the_hour_holds(demo):
    by_login = defaultdict(list)
    for service in demo["services"]:
        by_login[service["login"]].append(service)
    for login, services in by_login.items():
        services.sort(key=lambda s: s["end"])
        for index, first in enumerate(services):
            hour = [s for s in services[index:] if s["end"] <= first["end"] + timedelta(minutes=60)]
            assert len(hour) < 3 or sum(s["minutes"] for s in hour) <= 60, (login, first["local"])


def test_no_provider_goes_over_its_capacity_types_codes_or_records_short_baths(demo):
    per_month = defaultdict(int)
    for service in demo["services"]:
        per_month[service["provider"], service["local"].strftime("%Y-%m")] += 1
    for (provider, _month), count in per_month.items():
        assert count <= demo["capacity"][provider]
    assert {service["presence"] for service in demo["services"]} == {"presence_code"}
    minimum = DEMO_MIN_DURATIONS["HC-BATH"]
    assert all(s["recorded"] is None or s["recorded"] >= minimum for s in demo["services"] if s["item"] == "HC-BATH")


def test_no_provider_rating_pattern(demo):
    by_provider = defaultdict(list)
    for provider, at, score, source, by in demo["ratings"]:
        by_provider[provider].append((at, score, source, by))
    for provider, ratings in by_provider.items():
        phone = defaultdict(int)
        for _at, _score, source, by in ratings:
            if source == "phone_followup":
                phone[by] += 1
        if len(ratings) >= 10:
            assert max(phone.values(), default=0) / len(ratings) <= 0.5, provider
        ratings.sort()
        for index in range(len(ratings) - 4):
            run = ratings[index:index + 5]
            same = len({score for _at, score, *_rest in run}) == 1
            assert not (same and run[-1][0] - run[0][0] <= timedelta(minutes=10)), (provider, run[0][0])
