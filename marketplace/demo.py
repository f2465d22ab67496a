"""`flask --app wsgi seed-demo`: a believable demo for a county civil-affairs bureau.

The demo county is 蒲江县 (region code 510131, 成都市, 四川省). Passwords are printed on purpose:
this is a demo database and never a production one (the command refuses a non-empty database).

The months of service are scheduled the way they could have happened: each provider's scanning staff
(logins of their own, `provider-heshan-meal-1` …, password DEMO_PROVIDER_PASSWORD) serve one person after
another, and nobody is served in two places at once; the bureau's three phone follow-up staff
(`followup-1` …, DEMO_FOLLOWUP_PASSWORD) call through each day. Into that the demo plants the cases the
market-integrity rules exist for (seed_planted): a provider whose last month ends in a burst, one person
served by two providers at once, and services after a recorded death.
"""

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import click
from flask import Blueprint
from sqlalchemy import func, select

from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.catalogue import service as catalogue_service
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.programmes import service as programme_service
from marketplace.recipients import service as recipient_service
from marketplace.recipients.idnumber import check_character
from marketplace.recipients.models import Recipient
from providers import creditcode
from providers.service import complaints, enrolment, qualification, registry
from vouchers.models import Issuance, Voucher
from vouchers.service import choice, feedback, issuance, redemption, revocation, settlement

DEMO_REGION = "510131"
DEMO_USERS = [
    # username, password, role, region scope, what it is for
    ("admin", "demo-admin-2026", "admin", None, "civil-affairs bureau, all regions"),
    ("county-admin", "demo-county-2026", "admin", DEMO_REGION, "蒲江县民政局, limited to 510131"),
    ("auditor", "demo-auditor-2026", "auditor", None, "read-only auditor"),
]

# The five home-care services (居家养老服务), with typical county prices in fen.
DEMO_ITEMS = [
    # code, name, unit, standard price, programme unit price, monthly quota per recipient
    ("HC-MEAL", "助餐", "餐", 1500, 1200, 30),
    ("HC-BATH", "助浴", "次", 6000, 5000, 2),
    ("HC-CLEAN", "助洁", "小时", 4000, 3500, 4),
    ("HC-EMERGENCY", "助急", "次", 5000, 5000, 1),
    ("HC-MEDICAL", "助医", "次", 8000, 6000, 2),
]
# How long one service usually takes (the catalogue's default_duration_minutes), and the shortest plausible
# bath (the programme's min_duration_minutes): what the market-integrity rules measure services against.
DEMO_DURATIONS = {"HC-MEAL": 15, "HC-BATH": 60, "HC-CLEAN": 60, "HC-EMERGENCY": 30, "HC-MEDICAL": 120}
DEMO_MIN_DURATIONS = {"HC-BATH": 30}
# name, kind, authority+type, organisation code body, items, status, login
DEMO_PROVIDERS = [
    ("蒲江县鹤山街道社区养老服务中心", "social_organisation", "52", "MA6C2D1B",
     ["HC-MEAL", "HC-BATH", "HC-CLEAN", "HC-EMERGENCY", "HC-MEDICAL"], "approved", "provider-heshan"),
    ("蒲江县乐龄家政服务有限公司", "enterprise", "91", "MA62N8K3", ["HC-MEAL", "HC-BATH", "HC-CLEAN"], "approved",
     "provider-leling"),
    ("蒲江县中医医院", "public_institution", "12", "45071902", ["HC-MEDICAL", "HC-EMERGENCY"], "approved",
     "provider-hospital"),
    ("大塘镇邻里互助会", "community_organisation", "51", "MJ0T4R7C", ["HC-MEAL", "HC-CLEAN"], "approved",
     "provider-datang"),
    ("西来镇铁牛村股份经济合作联合社", "rural_collective", "N2", "N2510131", ["HC-MEAL"], "pending", "provider-tieniu"),
]
DEMO_PROVIDER_PASSWORD = "demo-provider-2026"
# Services a month each provider declared it can deliver (above what the demo's months need: no provider is
# over capacity).
DEMO_CAPACITY = {"provider-heshan": 4000, "provider-leling": 4000, "provider-hospital": 1500,
                 "provider-datang": 4000, "provider-tieniu": 600}
