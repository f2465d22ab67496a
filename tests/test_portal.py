"""The public portal (信息公开) through Flask's test client, on both databases: what each page shows
(programmes, budgets as bars with numbers, standards and co-payments, settlements with scores, providers
with ratings, rankings with the formula's numbers, the catalogue and the negative list), in the console's
formats (¥1,234.50, 2026年12月1日), 404 for unknown and draft programmes, and a message — never a 500 —
for bad query parameters. Personal data on these pages: tests/test_privacy.py."""

import re
from fractions import Fraction

import pytest

from marketplace.catalogue import service as catalogue_service
from marketplace.db import transaction, utcnow
from marketplace.reports import service as reports
from tests.support.console import visible_text
from tests.support.scenario import face_value
from vouchers.models import Voucher


@pytest.fixture
def full(build):
    return build.full_scenario()


def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, (url, response.status_code)
    assert response.mimetype == "text/html"
    return visible_text(response)


def money(fen: int) -> str:
    yuan, cents = divmod(fen, 100)
    return f"¥{yuan:,}.{cents:02d}"


def chinese_day(day) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


# --- / ----------------------------------------------------------------------------------------------

def test_home_shows_the_programmes_in_force_with_their_budget_as_a_bar_with_numbers(build, client, full):
    build.programme(items=[(full.meal, 1000, 1)], status="draft", name="尚未发布的草稿项目")
    build.programme(items=[(full.bath, 4000, 1)], status="closed", budget_fen=123_456, name="已经结束的项目")
    ledger = build.ledger(full.programme)
    vouchers = build.vouchers(Voucher.programme_id == full.programme)

    response = client.get("/")
    text = visible_text(response)

    assert response.status_code == 200
    assert "正在实施的项目" in text
    assert "蒲江县居家养老服务券（全流程）" in text
    assert "蒲江县民政局" in text
    assert f"{chinese_day(build.first_day(-12))} — {chinese_day(build.last_day(12))}" in text
    assert "助餐" in text
    assert "助浴" in text
    assert "预算：¥500,000.00" in text
    spent = ledger.redeemed_fen + ledger.settled_fen
    assert f"已用于服务 {money(spent)}" in text
    assert f"已发券、待使用 {money(ledger.committed_fen)}" in text
    assert f"尚未发券 {money(ledger.available_fen)}" in text
    assert ledger.available_fen + ledger.committed_fen + spent == 50_000_000
    assert f"已发服务券 {len(vouchers):,} 张" in text
    assert f"已使用服务券 {sum(v.status == 'redeemed' for v in vouchers)} 张" in text
    body = response.get_data(as_text=True)
    assert 'class="bar-track"' in body
    assert f'href="/public/programmes/{full.programme}"' in body
    # the draft is not public; the closed one is listed apart
    assert "尚未发布的草稿项目" not in text
    assert "已结束的项目 已经结束的项目" in text


def test_home_explains_the_scheme_the_voucher_and_how_to_complain(client, full):
    text = page(client, "/")
    for step in ("评估领券", "自主选择服务机构", "上门服务出示码", "评价与投诉"):
        assert step in text
    # what a voucher is worth: the first item of the programme in force (the bath, HC-… codes sort first)
    assert "一般老人自付 ¥2.48（20%），政府付 ¥9.89" in text or "一般老人自付 ¥10.00（20%），政府付 ¥39.99" in text
    assert "12345" in text
    assert "投诉" in text


def test_home_links_to_the_rest_and_to_the_login(client):
    body = client.get("/").get_data(as_text=True)
    for address in ("/public/providers", "/public/rankings", "/public/catalogue", "/login"):
        assert f'href="{address}"' in body
    assert "登录" in visible_text(client.get("/"))


def test_home_with_nothing_in_force(client):
    assert "目前没有正在实施的项目" in page(client, "/")


# --- /public/programmes/<id> -------------------------------------------------------------------------

