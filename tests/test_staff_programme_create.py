"""Creating a programme from the staff console, /staff/programmes/new (both databases): an admin fills in
every field of POST /api/v1/programmes and gets a draft; each refusal is shown beside its field (an item's
price beside that item, a rule's beside its row) and nothing is written; a double post creates one; a
region-limited admin creates only inside the region; auditors and other roles are refused."""

import re

import pytest
from sqlalchemy import select

from marketplace.db import db
from marketplace.programmes.models import Programme
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text

PAGE = "/staff/programmes/new"
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')


@pytest.fixture
def catalogue(build):
    """Two catalogue items: meals (standard ¥15.00) and baths (standard ¥60.00)."""
    return {"meal": build.item(name="助餐", price=1500), "bath": build.item(name="助浴", price=6000)}


def logged_in(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302
    return client


def filled(catalogue, **changes) -> dict:
    """A whole form as an admin fills it in: meals at ¥12.50 four times a month, baths unchosen."""
    meal, bath = catalogue["meal"], catalogue["bath"]
    form = {
        "name": "蒲江县2027年居家养老服务券", "authority": "蒲江县民政局", "region_code": "510131",
        "starts_on": "2027-01-01", "ends_on": "2027-12-31",
        "item": [meal], f"price-{meal}": "12.50", f"quota-{meal}": "4", f"price-{bath}": "60.00", f"quota-{bath}": "",
        "min_age": "65", "tags_any": ["low_income", "disabled"],
        "copay-default": "20", "copay-low_income": "5", "copay-disabled": "",
        "reserved_share_percent": "30",
        "rule-0-min_score": "0", "rule-0-pay_percent": "60", "rule-1-min_score": "80", "rule-1-pay_percent": "100",
        "rule-2-min_score": "", "rule-2-pay_percent": "",
        "rating_window_days": "14", "reversal_window_hours": "24", "choice_required": "false",
    }
    form.update(changes)
    return form


def post(client, data: dict, *, key: str | None = None):
    page = client.get(PAGE).get_data(as_text=True)
    return client.post(PAGE, data={**data, "csrf_token": csrf_from(page),
                                   "form_key": key or FORM_KEY.search(page).group(1)})


def programmes(app) -> list[Programme]:
    with app.app_context():
        found = db.session.scalars(select(Programme).order_by(Programme.id)).all()
        for programme in found:
            _ = programme.items
        return found


def test_the_form_offers_every_catalogue_item_at_its_standard_price(build, client, catalogue):
    page = logged_in(client, build.admin(region_code="510131")).get(PAGE)
    assert page.status_code == 200
    body, text = page.get_data(as_text=True), visible_text(page)
    assert "助餐" in text
    assert "助浴" in text
    assert f'name="price-{catalogue["bath"]}" type="text" inputmode="decimal" value="60.00"' in body
    assert 'name="region_code" type="text" value="510131"' in body  # the admin's own region, filled in
    for label in ("项目名称", "主管部门", "最低年龄（周岁）", "一般老人（%）", "预留给社会组织的份额（%）",
                  "服务后几天内可以评价", "核销后几小时内可以撤销", "老人要先选定服务机构才能用券吗？"):
        assert label in text


def test_an_admin_creates_a_draft_with_every_field_as_filled_in(app, build, client, catalogue):
    logged_in(client, build.admin())
    answer = post(client, filled(catalogue))
    assert answer.status_code == 303
    [programme] = programmes(app)
    assert answer.location == f"/staff/programmes/{programme.id}"  # its dashboard, with the news
    assert "已建立草稿项目“蒲江县2027年居家养老服务券”" in visible_text(client.get(answer.location))
    assert programme.status == "draft"
    assert (programme.name, programme.authority, programme.region_code) == (
        "蒲江县2027年居家养老服务券", "蒲江县民政局", "510131")
    assert (str(programme.starts_on), str(programme.ends_on)) == ("2027-01-01", "2027-12-31")
    assert [(item.item_code, item.unit_price_fen, item.monthly_quota) for item in programme.items] == [
        (catalogue["meal"], 1250, 4)]
    assert programme.eligibility == {"min_age": 65, "tags_any": ["disabled", "low_income"]}
    assert programme.copay_percent == {"default": 20, "low_income": 5}
    assert programme.reserved_share_percent == 30
    assert programme.settlement_rules == [{"min_score": 0, "pay_percent": 60}, {"min_score": 80, "pay_percent": 100}]
    assert (programme.rating_window_days, programme.reversal_window_hours) == (14, 24)
    assert programme.choice_required is False
    assert build.ledger(programme).allocated_fen == 0


def test_the_same_form_posted_twice_creates_one_programme(app, build, client, catalogue):
    logged_in(client, build.admin())
    first = post(client, filled(catalogue), key="same-key-for-both-posts")
    again = post(client, filled(catalogue), key="same-key-for-both-posts")
    assert (first.status_code, again.status_code) == (303, 303)
    assert again.location == first.location
    assert len(programmes(app)) == 1


def test_each_refusal_is_shown_beside_its_field_and_nothing_is_written(app, build, client, catalogue):
    meal, bath = catalogue["meal"], catalogue["bath"]
    logged_in(client, build.admin())
    answer = post(client, filled(
        catalogue, name="", item=[meal, bath], **{f"price-{meal}": "十二元"},
        **{f"quota-{bath}": "", "copay-low_income": "150", "rule-1-pay_percent": "", "min_age": "abc"}))
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)

    def beside(field: str) -> str:
        found = re.search(rf'<p class="field-error" id="error-{re.escape(field)}">([^<]+)</p>', body)
        assert found, f"no message beside {field}"
        return found.group(1)

    assert beside("name") == "请填写这一项。"
    assert beside(f"price-{meal}") == "请填写金额（元），例如 15 或 15.50。"
    assert beside(f"quota-{bath}") == "请填写这一项。"
    assert beside("copay-low_income") == "应在 0 到 100 之间。"
    assert beside("rule-1-pay_percent") == "请填写这一项。"
    assert beside("min_age") == "请填写一个整数。"
    assert 'href="#field-name"' in body  # the summary at the top links to each
    assert 'value="十二元"' in body  # what was typed is kept
    assert programmes(app) == []