# The bureau's phone follow-up staff (回访): admins of the county who record ratings by phone, in turn.
DEMO_FOLLOWUP_STAFF = ("followup-1", "followup-2", "followup-3")
DEMO_FOLLOWUP_PASSWORD = "demo-followup-2026"
FOLLOWUP_SHARE = 0.5  # the share of services that get a follow-up call the next day
# When in the local day each item is delivered, in minutes after midnight: meals at lunch and supper, the
# rest in working hours. A login serves one person at a time and travels between them (TRAVEL minutes).
BANDS = {"HC-MEAL": ((630, 780), (990, 1140)), "HC-BATH": ((480, 1080),), "HC-CLEAN": ((480, 1080),),
         "HC-MEDICAL": ((450, 960),), "HC-EMERGENCY": ((420, 1260),)}
MINUTES = {"HC-MEAL": (15, None), "HC-BATH": (45, 60), "HC-CLEAN": (60,), "HC-MEDICAL": (90, 120),
           "HC-EMERGENCY": (20, 30)}  # recorded durations (None: not recorded, the item's default applies)
TRAVEL = {"HC-MEAL": 5}  # else 15
GAP = 5  # minutes between two services of one person
LONG_HOURS = (420, 1290)  # 7:00 to 21:30
CALLS = (540, 1080)  # the follow-up calls: 9:00 to 18:00
# The planted cases (seed_planted).
BURST_PROVIDER = "provider-leling"  # ends last month in a burst: BURST_SHARE of it in its last BURST_DAYS days
BURST_SHARE, BURST_DAYS = 0.45, 3
SUN = {"name": "孙桂兰", "birth": date(1936, 8, 21), "sequence": "904", "phone": "13881230904",
       "address": "蒲江县大塘镇6村3组", "tags": ["advanced_age", "living_alone"]}
ZHAO = {"name": "赵德明", "birth": date(1940, 11, 2), "sequence": "905", "phone": "13881230905",
        "address": "蒲江县寿安街道长秋社区2组", "tags": ["advanced_age", "disabled"]}
SUN_DIED_ON_DAY = 18  # of last month; 大塘镇 recorded a meal for her on the 21st
DEMO_RECIPIENTS = 300
# 王秀英, the recipient whose login the demo prints: a scripted, realistic history (see seed_wang).
DEMO_RECIPIENT = ("recipient-wang", "demo-recipient-2026")
WANG = {"name": "王秀英", "birth": date(1942, 3, 15), "sequence": "902", "phone": "13881234567",
        "address": "蒲江县鹤山街道朝阳社区5栋2单元301", "tags": ["advanced_age", "living_alone"]}
# Her providers per item (logins of DEMO_PROVIDERS); 助餐 first from 大塘镇, switched after a late meal.
WANG_FIRST_CHOICE = {"HC-MEAL": "provider-datang", "HC-BATH": "provider-leling", "HC-CLEAN": "provider-leling",
                     "HC-EMERGENCY": "provider-hospital", "HC-MEDICAL": "provider-hospital"}