def test_a_programme_page_shows_items_standards_prices_and_co_payments(client, full):
    text = page(client, f"/public/programmes/{full.programme}")
    assert "蒲江县居家养老服务券（全流程）" in text
    assert "实施中" in text
    # standard price, the programme's unit price, the monthly quota
    assert "助餐 ¥15.00/餐 ¥12.37/餐 6 餐" in text
    assert "助浴 ¥60.00/次 ¥49.99/次 2 次" in text
    # co-payment per tier: default 20 %, disabled 10 %, low income 5 % (the scenario's programme)
    assert "一般老人 自付 20% 失能老人 自付 10% 低保老人 自付 5%" in text
    meal = [f"自付 {money(1237 - face_value(1237, p))} 政府付 {money(face_value(1237, p))}" for p in (20, 10, 5)]
    assert "助餐 " + " ".join(meal) in text
    assert money(face_value(1237, 20)) == "¥9.89"
    assert "年满 60 岁" in text
    # pay by performance, highest band first
    assert ("考核得分 80 分及以上：付应付金额的 100% 考核得分 60 分及以上：付应付金额的 85% "
            "考核得分 0 分及以上：付应付金额的 60%") in text
    assert "预留 30% 的份额给社会组织" in text


def test_a_programme_page_shows_budget_vouchers_and_the_settlements_with_scores(build, client, full):
    p1, p2, p3 = full.providers
    ledger = build.ledger(full.programme)
    text = page(client, f"/public/programmes/{full.programme}")

    assert "预算：¥500,000.00" in text
    assert f"已用于服务 {money(ledger.redeemed_fen + ledger.settled_fen)}" in text
    assert "已使用服务券 9 张" in text
    paid, approved = build.settlement(full.paid), build.settlement(full.approved)
    month = build.period(-1)
    year, number = month.split("-")
    assert (f"{year}年{int(number)}月 应付 {money(paid.gross_fen + approved.gross_fen)}，"
            f"按考核结果实付 {money(paid.net_fen + approved.net_fen)}。") in text
    for settlement, provider, status in ((paid, p1, "已支付"), (approved, p2, "已审核，待支付")):
        assert (f"{provider.name} 社会组织" if provider is p1 else f"{provider.name} 企业") in text
        assert (f"{settlement.redemptions_count} {money(settlement.gross_fen)} {settlement.performance_score} 分 "
                f"{settlement.pay_percent}% {money(settlement.net_fen)} {status}") in text
    assert approved.net_fen < approved.gross_fen  # the evaluation of 40 cost p2 part of its pay
    assert p3.name not in text  # p3's settlement is a draft: not public


def test_a_programme_without_approved_settlements_says_so(build, client):
    meal = build.item()
    programme = build.programme(items=[meal])
    assert "还没有审核通过的结算" in page(client, f"/public/programmes/{programme.id}")


def test_a_closed_programme_is_public_and_says_it_ended(build, client):
    closed = build.programme(items=[build.item()], status="closed", name="已经结束的项目")
    assert "已结束" in page(client, f"/public/programmes/{closed.id}")


@pytest.mark.parametrize("address", ["/public/programmes/999999", "/public/programmes/0",
                                     "/public/programmes/99999999999", "/public/programmes/abc"])
def test_unknown_programmes_get_the_404_page(client, address):
    text = page(client, address, 404)
    assert "找不到这个页面" in text


def test_a_draft_programme_gets_the_404_page(build, client):
    draft = build.programme(items=[build.item()], status="draft", name="尚未发布的草稿项目")
    text = page(client, f"/public/programmes/{draft.id}", 404)
    assert "找不到这个页面" in text
    assert "尚未发布的草稿项目" not in text


# --- /public/providers -------------------------------------------------------------------------------

