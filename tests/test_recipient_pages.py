"""The recipients' pages (/me…) through Flask's test client, on both databases: what each page shows, what
each form changes, and what they refuse (beside the field, never a 5xx, never twice)."""

import re

import pytest
from sqlalchemy import select

from marketplace.db import db
from providers.models import Complaint, Rating
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, post_form, qr_codes_in, visible_text
from tests.support.races import race
from vouchers import tokens
from vouchers.models import Choice, ChoiceEvent, Redemption, Voucher

FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')


def log_in(client, user):
    answer = login_page(client, user.username, PASSWORD)
    assert answer.status_code == 302, visible_text(answer)
    return answer


@pytest.fixture
def world(build):
    world = build.world()
    build.issue(world.programme)
    return world


def page_forms(body: str) -> list[dict]:
    """Each <form method="post"> of a page: its action and its fields (hidden inputs and checked radios)."""
    forms = []
    for action, inner in re.findall(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', body, re.S):
        values = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', inner))
        forms.append({"action": action, "fields": values, "html": inner})
    return forms


def form_with(client, path: str, field: str, value: str | None = None) -> dict:
    """The form of page *path* that has the hidden *field* (with *value*, when given)."""
    body = client.get(path).get_data(as_text=True)
    for form in page_forms(body):
        if field in form["fields"] and (value is None or form["fields"][field] == value):
            return form
    raise AssertionError(f"no form with {field}={value} on {path}")


def submit(client, form: dict, **fields):
    return client.post(form["action"], data={**form["fields"], **fields})


# --- who may see the pages ---------------------------------------------------------------------------------

def test_strangers_are_sent_to_log_in_and_back(client):
    answer = client.get("/me/services")
    assert answer.status_code == 302
    assert answer.location.endswith("/login?next=/me/services")


def test_other_roles_are_refused_the_recipients_pages(client, build, world):
    log_in(client, world.p1.user)
    for path in ("/me", "/me/code", "/me/services", "/me/cards", f"/me/providers/{world.meal}"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "没有权限" in visible_text(answer)


def test_a_recipient_lands_on_their_vouchers_and_the_navigation_shows_their_pages(client, world):
    answer = log_in(client, world.alice.user)
    assert answer.location.endswith("/me")
    text = visible_text(client.get("/me"))
    for label in ("我的服务券", "我的码", "评价服务", "打印服务券"):
        assert label in text


# --- /me ---------------------------------------------------------------------------------------------------

def test_home_shows_this_months_vouchers_values_and_the_next_step(client, build, world):
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.redeem(world.p1, world.alice, world.meal)
    log_in(client, world.alice.user)
    text = visible_text(client.get("/me"))
    assert "还剩 3 次" in text
    assert "（这个月共 4 次）" in text
    assert "¥11.40" in text
    assert "¥0.60" in text
    assert f"{build.last_day().year}年{build.last_day().month}月{build.last_day().day}日" in text
    assert world.p1.name in text
    assert "请先为“助浴”选一家服务机构" in text  # the bath has no provider yet: that comes first
    assert "还有 1 次服务没有评价" in text


def test_home_says_show_the_code_once_everything_is_chosen(client, build, world):
    build.choose_all(world, world.p1, world.alice)
    log_in(client, world.alice.user)
    page = client.get("/me")
    assert "请服务人员上门时，打开“我的码”给他扫。" in visible_text(page)
    assert 'class="button wide" href="/me/code"' in page.get_data(as_text=True)


def test_home_without_vouchers_says_so(client, build):
    alice = build.recipient(login=True)
    log_in(client, alice.user)
    assert "这个月还没有服务券" in visible_text(client.get("/me"))


# --- choosing a provider -------------------------------------------------------------------------------------

def test_the_providers_page_ranks_the_eligible_providers(client, build, world):
    build.rated_services(world.p2, [world.bob], world.programme, world.meal, [5, 4])
    log_in(client, world.alice.user)
    text = visible_text(client.get(f"/me/providers/{world.meal}"))
    assert text.index(world.p2.name) < text.index(world.p1.name)
    assert "第 1 名" in text
    assert "4.5 分（2 人评价）" in text
    assert "100%" in text
    assert "服务项目 助餐、助浴" in text


def test_a_first_choice_is_confirmed_then_done_and_recorded_once(client, build, world):
    log_in(client, world.alice.user)
    page = client.get(f"/me/providers/{world.meal}/choose?provider_id={world.p1.id}")
    assert page.status_code == 200
    assert "请确认" in visible_text(page)
    form = form_with(client, f"/me/providers/{world.meal}/choose?provider_id={world.p1.id}", "step", "confirm")
    first = submit(client, form)
    assert first.status_code == 303
    again = submit(client, form)  # a double tap
    assert again.status_code == 303
    assert again.location == first.location
    done = client.get(first.location)
    assert "已经选好了" in visible_text(done)
    assert f"“助餐”由 {world.p1.name} 为您服务" in visible_text(done)
    assert build.count(ChoiceEvent, ChoiceEvent.recipient_id == world.alice.id) == 1
    choice = build.read(lambda: db.session.scalar(select(Choice).where(Choice.recipient_id == world.alice.id)))
    assert choice.provider_id == world.p1.id


def switch_form(client, world, reason: dict) -> dict:
    """Alice's meal goes from p1 to p2: the reason step posted, the confirmation's form returned."""
    reason_form = form_with(client, f"/me/providers/{world.meal}/choose?provider_id={world.p2.id}", "step", "reason")
    confirmation = submit(client, reason_form, **reason)
    assert confirmation.status_code == 200, visible_text(confirmation)
    assert "请确认" in visible_text(confirmation)
    [form] = [f for f in page_forms(confirmation.get_data(as_text=True)) if f["fields"].get("step") == "confirm"]
    return form


def test_a_switch_asks_why_then_confirms_and_keeps_the_reason(client, build, world):
    build.choose(world.alice, world.programme, world.meal, world.p1)
    log_in(client, world.alice.user)
    reason_page = visible_text(client.get(f"/me/providers/{world.meal}/choose?provider_id={world.p2.id}"))
    assert "为什么要换？" in reason_page
    for words in ("服务做得不好", "服务人员态度不好", "上门不准时", "自己要付的钱太多", "我搬家了", "别的原因"):
        assert words in reason_page
    form = switch_form(client, world, {"switch_reason": "other", "switch_note": "  饭菜太咸了  "})
    assert (form["fields"]["switch_reason"], form["fields"]["switch_note"]) == ("other", "饭菜太咸了")
    done = submit(client, form)
    assert done.status_code == 303
    assert submit(client, form).status_code == 303  # a double tap
    text = visible_text(client.get(done.location))
    assert f"“助餐”由 {world.p2.name} 为您服务" in text
    events = build.read(lambda: db.session.scalars(select(ChoiceEvent).order_by(ChoiceEvent.id)).all())
    assert [(e.from_provider_id, e.to_provider_id, e.switch_reason, e.switch_note) for e in events] == [
        (None, world.p1.id, None, None), (world.p1.id, world.p2.id, "other", "饭菜太咸了")]


def test_a_switch_without_a_reason_is_fine_too(client, build, world):
    build.choose(world.alice, world.programme, world.meal, world.p1)
    log_in(client, world.alice.user)
    form = switch_form(client, world, {})
    assert "没有说" in visible_text(client.post(form["action"], data={**form["fields"], "step": "reason"}))
    assert submit(client, form).status_code == 303
    last = build.read(lambda: db.session.scalars(select(ChoiceEvent).order_by(ChoiceEvent.id.desc())).first())
    assert (last.to_provider_id, last.switch_reason) == (world.p2.id, None)


@pytest.mark.parametrize(("reason", "field", "message"), [
    ({"switch_reason": "other"}, "switch_note", "选了“别的原因”，请写一写是什么原因"),
    ({"switch_reason": "other", "switch_note": "   "}, "switch_note", "选了“别的原因”，请写一写是什么原因"),
    ({"switch_reason": "price", "switch_note": "贵" * 201}, "switch_note", "最多 200 个字"),
    ({"switch_note": "只写了话"}, "switch_reason", "写了话，也请选一个原因"),
    ({"switch_reason": "bored"}, "switch_reason", "请从给出的选项中选一个"),
])
def test_a_bad_reason_is_refused_beside_its_field_and_nothing_changes(client, build, world, reason, field, message):
    build.choose(world.alice, world.programme, world.meal, world.p1)
    log_in(client, world.alice.user)
    reason_form = form_with(client, f"/me/providers/{world.meal}/choose?provider_id={world.p2.id}", "step", "reason")
    answer = submit(client, reason_form, **reason)
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    assert f'href="#field-{field}"' in body
    assert "为什么要换？" in visible_text(answer)  # the reason form again, not the confirmation
    assert message in visible_text(answer)
    assert not re.search("[A-Za-z]{4,}", visible_text(answer).split("English")[0].replace("recipient-b", ""))
    assert build.count(ChoiceEvent) == 1


def test_a_stale_switch_form_does_not_undo_a_change_made_meanwhile(client, build, world):
    third = build.provider(items=[world.meal], enrol_in=[world.programme])
    build.choose(world.alice, world.programme, world.meal, world.p1)
    log_in(client, world.alice.user)
    form = switch_form(client, world, {"switch_reason": "timeliness"})
    build.choose(world.alice, world.programme, world.meal, third)  # the community worker, by phone, meanwhile
    answer = submit(client, form)
    assert answer.status_code == 409
    text = visible_text(answer)
    assert "刚才有人改过这项服务的服务机构" in text
    assert f"现在为您服务的是：{third.name}" in text
    choice = build.read(lambda: db.session.scalar(select(Choice).where(Choice.recipient_id == world.alice.id)))
    assert choice.provider_id == third.id
    assert build.count(ChoiceEvent) == 2


def test_choosing_a_provider_that_cannot_serve_is_not_found(client, build, world):
    elsewhere = build.provider(items=[world.meal])  # not enrolled
    log_in(client, world.alice.user)
    for query in (f"provider_id={elsewhere.id}", "provider_id=abc", "provider_id=", "provider_id=99999999999999"):
        answer = client.get(f"/me/providers/{world.meal}/choose?{query}")
        assert answer.status_code == 404, query


def test_a_forged_choice_of_an_ineligible_provider_is_refused_and_changes_nothing(client, build, world):
    elsewhere = build.provider(items=[world.meal])
    log_in(client, world.alice.user)
    form = form_with(client, f"/me/providers/{world.meal}/choose?provider_id={world.p1.id}", "step", "confirm")
    answer = submit(client, form, provider_id=str(elsewhere.id))
    assert answer.status_code == 422
    assert "不能为您提供这项服务" in visible_text(answer)
    assert build.count(ChoiceEvent) == 0


@pytest.mark.parametrize(("fields", "status"), [
    ({"programme_id": "abc"}, 422), ({"programme_id": ""}, 422), ({"provider_id": "-1"}, 422),
    ({"provider_id": "1e9"}, 422), ({"programme_id": "99999"}, 404), ({"replacing": "x"}, 422),
    ({"step": "\x00"}, 200),  # not the confirmation: the confirmation is shown (again)
    ({"switch_note": "\x00"}, 422), ({"switch_reason": "bored"}, 422),
    ({"switch_reason": "price"}, 422),  # a first choice replaces nobody: it has no reason
])
def test_garbled_choice_forms_get_a_clear_answer_never_a_5xx(client, build, world, fields, status):
    log_in(client, world.alice.user)
    form = form_with(client, f"/me/providers/{world.meal}/choose?provider_id={world.p1.id}", "step", "confirm")
    answer = submit(client, form, **fields)
    assert answer.status_code == status
    assert build.count(ChoiceEvent) == 0


def test_unknown_services_and_programmes_are_not_found(client, world):
    log_in(client, world.alice.user)
    for path in ("/me/providers/NO-SUCH", f"/me/providers/{world.meal}?programme_id=999",
                 "/me/providers/" + "x" * 300, f"/me/providers/{world.meal}/chosen?programme_id=-4"):
        answer = client.get(path)
        assert answer.status_code in (404, 302), path  # chosen with nothing chosen goes back to the list


def test_a_form_without_its_key_or_token_is_refused(client, build, world):
    log_in(client, world.alice.user)
    form = form_with(client, f"/me/providers/{world.meal}/choose?provider_id={world.p1.id}", "step", "confirm")
    without_key = {name: value for name, value in form["fields"].items() if name != "form_key"}
    assert client.post(form["action"], data=without_key).status_code == 403
    without_token = {name: value for name, value in form["fields"].items() if name != "csrf_token"}
    assert client.post(form["action"], data=without_token).status_code == 403
    assert build.count(ChoiceEvent) == 0


# --- the presence code ---------------------------------------------------------------------------------------

def test_the_code_page_draws_a_qr_code_the_provider_can_redeem(client, build, world, app):
    build.choose_all(world, world.p1, world.alice)
    log_in(client, world.alice.user)
    page = client.get("/me/code")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    [token] = qr_codes_in(body)
    with app.app_context():
        assert tokens.read_presence_token(token, now=build.now()).recipient_id == world.alice.id
    assert "presence-code.js" in body
    redeemed = client.post("/api/v1/redemptions", json={"presence_token": token, "item_code": world.meal},
                           headers=build.headers(world.p1.user))
    assert redeemed.status_code == 201, redeemed.get_json()


def test_the_code_page_shows_the_short_code_in_two_groups_and_it_is_the_same_code(client, build, world):
    build.choose_all(world, world.p1, world.alice)
    log_in(client, world.alice.user)
    body = client.get("/me/code").get_data(as_text=True)
    groups = re.search(r'<p class="short-code"[^>]*><span>(\d{4})</span><span>(\d{4})</span></p>', body)
    assert groups, "no short code in two groups of four"
    short_code = groups.group(1) + groups.group(2)
    [token] = qr_codes_in(body)
    scanner = build.headers(world.p1.user)
    typed = client.post("/api/v1/redemptions", json={"short_code": f"{groups.group(1)} {groups.group(2)}",
                                                     "item_code": world.meal}, headers=scanner)
    assert typed.status_code == 201, typed.get_json()
    scanned = client.post("/api/v1/redemptions", json={"presence_token": token, "item_code": world.meal},
                          headers=scanner)
    assert scanned.status_code == 409  # using either uses both
    assert scanned.get_json()["error"]["code"] == "token_already_used"
    assert short_code not in visible_text(client.get("/me"))


def test_every_visit_draws_a_new_code_and_the_button_asks_for_one_without_javascript(client, world):
    log_in(client, world.alice.user)
    first = qr_codes_in(client.get("/me/code").get_data(as_text=True))
    renewed = post_form(client, "/me/code", {})
    assert renewed.status_code == 303
    assert renewed.location.endswith("/me/code")
    second = qr_codes_in(client.get(renewed.location).get_data(as_text=True))
    assert first != second


# --- services: rating and complaining ---------------------------------------------------------------------------

@pytest.fixture
def served(build, world):
    build.choose_all(world, world.p1, world.alice)
    return build.redeem(world.p1, world.alice, world.meal)


def test_the_services_page_lists_past_services_with_a_rating_form(client, build, world, served):
    log_in(client, world.alice.user)
    page = client.get("/me/services")
    text = visible_text(page)
    assert "助餐" in text
    assert world.p1.name in text
    assert "这次服务您满意吗？" in text
    for words in ("1 分 很不满意", "2 分 不满意", "3 分 一般", "4 分 满意", "5 分 很满意"):
        assert words in text
    body = page.get_data(as_text=True)
    assert body.count('name="score"') == 5


def test_a_rating_is_recorded_once_however_often_it_is_posted(client, build, world, served):
    log_in(client, world.alice.user)
    form = form_with(client, "/me/services", "redemption_id", str(served.id))
    first = submit(client, form, score="4", comment="饭菜很好")
    assert first.status_code == 303
    assert submit(client, form, score="4", comment="饭菜很好").status_code == 303
    [rating] = build.ratings()
    assert (rating["score"], rating["comment"], rating["source"]) == (4, "饭菜很好", "recipient")
    text = visible_text(client.get(first.location))
    assert "谢谢您的评价" in text
    assert "已评价：4 分，满意" in text


@pytest.mark.parametrize(("score", "message"), [
    ("", "请选一个分数"), ("0", "应在 1 到 5 之间"), ("6", "应在 1 到 5 之间"), ("abc", "请填写一个整数")])
def test_a_bad_score_is_refused_beside_the_stars(client, build, world, served, score, message):
    log_in(client, world.alice.user)
    form = form_with(client, "/me/services", "redemption_id", str(served.id))
    answer = submit(client, form, score=score)
    assert answer.status_code == 422
    assert message in visible_text(answer)
    assert f'href="#field-score-{served.id}"' in answer.get_data(as_text=True)
    assert build.ratings() == []


def test_a_stale_rating_form_of_a_service_rated_meanwhile_says_so(client, build, world, served):
    log_in(client, world.alice.user)
    form = form_with(client, "/me/services", "redemption_id", str(served.id))
    build.rate(served, 2)  # the bureau's phone follow-up got there first
    answer = submit(client, form, score="5")
    assert answer.status_code == 409
    assert "这次服务已经评价过了" in visible_text(answer)
    assert [rating["score"] for rating in build.ratings()] == [2]


def test_nobody_rates_another_recipients_service_from_their_page(client, build, world, served):
    log_in(client, world.bob.user)
    page = client.get("/me/services").get_data(as_text=True)  # bob has no service to rate: he forges alice's
    answer = client.post("/me/services/rating", data={"csrf_token": csrf_from(page), "form_key": "k" * 24,
                                                       "redemption_id": str(served.id), "score": "1"})
    assert answer.status_code == 403
    assert build.ratings() == []


def test_a_complaint_is_filed_once_and_listed(client, build, world, served):
    log_in(client, world.alice.user)
    form = next(f for f in page_forms(client.get("/me/services").get_data(as_text=True))
                if f["action"].endswith("/complaint"))
    first = submit(client, form, provider_id=str(world.p1.id), text="送来的饭是凉的")
    assert first.status_code == 303
    assert submit(client, form, provider_id=str(world.p1.id), text="送来的饭是凉的").status_code == 303
    complaints = build.read(lambda: db.session.scalars(select(Complaint)).all())
    assert [(c.provider_id, c.recipient_id, c.text) for c in complaints] == [(world.p1.id, world.alice.id,
                                                                               "送来的饭是凉的")]
    text = visible_text(client.get(first.location))
    assert "投诉已经收到" in text
    assert f"投诉 {world.p1.name}：正在处理" in text


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"text": ""}, 422, "请填写这一项"),
    ({"text": "x" * 2001}, 422, "应为 1 到 2000 个字"),
    ({"provider_id": ""}, 422, "请选一家服务机构"),
    ({"provider_id": "99999"}, 404, "没有找到"),
    ({"provider_id": "abc"}, 422, "请填写一个整数"),
    ({"redemption_id": "99999"}, 404, "没有找到"),
])
def test_a_bad_complaint_is_refused_beside_its_field(client, build, world, served, fields, status, message):
    log_in(client, world.alice.user)
    form = next(f for f in page_forms(client.get("/me/services").get_data(as_text=True))
                if f["action"].endswith("/complaint"))
    answer = submit(client, form, **{"provider_id": str(world.p1.id), "text": "服务人员迟到", **fields})
    assert answer.status_code == status
    assert message in visible_text(answer)
    assert build.count(Complaint) == 0