WANG_SWITCH = ("HC-MEAL", "provider-heshan")  # with its reason (timeliness) and her words
# Who to log in as, per audience, and the page to open (CONSOLE.md, "Fixed addresses").
AUDIENCES = [
    # audience, page, username (None: no login)
    ("公众", "/", None),
    ("服务对象", "/me", DEMO_RECIPIENT[0]),
    ("服务机构", "/provider", "provider-heshan"),
    ("民政工作人员", "/staff", "county-admin"),
    ("审计", "/staff", "auditor"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = ["秀英", "桂英", "玉兰", "淑珍", "建国", "国华", "德明", "志强", "秀兰", "文华", "春花", "长福", "树林", "凤英",
         "兴发", "金花", "永清", "素芳", "福全", "润生"]
TOWNS = ["鹤山街道", "大塘镇", "寿安街道", "朝阳湖镇", "西来镇", "大兴镇", "甘溪镇", "成佳镇"]

cli = Blueprint("demo_cli", __name__, cli_group=None)


def seed_demo(*, now, rng: random.Random | None = None, recipients: int = DEMO_RECIPIENTS
              ) -> list[tuple[str, str, str, str]]:
    """Fill an empty database with the demo and return the logins as (username, password, role, note)."""
    rng = rng or random.Random(2026)
    users = [auth_service.create_user(username=username, password=password, role=role, region_code=region,
                                      actor=None, now=now)
             for username, password, role, region, _note in DEMO_USERS]
    system = users[0]  # qualification decisions need an admin
    for code, name, unit, standard_price, _price, _quota in DEMO_ITEMS:
        catalogue_service.create_item(code=code, name=name, category_code="basic_public", unit=unit,
                                      standard_price_fen=standard_price, nature="service",
                                      description=f"居家养老服务：{name}",
                                      default_duration_minutes=DEMO_DURATIONS[code], actor=None, now=now)
    programme = programme_service.create_programme(
        name=f"蒲江县{now.year}年居家养老服务券", authority="蒲江县民政局", region_code=DEMO_REGION,
        starts_on=date(now.year - (now.month == 1), 1, 1), ends_on=date(now.year, 12, 31),
        items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota,
                "min_duration_minutes": DEMO_MIN_DURATIONS.get(code)}
               for code, _name, _unit, _standard, price, quota in DEMO_ITEMS],
        eligibility={"min_age": 60, "tags_any": ["disabled", "low_income", "extreme_poverty", "advanced_age",
                                                 "living_alone"]},
        copay_percent={"default": 20, "disabled": 10, "low_income": 5, "extreme_poverty": 0},
        reserved_share_percent=30,
        settlement_rules=[{"min_score": 0, "pay_percent": 60}, {"min_score": 60, "pay_percent": 85},
                          {"min_score": 80, "pay_percent": 100}],
        rating_window_days=30, reversal_window_hours=48, choice_required=True, actor=None, now=now)
    programme_service.amend_budget(programme=programme, amount_fen=300_000_000, reason="县级财政预算安排（2026年）",
                                   actor=None, now=now)
    programme_service.activate(programme=programme, actor=None, now=now)
    for index, (name, kind, prefix, body, items, status, login) in enumerate(DEMO_PROVIDERS):
        provider = registry.register_provider(
            name=name, kind=kind, credit_code=demo_credit_code(prefix, body), legal_representative="张建华",
            phone=f"028-8855{index:04d}", address=f"四川省成都市蒲江县{TOWNS[index]}", region_codes=[DEMO_REGION],
            item_codes=items, capacity=DEMO_CAPACITY[login],
            account={"username": login, "password": DEMO_PROVIDER_PASSWORD},
            actor=None, now=now).provider
        if status == "approved":
            qualification.change_status(provider_id=provider.id, action="approve", reason="资质审核通过", actor=system,
                                        now=now)
            enrolment.enrol(programme=programme, provider_id=provider.id, actor=system, now=now)
    wang = recipient_service.create_recipient(**wang_recipient(), actor=None, now=now)
    others = [recipient_service.create_recipient(**demo_recipient(index, rng), actor=None, now=now)
              for index in range(1, recipients)]
    wang_user = recipient_service.create_account(recipient=wang, username=DEMO_RECIPIENT[0],
                                                 password=DEMO_RECIPIENT[1], actor=None, now=now)
    seed_service(programme=programme, recipients=others, wang=wang_user, admin=system, approver=users[1], now=now,
                 rng=rng)
    return demo_logins()