def test_providers_are_the_approved_ones_with_kind_items_regions_and_ratings(build, client, full):
    build.provider(items=[full.meal], status="pending", name="尚未审核的服务机构")
    build.provider(items=[full.meal], status="suspended", name="已被暂停的服务机构")
    p1, p2, p3 = full.providers

    text = page(client, "/public/providers")

    assert "共 3 家" in text
    assert "尚未审核的服务机构" not in text
    assert "已被暂停的服务机构" not in text
    # the scenario's phone follow-ups: p1 5, 4, 5 (all satisfied); p2 2; p3 3
    items = " ".join(name for _code, name in sorted([(full.meal, "助餐"), (full.bath, "助浴")]))
    assert f"{p1.name} 类型 社会组织 服务项目 {items} 服务地区 510131 评价 ★★★★★ 4.7 分（3 人评价） 满意率 100%" in text
    assert f"{p2.name} 类型 企业" in text
    assert "2.0 分（1 人评价） 满意率 0%" in text
    assert f"{p3.name} 类型 社区社会组织 服务项目 助餐" in text
    assert "3.0 分（1 人评价）" in text
    assert "分页" not in text  # one page only


def test_an_unrated_provider_says_so(build, client):
    build.provider(items=[build.item()], name="新开的服务机构")
    text = page(client, "/public/providers")
    assert "新开的服务机构 类型 社会组织 服务项目 助餐 服务地区 510131 评价 还没有评价" in text


def test_providers_come_a_page_at_a_time(build, client):
    meal = build.item()
    for number in range(23):
        build.provider(items=[meal], name=f"第{number + 1:02d}号服务机构", login=False)

    first = client.get("/public/providers")
    text = visible_text(first)
    assert "共 23 家" in text
    assert "第20号服务机构" in text
    assert "第21号服务机构" not in text
    assert "第 1 页，共 2 页" in text
    assert 'href="/public/providers?page=2"' in first.get_data(as_text=True)

    second = page(client, "/public/providers?page=2")
    assert "第21号服务机构" in second
    assert "第23号服务机构" in second
    assert "第01号服务机构" not in second
    assert "上一页" in second
    assert "下一页" not in second


@pytest.mark.parametrize(("query", "status"), [("page=3", 404), ("page=999999", 404), ("page=0", 400),
                                               ("page=abc", 400), ("page=-1", 400), ("page=1.5", 400),
                                               ("page=99999999999999999999", 400)])
def test_a_bad_page_number_gets_a_message(build, client, query, status):
    build.provider(items=[build.item()])
    text = page(client, f"/public/providers?{query}", status)
    assert "没有这一页" in text
    assert "从第一页看起" in text


def test_unknown_query_parameters_are_ignored(build, client):
    build.provider(items=[build.item()], name="唯一的服务机构")
    assert "唯一的服务机构" in page(client, "/public/providers?per_page=1&sort=x&utm_source=wechat")


# --- /public/rankings --------------------------------------------------------------------------------

@pytest.fixture
def ranked(build):
    """Meals in 510131 and 510132: p_many rated 20 times averaging 4.8 (16 × 5, 4 × 4), p_few rated 5 once,
    p_low rated 3 five times, p_new unrated, and p_far (serving 510132 only) rated 1 twice."""
    meal = build.item(name="助餐", unit="餐")
    bath = build.item(name="助浴")
    programme = build.programme(items=[meal, bath], region_code="510100")
    p_many = build.provider(items=[meal], enrol_in=[programme], name="评价多的服务机构")
    p_few = build.provider(items=[meal], enrol_in=[programme], name="评价少的服务机构", kind="enterprise")
    p_new = build.provider(items=[meal], enrol_in=[programme], name="新来的服务机构")
    p_low = build.provider(items=[meal], enrol_in=[programme], name="评价低的服务机构")
    p_far = build.provider(items=[meal], enrol_in=[programme], regions=("510132",), name="邻县的服务机构")
    here = [build.recipient() for _ in range(5)]
    far = build.recipient(region_code="510132")
    build.issue(programme)
    build.rated_services(p_many, here[:2], programme, meal, [5] * 16 + [4] * 4)
    build.rated_services(p_few, here[2:3], programme, meal, [5])
    build.rated_services(p_low, here[3:], programme, meal, [3] * 5)
    build.rated_services(p_far, [far], programme, meal, [1, 1])
    return {"meal": meal, "bath": bath, "many": p_many, "few": p_few, "new": p_new, "low": p_low, "far": p_far}