def test_a_complaint_about_another_recipients_service_is_not_found(client, build, world, served):
    log_in(client, world.bob.user)
    build.choose(world.bob, world.programme, world.meal, world.p1)
    form = next(f for f in page_forms(client.get("/me/services").get_data(as_text=True))
                if f["action"].endswith("/complaint"))
    answer = submit(client, form, provider_id=str(world.p1.id), text="不是我的服务", redemption_id=str(served.id))
    assert answer.status_code == 404
    assert build.count(Complaint) == 0


# --- cards ---------------------------------------------------------------------------------------------------

def test_cards_are_printed_for_issued_vouchers_only_each_with_its_voucher_token(client, build, world, served, app):
    log_in(client, world.alice.user)
    page = client.get("/me/cards")
    body = page.get_data(as_text=True)
    issued = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.status == "issued")
    decoded = qr_codes_in(body)
    with app.app_context():
        assert sorted(tokens.read_voucher_token(token) for token in decoded) == sorted(v.id for v in issued)
    assert served.voucher_id not in [v.id for v in issued]
    text = visible_text(page)
    assert issued[0].serial in text
    assert "政府支付 ¥11.40" in text
    assert "您自付 ¥0.60" in text


def test_the_cards_page_prints_one_a6_card_a_page_and_no_other_page_does(client, world):
    log_in(client, world.alice.user)
    body = client.get("/me/cards").get_data(as_text=True)
    printing = re.search(r'<link rel="stylesheet" href="(/static/voucher-cards-print.css\?v=\w+)" media="print">', body)
    assert printing
    css = client.get(printing.group(1)).get_data(as_text=True)
    assert "@page { size: 148mm 105mm;" in css
    assert ".voucher-card { break-after: page;" in css
    assert "voucher-cards-print.css" not in client.get("/me").get_data(as_text=True)
    assert "@page" not in client.get("/static/console.css").get_data(as_text=True)