def test_the_services_rules_are_said_beside_the_rules_and_the_items(app, build, client, catalogue):
    logged_in(client, build.admin())
    no_items = post(client, filled(catalogue, item=[]))
    assert no_items.status_code == 422
    assert "请至少选一个服务项目。" in visible_text(no_items)
    no_zero = post(client, filled(catalogue, **{"rule-0-min_score": "10"}))
    assert no_zero.status_code == 422
    assert "要有一条从 0 分开始的规则" in visible_text(no_zero)
    assert 'id="field-settlement_rules"' in no_zero.get_data(as_text=True)
    lower_pay = post(client, filled(catalogue, **{"rule-1-pay_percent": "50"}))
    assert "分数越高，付款比例不能越低。" in visible_text(lower_pay)
    backwards = post(client, filled(catalogue, ends_on="2026-12-01"))
    assert backwards.status_code == 422
    said = '<p class="field-error" id="error-ends_on">结束日期不能早于开始日期。</p>'
    assert said in backwards.get_data(as_text=True)
    no_default = post(client, filled(catalogue, **{"copay-default": ""}))
    assert "请填写一般老人的自付比例。" in visible_text(no_default)
    too_dear = post(client, filled(catalogue, **{f"price-{catalogue['meal']}": "20000"}))
    assert "单价应在 ¥0.01 到 ¥10,000.00 之间。" in visible_text(too_dear)
    assert programmes(app) == []


def test_a_region_limited_admin_creates_only_inside_its_region(app, build, client, catalogue):
    logged_in(client, build.admin(region_code="510131"))
    outside = post(client, filled(catalogue, region_code="510129"))
    assert outside.status_code == 403
    assert "您只能在 510131 区域内建立项目。" in visible_text(outside)
    assert programmes(app) == []
    assert post(client, filled(catalogue)).status_code == 303
    assert [p.region_code for p in programmes(app)] == ["510131"]


def test_an_auditor_gets_no_form_and_a_posted_one_is_refused(app, build, client, catalogue):
    admin_page = client.get(PAGE)  # strangers are sent to log in first
    assert admin_page.status_code == 302
    logged_in(client, build.auditor())
    assert client.get(PAGE).status_code == 403
    home = client.get("/staff").get_data(as_text=True)
    assert PAGE not in home
    assert "新建项目" not in home
    refused = client.post(PAGE, data={**filled(catalogue), "csrf_token": csrf_from(home), "form_key": "k" * 24})
    assert refused.status_code == 403
    assert programmes(app) == []


def test_providers_and_recipients_may_not_open_the_form(build, client, catalogue):
    world = build.world()
    logged_in(client, world.p1.user)
    assert client.get(PAGE).status_code == 403