def two(value) -> str:
    return f"{float(value):.2f}"


def test_rankings_show_the_order_the_numbers_and_the_formula(client, ranked):
    response = client.get("/public/rankings", query_string={"item_code": ranked["meal"], "region_code": "510131"})
    text = visible_text(response)

    assert response.status_code == 200
    assert "助餐的服务机构排名（510131）" in text
    # m = (96 + 5 + 15) / 26 over the providers serving 510131; C = 10
    m = Fraction(116, 26)
    many, few, low = (10 * m + 96) / 30, (10 * m + 5) / 11, (10 * m + 15) / 15
    assert many > few > m > low
    names = ("评价多的服务机构", "评价少的服务机构", "新来的服务机构", "评价低的服务机构")
    order = [text.index(name) for name in names]
    assert order == sorted(order)
    assert "邻县的服务机构" not in text
    assert (f"第 1 名 评价多的服务机构 类型 社会组织 评价 ★★★★★ 4.8 分（20 人评价） 满意率 100% "
            f"加权得分 {two(many)} 投诉属实 0 件 换走的老人 —") in text
    assert (f"第 2 名 评价少的服务机构 类型 企业 评价 ★★★★★ 5.0 分（1 人评价） 满意率 100% "
            f"加权得分 {two(few)} 投诉属实 0 件 换走的老人 —") in text
    assert (f"第 3 名 新来的服务机构 类型 社会组织 评价 还没有评价 满意率 — 加权得分 {two(m)} "
            f"投诉属实 0 件 换走的老人 —") in text
    assert (f"第 4 名 评价低的服务机构 类型 社会组织 评价 ★★★☆☆ 3.0 分（5 人评价） 满意率 0% "
            f"加权得分 {two(low)} 投诉属实 0 件 换走的老人 —") in text
    assert f"这次 m = {two(m)} 分，来自 26 个评价" in text
    assert "这次 C = 10" in text
    assert "加权得分 =（C × m + 这家机构得到的所有分数之和）÷（C + 这家机构的评价人数）" in text
    assert f"评价多的服务机构：（10 × {two(m)} + 96）÷（10 + 20）= {two(many)}" in text
    assert "新来的服务机构：还没有评价" not in text  # it scores m, shown as such
    assert f"新来的服务机构：（10 × {two(m)} + 0）÷（10 + 0）= {two(m)}" in text
    # the example: 3 ratings of 5 against 300 averaging 4.8, with this m
    few_example, many_example = (10 * m + 15) / 13, (10 * m + 1440) / 310
    assert f"（10 × {two(m)} + 15）÷（10 + 3）= {two(few_example)}" in text
    assert f"（10 × {two(m)} + 1440）÷（10 + 300）= {two(many_example)}" in text
    assert "不会排在有 300 个好评的机构前面" in text


def test_rankings_everywhere_take_every_region(client, ranked):
    text = page(client, f"/public/rankings?item_code={ranked['meal']}")
    assert "助餐的服务机构排名（全部地区）" in text
    assert "邻县的服务机构" in text
    assert f"这次 m = {two(Fraction(118, 28))} 分，来自 28 个评价" in text


def test_rankings_without_a_query_rank_the_first_item_and_offer_every_item_and_region(client, ranked):
    response = client.get("/public/rankings")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    first = min(ranked["meal"], ranked["bath"])
    assert f'<option value="{first}" selected>' in body
    for region in ("510131", "510132"):
        assert f'<option value="{region}">{region}</option>' in body
    assert '<form method="get" action="/public/rankings"' in body
    assert '<label for="field-item_code">服务项目</label>' in body
    assert '<label for="field-region_code">地区</label>' in body