def seed_service(*, programme, recipients, wang, admin, approver, now, rng: random.Random) -> None:
    """Two months of service: last month issued, mostly redeemed, rated, expired and settled (drafted by
    one admin, approved by another, paid); this month issued and redeemed so far. 王秀英 (*wang*, her
    login) lives the scripted months of seed_wang, the planted cases those of seed_planted; the other
    *recipients* random ones, scheduled by plan_month."""
    today = local_date(now)
    last_month = f"{date(today.year, today.month, 1) - timedelta(days=1):%Y-%m}"
    this_month = f"{today:%Y-%m}"
    providers = [profile.provider for profile in enrolment.programme_providers(programme=programme, actor=admin)]
    managers = {user.provider_id: user for user in db.session.scalars(select(User).where(User.role == "provider"))}
    callers = [auth_service.create_user(username=username, password=DEMO_FOLLOWUP_PASSWORD, role="admin",
                                        region_code=DEMO_REGION, actor=None, now=now)
               for username in DEMO_FOLLOWUP_STAFF]
    crew = Crew(managers=managers, now=now)
    chosen = {}
    for recipient in recipients:
        for item in programme.items:
            provider = rng.choice([p for p in providers if item.item_code in p.item_codes])
            choice.set_choice(recipient=recipient, programme=programme, item_code=item.item_code,
                              provider_id=provider.id, actor=admin, now=now)
            chosen[recipient.id, item.item_code] = provider
    periods = (last_month, this_month)
    scripted = [seed_wang(programme=programme, wang=wang, admin=admin, approver=approver, periods=periods, now=now),
                seed_planted(programme=programme, admin=admin, periods=periods, now=now)]
    for months in scripted:
        next(months)  # the first choices, before last month
    burst = {provider.id for provider in providers if managers[provider.id].username == BURST_PROVIDER}
    for period, share in ((last_month, 1.0), (this_month, (today.day - 1) / 30)):
        issuance.issue_monthly(programme=programme, period=period, actor=admin, now=now)
        plan = plan_month(days=month_days(period, today), share=share, recipients=recipients, items=programme.items,
                          chosen=chosen, issued=issued_counts(programme.id, period),
                          burst=burst if period == last_month else set(), rng=rng)
        start = settlement.month_start_instant(period)
        called = []
        for service in plan:
            delivered = start + timedelta(days=service.day - 1, minutes=service.end)
            token = redemption.create_presence_code(recipient_id=service.recipient_id, now=delivered)["token"]
            redeemed = redemption.redeem(
                actor=crew.login(service.provider_id, service.item_code, service.worker), now=delivered,
                presence_token=token, item_code=service.item_code, delivered_at=delivered,
                duration_minutes=service.recorded_minutes)
            if rng.random() < FOLLOWUP_SHARE:  # half the services get a 回访 phone call the next day
                called.append((service.provider_id, service.day + 1, redeemed.id))
        follow_up(called, start=start, callers=callers, now=now, rng=rng)
        for months in scripted:
            next(months)
    for months in scripted:
        next(months, None)  # each has lived its months
    revocation.expire_vouchers(programme=programme, actor=admin, now=now)
    for draft in settlement.create_settlements(programme=programme, period=last_month, evaluations={}, actor=admin,
                                               now=now):
        settlement.approve(settlement=draft, actor=approver, now=now)
        settlement.pay(settlement=draft, payment_reference=f"国库集中支付-{last_month}-{draft.provider_id:03d}",
                       actor=approver, now=now)


