"""`flask --app wsgi seed-demo`: a believable demo for a county civil-affairs bureau.

The demo county is 蒲江县 (region code 510131, 成都市, 四川省). Passwords are printed on purpose:
this is a demo database and never a production one (the command refuses a non-empty database).
"""

import random
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
                                      description=f"居家养老服务：{name}", actor=None, now=now)
    programme = programme_service.create_programme(
        name=f"蒲江县{now.year}年居家养老服务券", authority="蒲江县民政局", region_code=DEMO_REGION,
        starts_on=date(now.year - (now.month == 1), 1, 1), ends_on=date(now.year, 12, 31),
        items=[{"item_code": code, "unit_price_fen": price, "monthly_quota": quota}
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
            item_codes=items, capacity=2000, account={"username": login, "password": DEMO_PROVIDER_PASSWORD},
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
    login) lives the scripted months of seed_wang; the other *recipients* random ones."""
    today = local_date(now)
    last_month = f"{date(today.year, today.month, 1) - timedelta(days=1):%Y-%m}"
    this_month = f"{today:%Y-%m}"
    providers = [profile.provider for profile in enrolment.programme_providers(programme=programme, actor=admin)]
    staff = {user.provider_id: user for user in db.session.scalars(select(User).where(User.role == "provider"))}
    chosen = {}
    for recipient in recipients:
        for item in programme.items:
            provider = rng.choice([p for p in providers if item.item_code in p.item_codes])
            choice.set_choice(recipient=recipient, programme=programme, item_code=item.item_code,
                              provider_id=provider.id, actor=admin, now=now)
            chosen[recipient.id, item.item_code] = provider
    wang_months = seed_wang(programme=programme, wang=wang, admin=admin, approver=approver, periods=(last_month,
                            this_month), now=now)
    next(wang_months)  # her first choices, before last month
    for period, share in ((last_month, 1.0), (this_month, (today.day - 1) / 30)):
        issuance.issue_monthly(programme=programme, period=period, actor=admin, now=now)
        start, end = settlement.month_start_instant(period), min(settlement.month_end_instant(period), now)
        for recipient in recipients:
            for item in programme.items:
                provider = chosen[recipient.id, item.item_code]
                for _ in range(round(item.monthly_quota * share * rng.uniform(0.5, 1.0))):
                    # Recorded as it happened: scanned at delivery, rated by phone the next day.
                    delivered = start + (end - start) * rng.random()
                    token = redemption.create_presence_code(recipient_id=recipient.id, now=delivered)["token"]
                    try:
                        redeemed = redemption.redeem(
                            actor=staff[provider.id], now=delivered, presence_token=token, item_code=item.item_code,
                            delivered_at=delivered, duration_minutes=rng.choice([30, 45, 60, 90]))
                    except redemption.NoValidVoucher:
                        break  # not eligible (too young or untagged): no vouchers to redeem
                    called = delivered + timedelta(days=1)
                    if called < now and rng.random() < 0.6:  # most services get a 回访 phone call
                        feedback.rate_redemption(redemption_id=redeemed.id, score=demo_score(provider.id, rng),
                                                 comment=None, source="phone_followup", actor=admin, now=called)
        next(wang_months)
    revocation.expire_vouchers(programme=programme, actor=admin, now=now)
    for draft in settlement.create_settlements(programme=programme, period=last_month, evaluations={}, actor=admin,
                                               now=now):
        settlement.approve(settlement=draft, actor=approver, now=now)
        settlement.pay(settlement=draft, payment_reference=f"国库集中支付-{last_month}-{draft.provider_id:03d}",
                       actor=approver, now=now)


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
                                 duration_minutes=45 if item_code == "HC-MEAL" else 60)
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
    else:  # the month has only just begun: what fits in it so far
        span = now - this_start
        plan = [("HC-MEAL", this_start + span * 0.2), ("HC-BATH", this_start + span * 0.6)]
    plan.sort(key=lambda service: service[1])
    *rated, (last_item, last_at) = plan
    for item_code, at in rated:
        serve(item_code, at, rate="self", score=5)
    serve(last_item, last_at, rate=None)  # inside the rating window, not rated yet
    yield


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