def test_an_item_nobody_offers_ranks_nobody(client, ranked):
    text = page(client, f"/public/rankings?item_code={ranked['bath']}")
    assert "这个地区还没有通过审核、提供这项服务的服务机构" in text


def test_when_nobody_is_rated_the_order_is_explained(build, client):
    meal = build.item()
    build.provider(items=[meal], name="甲服务机构")
    text = page(client, f"/public/rankings?item_code={meal}")
    assert "甲服务机构" in text
    assert "这个范围里还没有人评价，暂时按登记的先后排列" in text
    assert "这次 m =" not in text


@pytest.mark.parametrize(("query", "field"), [
    ("item_code=NOPE", "item_code"), ("item_code=" + "X" * 40, "item_code"), ("region_code=12", "region_code"),
    ("region_code=abcdef", "region_code"), ("item_code=%00", "item_code"), ("region_code=5101310", "region_code"),
])
def test_bad_ranking_queries_get_a_message_beside_the_field_and_no_table(client, ranked, query, field):
    response = client.get(f"/public/rankings?{query}")
    body = response.get_data(as_text=True)
    text = visible_text(response)
    assert response.status_code == 422
    assert 'id="error-summary"' in body
    assert f'id="error-{field}"' in body
    assert f'href="#field-{field}"' in body
    assert "请从列表里选" in text
    assert "评价多的服务机构" not in text  # no ranking of what was not asked for
    assert "排名是怎么算的" in text  # the explanation stays


def test_the_ranking_read_model_gives_the_prior_the_ranking_used(app, ranked):
    with app.app_context(), transaction():
        board = reports.public_rankings(item_code=ranked["meal"], region_code="510131")
    assert board["prior_mean"] == pytest.approx(116 / 26)
    assert board["prior_weight"] == 10
    assert board["ratings_count"] == 26
    sums = {"评价多的服务机构": 96, "评价少的服务机构": 5, "新来的服务机构": 0, "评价低的服务机构": 15}
    for row in board["rows"]:
        expected = (10 * Fraction(116, 26) + sums[row["name"]]) / (10 + row["ratings_count"])
        assert row["bayesian_score"] == pytest.approx(float(expected))
    assert [row["name"] for row in board["rows"]] == list(sums)
    assert board["example"]["few"]["score"] < board["example"]["many"]["score"]
    assert board["regions"] == ["510131", "510132"]


# --- /public/catalogue -------------------------------------------------------------------------------

def test_the_catalogue_lists_the_six_categories_their_items_and_the_negative_list(build, client):
    build.run(lambda: catalogue_service.create_item(
        code="HC-MEAL", name="助餐", category_code="basic_public", unit="餐", standard_price_fen=1500,
        nature="service", description="居家养老服务：助餐", actor=None, now=build.now()))
    text = page(client, "/public/catalogue")
    categories = ["基本公共服务", "社会管理性服务", "行业管理与协调性服务", "技术性服务", "政府履职所需辅助性事项",
                  "其他适宜由社会力量承担的服务事项"]
    positions = [text.index(f"{number}. {name}") for number, name in enumerate(categories, start=1)]
    assert positions == sorted(positions)
    assert "助餐 标准价 ¥15.00/餐 编码 HC-MEAL 居家养老服务：助餐" in text
    assert text.count("这一类目前没有登记服务项目") == 5
    assert "负面清单" in text
    for rule in ("货物", "建设工程", "融资及借贷", "岗位聘用", "司法审判", "行政处罚", "行政强制"):
        assert rule in text
    assert "购买服务买的是服务结果，不是雇人" in text
    assert "Goods are procured" not in text  # the plain words, not the seeded legal English


# --- every portal page -------------------------------------------------------------------------------

PORTAL_PAGES = ["/", "/public/providers", "/public/rankings", "/public/catalogue"]