def test_nobody_sees_another_recipients_redemptions_through_the_api_either(client, build, world, served):
    bob = build.headers(world.bob.user)
    assert client.get(f"/api/v1/vouchers/{served.voucher_id}", headers=bob).status_code == 404
    assert build.count(Redemption) == 1
    assert build.count(Rating) == 0


def test_form_keys_are_fresh_on_every_page(client, world, served):
    log_in(client, world.alice.user)
    first = FORM_KEY_RE.findall(client.get("/me/services").get_data(as_text=True))
    second = FORM_KEY_RE.findall(client.get("/me/services").get_data(as_text=True))
    assert len(first) == 2
    assert not set(first) & set(second)


@pytest.mark.parametrize(("raw", "text_too"), [("%ED%A0%80", False), ("%00", True), ("%FF%FE", False),
                                               ("1%00", True), ("%E4%BD", False)])
def test_hostile_bytes_in_any_form_get_a_4xx_and_change_nothing(client, build, world, served, raw, text_too):
    """Broken UTF-8 arrives as U+FFFD (a number it is not; text it may be); NUL is refused everywhere."""
    log_in(client, world.alice.user)
    page = client.get("/me/services").get_data(as_text=True)
    token = csrf_from(page)
    key = FORM_KEY_RE.search(page).group(1)
    events, complaints = build.count(ChoiceEvent), build.count(Complaint)
    for path, names in ((f"/me/providers/{world.meal}/choose", ("programme_id", "provider_id", "replacing")),
                        ("/me/services/rating", ("redemption_id", "score", "comment")),
                        ("/me/services/complaint", ("provider_id", "redemption_id", "text"))):
        for name in names:
            if name in ("comment", "text") and not text_too:
                continue
            fields = {"csrf_token": token, "form_key": key, "step": "confirm", "programme_id": str(world.programme.id),
                      "provider_id": str(world.p2.id), "replacing": str(world.p1.id),
                      "redemption_id": str(served.id), "score": "3", "text": "t", name: raw}
            body = "&".join(f"{field}={value}" for field, value in fields.items())
            answer = client.post(path, data=body.encode(), content_type="application/x-www-form-urlencoded")
            assert 400 <= answer.status_code < 500, (path, name, answer.status_code)
    assert build.count(ChoiceEvent) == events
    assert build.ratings() == []
    assert build.count(Complaint) == complaints


def test_a_form_posted_from_many_tabs_at_once_is_filed_once(app, client, build, world, served):
    log_in(client, world.alice.user)
    form = next(f for f in page_forms(client.get("/me/services").get_data(as_text=True))
                if f["action"].endswith("/complaint"))
    cookie = client.get_cookie("session").value
    tabs = []
    for _ in range(6):
        tab = app.test_client()
        tab.set_cookie("session", cookie)
        tabs.append(tab)
    fields = {**form["fields"], "provider_id": str(world.p1.id), "text": "同一个投诉点了好几次"}
    answers = race(len(tabs), lambda index: tabs[index].post(form["action"], data=fields).status_code)
    assert answers == [303] * len(tabs)
    assert build.count(Complaint) == 1