def month_days(period: str, today: date) -> list[int]:
    """The local days of *period* that are over by *today* (this month: the days before today)."""
    first = date(int(period[:4]), int(period[5:]), 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return [day for day in range(1, last.day + 1) if first.replace(day=day) < today]


def issued_counts(programme_id: int, period: str) -> dict[tuple[int, str], int]:
    """Vouchers issued to each recipient for each item by the month's run (none: not eligible)."""
    rows = db.session.execute(
        select(Voucher.recipient_id, Voucher.item_code, func.count())
        .join(Issuance, Issuance.id == Voucher.issuance_id)
        .where(Issuance.programme_id == programme_id, Issuance.monthly_period == period)
        .group_by(Voucher.recipient_id, Voucher.item_code))
    return {(recipient_id, item_code): count for recipient_id, item_code, count in rows}


@dataclass(frozen=True)
class Service:
    """One planned service: on local *day*, from *start* to *end* (minutes after midnight), by the *worker*-th
    login of its provider for its item."""

    day: int
    start: int
    end: int
    recipient_id: int
    item_code: str
    provider_id: int
    worker: int
    recorded_minutes: int | None


def plan_month(*, days: list[int], share: float, recipients, items, chosen: dict, issued: dict, burst: set[int],
               rng: random.Random) -> list[Service]:
    """The month's services, in the order they happened: each recipient uses half to all of *share* of a
    month's quota on different *days*; a *burst* provider records BURST_SHARE of each of
    its people's services in the month's last BURST_DAYS days instead. Each day is then scheduled (schedule_day):
    no person is served twice at once, no login serves two people at once."""
    wanted: dict[int, list[tuple[int, str, int]]] = defaultdict(list)  # day → (recipient, item, provider)
    for recipient in recipients:
        for item in items:
            provider = chosen[recipient.id, item.item_code]
            count = min(issued.get((recipient.id, item.item_code), 0),
                        round(item.monthly_quota * share * rng.uniform(0.5, 1.0)))
            if provider.id in burst and len(days) > 2 * BURST_DAYS:
                late = math.ceil(count * BURST_SHARE)
                on_days = rng.sample(days[:-BURST_DAYS], min(count - late, len(days) - BURST_DAYS))
                offset = rng.randrange(BURST_DAYS)
                on_days += [days[-BURST_DAYS + (offset + index) % BURST_DAYS] for index in range(late)]
            else:
                on_days = rng.sample(days, min(count, len(days)))
            for day in on_days:
                wanted[day].append((recipient.id, item.item_code, provider.id))
    plan: list[Service] = []
    for day in sorted(wanted):
        plan += schedule_day(day, wanted[day], rng, long_hours=burst if day in days[-BURST_DAYS:] else set())
    return plan


def schedule_day(day: int, wanted: list[tuple[int, str, int]], rng: random.Random, *,
                 long_hours: set[int] = frozenset()) -> list[Service]:
    """Give each wanted service a time in its item's BANDS and a login: the first of the provider's logins for
    the item that is free then (one more when none is), never while the person is being served elsewhere.
    A login's services follow each other with TRAVEL minutes between them. The *long_hours* providers work
    from LONG_HOURS[0] to LONG_HOURS[1] at everything (the burst's days)."""
    rng.shuffle(wanted)
    free: dict[tuple[int, str], list[int]] = defaultdict(list)  # (provider, item) → each login's next free minute
    busy: dict[int, list[tuple[int, int]]] = defaultdict(list)  # recipient → the day's services
    done = []
    for recipient_id, item_code, provider_id in wanted:
        recorded = rng.choice(MINUTES[item_code])
        minutes = recorded or DEMO_DURATIONS[item_code]
        logins = free[provider_id, item_code]
        for worker in range(len(logins) + 1):
            if worker == len(logins):
                logins.append(0)
            bands = (LONG_HOURS,) if provider_id in long_hours else BANDS[item_code]
            start = _first_start(logins[worker], minutes, bands, busy[recipient_id])
            if start is not None:
                break
        else:  # the person's day is full: the service does not happen
            continue
        logins[worker] = start + minutes + TRAVEL.get(item_code, 15)
        busy[recipient_id].append((start, start + minutes))
        done.append(Service(day, start, start + minutes, recipient_id, item_code, provider_id, worker, recorded))
    return sorted(done, key=lambda service: (service.end, service.recipient_id))


def _first_start(free_from: int, minutes: int, bands, taken: list[tuple[int, int]]) -> int | None:
    """The earliest start from *free_from* at which the service fits in a band without touching *taken*."""
    for band_start, band_end in bands:
        start = max(free_from, band_start)
        while start + minutes <= band_end:
            clash = [end for begin, end in taken if begin < start + minutes + GAP and start < end + GAP]
            if not clash:
                return start
            start = max(clash) + GAP
    return None


class Crew:
    """The providers' scanning staff: a login per provider, item and worker, made when the schedule first needs
    it (`provider-heshan-meal-1`)."""

    def __init__(self, *, managers: dict, now: datetime):
        self.managers, self.now, self.logins = managers, now, {}

    def login(self, provider_id: int, item_code: str, worker: int) -> User:
        key = provider_id, item_code, worker
        if key not in self.logins:
            name = f"{self.managers[provider_id].username}-{item_code.removeprefix('HC-').lower()}-{worker + 1}"
            self.logins[key] = auth_service.create_user(username=name, password=DEMO_PROVIDER_PASSWORD,
                                                        role="provider", provider_id=provider_id, actor=None,
                                                        now=self.now)
        return self.logins[key]


def follow_up(called: list[tuple[int, int, int]], *, start: datetime, callers: list, now: datetime,
              rng: random.Random) -> None:
    """The follow-up calls of (provider, local day, redemption): each provider's calls of a day spread evenly
    over CALLS, the callers taking turns, so no caller records most of a provider's ratings and no provider's
    ratings bunch up within minutes. A call not yet made by *now* is left for later."""
    by_day: dict[tuple[int, int], list[int]] = defaultdict(list)
    for provider_id, day, redemption_id in called:
        by_day[provider_id, day].append(redemption_id)
    turn = 0
    for (provider_id, day), redemption_ids in sorted(by_day.items()):
        step = (CALLS[1] - CALLS[0]) / len(redemption_ids)
        offset = CALLS[0] + step * rng.random()
        for index, redemption_id in enumerate(redemption_ids):
            at = start + timedelta(days=day - 1, minutes=offset + index * step)
            if at >= now:
                break
            feedback.rate_redemption(redemption_id=redemption_id, score=demo_score(provider_id, rng), comment=None,
                                     source="phone_followup", actor=callers[turn % len(callers)], now=at)
            turn += 1


def seed_wang(*, programme, wang, admin, approver, periods: tuple[str, str], now):
    """王秀英's two months, in the order they happened; a generator that lives each month once its vouchers
    are issued (the caller issues, then calls next()).

    Before last month she chose a provider for every item. Last month: 20 meals, two baths, three
    cleanings and a medical escort, all rated by the bureau's phone follow-up; on the 9th a meal came
    late, she complained (upheld) and on the 10th switched 助餐 from 大塘镇邻里互助会 to the 鹤山 centre.
    This month so far: a meal a day (at most 12), a cleaning, and yesterday's bath — every service
    rated by her except that bath, still inside the rating window. So she has vouchers left, one
    service to rate and a history of choices.
    """
    providers = {user.username: user for user in db.session.scalars(select(User).where(User.role == "provider"))}
    last_month, this_month = periods
    last_start = settlement.month_start_instant(last_month)
    this_start = settlement.month_start_instant(this_month)
    recipient = db.session.get(Recipient, wang.recipient_id)

    def choose(item_code, login, at, **reason):
        choice.set_choice(recipient=recipient, programme=programme, item_code=item_code,
                          provider_id=providers[login].provider_id, actor=wang, now=at, **reason)

    def serve(item_code, at, *, rate: str | None, score: int = 5):
        provider = providers[current[item_code]]
        token = redemption.create_presence_code(recipient_id=recipient.id, now=at)["token"]
        done = redemption.redeem(actor=provider, now=at, presence_token=token, item_code=item_code, delivered_at=at,
                                 duration_minutes=DEMO_DURATIONS[item_code])
        if rate == "phone":
            feedback.rate_redemption(redemption_id=done.id, score=score, comment=None, source="phone_followup",
                                     actor=admin, now=at + timedelta(days=1))
        elif rate == "self":
            feedback.rate_redemption(redemption_id=done.id, score=score, comment=None, source="recipient",
                                     actor=wang, now=at + min(timedelta(hours=20), (now - at) / 2))
        return done

    current = dict(WANG_FIRST_CHOICE)
    for item_code, login in WANG_FIRST_CHOICE.items():
        choose(item_code, login, last_start - timedelta(days=20))
    yield  # last month's vouchers are issued

    def day(number: int, hour: float) -> datetime:  # local day *number* of last month, at *hour*
        return last_start + timedelta(days=number - 1, hours=hour)

    services = [("HC-MEAL", day(number, 11.5)) for number in range(1, 28) if number % 4 != 0][:20]
    services += [("HC-BATH", day(8, 15)), ("HC-BATH", day(22, 15)), ("HC-CLEAN", day(5, 9)),
                 ("HC-CLEAN", day(12, 9)), ("HC-CLEAN", day(19, 9)), ("HC-MEDICAL", day(15, 8.5))]
    switched = False
    for item_code, at in sorted(services, key=lambda service: service[1]):
        if not switched and at > day(10, 10):
            item_code_switched, login = WANG_SWITCH
            current[item_code_switched] = login
            choose(item_code_switched, login, day(10, 10), switch_reason="timeliness",
                   switch_note="午餐经常晚送，饭菜凉了。")
            switched = True
        late = item_code == "HC-MEAL" and at == day(9, 11.5)
        done = serve(item_code, at, rate="phone", score=2 if late else 4 if "datang" in current[item_code] else 5)
        if late:
            complaint = feedback.complain(provider_id=done.provider_id, text="午餐晚送了一个多小时，饭菜都凉了。",
                                          redemption_id=done.id, recipient_id=None, actor=wang,
                                          now=at + timedelta(hours=3))
            complaints.resolve_complaint(complaint_id=complaint.id, upheld=True,
                                         resolution="已核实：送餐员绕路迟到，已约谈并调整送餐路线。", actor=approver,
                                         now=at + timedelta(days=1, hours=2))
    yield  # this month's vouchers are issued

    days_before_today = (local_date(now) - local_date(this_start)).days
    if days_before_today >= 2:
        def this_day(back: int, hour: float) -> datetime:  # *back* days before today, at *hour*
            return this_start + timedelta(days=days_before_today - back, hours=hour)
        plan = [("HC-MEAL", this_day(back, 11.5)) for back in range(min(12, days_before_today), 0, -1)]
        plan += [("HC-CLEAN", this_day(2, 9)), ("HC-BATH", this_day(1, 15))]
    else:  # the month has only just begun: what fits in it so far, one service after the other
        span = now - this_start
        plan = [("HC-MEAL", this_start + span * 0.9)]
        if span >= timedelta(minutes=30):  # a bath before it, done 15 minutes or more before the meal came
            plan.append(("HC-BATH", this_start + span * 0.3))
    plan.sort(key=lambda service: service[1])
    *rated, (last_item, last_at) = plan
    for item_code, at in rated:
        serve(item_code, at, rate="self", score=5)
    serve(last_item, last_at, rate=None)  # inside the rating window, not rated yet
    yield


def seed_planted(*, programme, admin, periods: tuple[str, str], now):
    """The cases the market-integrity rules exist for, besides the burst (plan_month); a generator that
    lives each month once its vouchers are issued, like seed_wang.

    孙桂兰 (SUN) had her meals from 大塘镇邻里互助会 every other day last month until the 16th; she died on
    the 18th, and on the 21st the provider still recorded a meal for her. Her family told the bureau only
    this month: the death is recorded today, taking effect on the 18th (served_after_exit).
    赵德明 (ZHAO) was escorted to hospital by 中医医院 on the 14th of last month from 13:30 to 15:00, while
    鹤山 recorded a cleaning in his home from 13:50 to 14:50 (overlapping_service).
    Each provider's own first login serves them, at hours its other services leave free.
    """
    logins = {user.username: user for user in db.session.scalars(select(User).where(User.role == "provider"))}
    last_month, _this_month = periods
    start = settlement.month_start_instant(last_month)
    sun = recipient_service.create_recipient(**planted_recipient(SUN), actor=None, now=now)
    zhao = recipient_service.create_recipient(**planted_recipient(ZHAO), actor=None, now=now)
    before = start - timedelta(days=25)
    for person, item_code, login in ((sun, "HC-MEAL", "provider-datang"), (zhao, "HC-MEDICAL", "provider-hospital"),
                                     (zhao, "HC-CLEAN", "provider-heshan")):
        choice.set_choice(recipient=person, programme=programme, item_code=item_code,
                          provider_id=logins[login].provider_id, actor=admin, now=before)
    yield  # last month's vouchers are issued

    def serve(person, item_code, login, day, hour, minute, minutes):
        at = start + timedelta(days=day - 1, hours=hour, minutes=minute)
        token = redemption.create_presence_code(recipient_id=person.id, now=at)["token"]
        redemption.redeem(actor=logins[login], now=at, presence_token=token, item_code=item_code, delivered_at=at,
                          duration_minutes=minutes)

    for day in (*range(2, 17, 2), 21):  # lunch, 11:55 to 12:10; the 21st is after her death
        serve(sun, "HC-MEAL", "provider-datang", day, 12, 10, 15)
    serve(zhao, "HC-MEDICAL", "provider-hospital", 14, 15, 0, 90)
    serve(zhao, "HC-CLEAN", "provider-heshan", 14, 14, 50, 60)
    yield  # this month's vouchers are issued

    died_on = local_date(start) + timedelta(days=SUN_DIED_ON_DAY - 1)
    recipient_service.update_recipient(recipient=sun, status="deceased", effective_on=died_on, actor=admin, now=now)
    yield


def planted_recipient(person: dict) -> dict:
    first17 = f"{DEMO_REGION}{person['birth']:%Y%m%d}{person['sequence']}"
    return {"name": person["name"], "id_number": first17 + check_character(first17), "phone": person["phone"],
            "region_code": DEMO_REGION, "address": person["address"], "tags": person["tags"]}


def demo_score(provider_id: int, rng: random.Random) -> int:
    """Scores with a different mean per provider, so that the ranking has something to show."""
    mean = {1: 4.6, 2: 4.1, 3: 4.4, 4: 3.6}.get(provider_id, 4.0)
    return max(1, min(5, round(rng.gauss(mean, 0.7))))


def demo_logins() -> list[tuple[str, str, str, str]]:
    return [(u, p, r, note) for u, p, r, _region, note in DEMO_USERS] + [
        (*DEMO_RECIPIENT, "recipient", "王秀英, 84, lives alone: vouchers left this month, one service to rate")] + [
        (login, DEMO_PROVIDER_PASSWORD, "provider", f"{name} ({status})")
        for name, _kind, _prefix, _body, _items, status, login in DEMO_PROVIDERS]


def demo_credit_code(prefix: str, body: str) -> str:
    """A valid (invented) unified social credit code registered in the demo county."""
    first17 = f"{prefix}{DEMO_REGION}{body}{creditcode.organisation_check_character(body)}"
    return first17 + creditcode.check_character(first17)


def wang_recipient() -> dict:
    first17 = f"{DEMO_REGION}{WANG['birth']:%Y%m%d}{WANG['sequence']}"
    return {"name": WANG["name"], "id_number": first17 + check_character(first17), "phone": WANG["phone"],
            "region_code": DEMO_REGION, "address": WANG["address"], "tags": WANG["tags"]}


def demo_recipient(index: int, rng: random.Random) -> dict:
    """A believable, valid (but invented) elderly resident of the demo county."""
    birth = date(rng.randint(1928, 1965), rng.randint(1, 12), rng.randint(1, 28))
    first17 = f"{DEMO_REGION}{birth:%Y%m%d}{index % 1000:03d}"
    tags = set()
    age = 2026 - birth.year
    if age >= 80:
        tags.add("advanced_age")
    for tag, chance in (("living_alone", 0.3), ("disabled", 0.15), ("low_income", 0.2), ("extreme_poverty", 0.05)):
        if rng.random() < chance:
            tags.add(tag)
    return {
        "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
        "id_number": first17 + check_character(first17),
        "phone": f"1{rng.choice('3589')}{rng.randint(0, 999_999_999):09d}" if rng.random() < 0.7 else None,
        "region_code": DEMO_REGION,
        "address": f"蒲江县{rng.choice(TOWNS)}{rng.randint(1, 20)}村{rng.randint(1, 12)}组",
        "tags": sorted(tags),
    }


def print_logins(logins, base_url: str) -> None:
    click.echo("Demo logins (POST /api/v1/auth/token with {username, password}):")
    for username, password, role, note in logins:
        click.echo(f"  {username:<18} {password:<20} {role:<10} {note}")
    passwords = {username: password for username, password, _role, _note in logins}
    click.echo(f"Where to start: open the page, log in at {base_url}/login with the login shown")
    for audience, page, username in AUDIENCES:
        login = f"{username} / {passwords[username]}" if username else "no login"
        # Each audience name is padded to 6 CJK characters (12 columns) so the addresses line up.
        click.echo(f"  {audience}{'　' * (6 - len(audience))}  {base_url + page:<32} {login}")


@cli.cli.command("seed-demo")
@click.option("--recipients", type=click.IntRange(1, 999), default=DEMO_RECIPIENTS, show_default=True,
              help="How many recipients the demo county has.")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True,
              help="Where the app is served, for the addresses printed.")
def seed_demo_command(recipients: int, base_url: str):
    """Fill an empty database with demo data; print the demo logins and which one each audience uses."""
    base_url = base_url.rstrip("/")
    if db.session.scalar(select(func.count()).select_from(User)):
        click.echo("The database already has users; seed-demo only fills an empty database.")
        print_logins(demo_logins(), base_url)
        return
    with transaction():
        logins = seed_demo(now=utcnow(), recipients=recipients)
    print_logins(logins, base_url)