@pytest.mark.parametrize("address", PORTAL_PAGES)
def test_portal_pages_need_no_login_and_carry_the_console_headers(client, address):
    response = client.get(address)
    assert response.status_code == 200
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    body = response.get_data(as_text=True)
    assert "style=" not in body
    assert "<script>" not in body
    assert re.search(r"<h1>[^<]+</h1>", body)
    assert response.headers.get("Set-Cookie") is None


@pytest.mark.parametrize("address", PORTAL_PAGES)
def test_portal_pages_put_their_own_link_in_the_navigation(client, address):
    body = client.get(address).get_data(as_text=True)
    assert f'<a href="{address}" aria-current="page">' in body


# --- the read models behind the pages -------------------------------------------------------------------

def test_the_programme_report_groups_public_settlements_by_month_newest_first(app, build, full):
    p1, p2, _p3 = full.providers
    build.settle(full.programme, build.period(-2), by=build.admin())  # nothing delivered then: no settlement
    with app.app_context(), transaction():
        report = reports.public_programme_report(full.programme, now=utcnow())
        public = reports.public_programme(full.programme, now=utcnow())
    assert report["programme"] == public
    assert [month["period"] for month in report["settlements"]] == [build.period(-1)]
    month = report["settlements"][0]
    assert [row["provider_id"] for row in month["rows"]] == [p1.id, p2.id]  # p3's draft is not public
    assert month["gross_fen"] == sum(row["gross_fen"] for row in month["rows"])
    assert month["net_fen"] == build.settlement(full.paid).net_fen + build.settlement(full.approved).net_fen


def test_the_public_programme_prices_every_co_payment_tier_as_issuance_does(app, build, full):
    with app.app_context(), transaction():
        public = reports.public_programme(full.programme, now=utcnow())
    assert public["copay_tiers"] == [{"tag": "default", "percent": 20}, {"tag": "disabled", "percent": 10},
                                     {"tag": "low_income", "percent": 5}]
    meal = next(item for item in public["items"] if item["item_code"] == full.meal)
    assert [(price["copay_fen"], price["face_value_fen"]) for price in meal["prices"]] == [
        (1237 - face_value(1237, percent), face_value(1237, percent)) for percent in (20, 10, 5)]
    # what issuance really charged r0 (low income, 5 %) for a meal
    voucher = build.vouchers(Voucher.recipient_id == full.recipients[0].id, Voucher.item_code == full.meal)[0]
    assert (voucher.copay_fen, voucher.face_value_fen) == (meal["prices"][2]["copay_fen"],
                                                            meal["prices"][2]["face_value_fen"])
    ledger = build.ledger(full.programme)
    assert (public["budget_committed_fen"], public["budget_available_fen"]) == (ledger.committed_fen,
                                                                                ledger.available_fen)


def test_the_catalogue_overview_has_the_six_categories_even_empty_and_the_negative_list(app, build):
    meal = build.item(name="助餐")
    with app.app_context(), transaction():
        overview = catalogue_service.catalogue_overview()
        categories = [(entry["category"].code, [item.code for item in entry["items"]])
                      for entry in overview["categories"]]
        rules = {rule.code for rule in overview["negative_list"]}
    assert categories[0] == ("basic_public", [meal])
    assert [code for code, _items in categories] == ["basic_public", "social_management", "industry_coordination",
                                                     "technical", "government_support", "other_social"]
    assert all(items == [] for _code, items in categories[1:])
    assert rules == {"goods", "construction", "financing", "staff_hiring", "judicial", "administrative_penalty",
                     "administrative_coercion"}


def test_the_provider_directory_counts_pages_and_names_items(app, build):
    meal, bath = build.item(name="助餐"), build.item(name="助浴")
    for _ in range(5):
        build.provider(items=[meal, bath], login=False)
    with app.app_context(), transaction():
        first = reports.public_provider_directory(page=1, per_page=2)
        last = reports.public_provider_directory(page=3, per_page=2)
    assert (first["total"], first["pages"], len(first["items"])) == (5, 3, 2)
    assert len(last["items"]) == 1
    assert first["item_names"] == {meal: "助餐", bath: "助浴"}
