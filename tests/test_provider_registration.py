"""A provider registers itself at /provider/register, waits at /provider/status, and hears of the bureau's
decision once, at its next login (both databases)."""

import pytest
from sqlalchemy import func, select

from marketplace.auth.models import User
from marketplace.db import db
from marketplace.demo import demo_credit_code
from providers.models import Provider
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, post_form, visible_text

GOOD_CODE = demo_credit_code("52", "MR000001")
SECRET = "three quiet rivers meet"


def form_for(world, **overrides) -> dict:
    """A complete, valid registration form for the world's region and items."""
    return {"name": "蒲江县寿安镇长乐养老服务中心", "kind": "social_organisation", "credit_code": GOOD_CODE,
            "legal_representative": "欧阳秀兰", "phone": "13800001234", "address": "四川省成都市蒲江县寿安镇长乐路8号",
            "region_codes": ["510131"], "item_codes": [world.meal, world.bath], "capacity": "300",
            "username": "changle", "password": SECRET, "password_again": SECRET, **overrides}


def counts(build) -> tuple[int, int]:
    return build.read(lambda: (db.session.scalar(select(func.count()).select_from(Provider)),
                               db.session.scalar(select(func.count()).select_from(User))))


def register(client, form: dict):
    return post_form(client, "/provider/register", form)


def test_a_valid_registration_creates_a_pending_provider_and_its_manager_login_and_logs_it_in(build, client):
    world = build.world()
    answer = register(client, form_for(world))
    assert answer.status_code == 303
    assert answer.location == "/provider/status"

    provider, user = build.read(lambda: (
        db.session.scalar(select(Provider).where(Provider.credit_code == GOOD_CODE)),
        db.session.scalar(select(User).where(User.username == "changle"))))
    assert provider.status == "pending"
    assert provider.capacity == 300
    assert provider.region_codes == ["510131"]
    assert sorted(provider.item_codes) == sorted([world.meal, world.bath])
    assert user.role == "provider"
    assert user.provider_id == provider.id
    assert user.provider_manager
    assert user.last_login_at is not None  # logged in by registering

    page = client.get("/provider/status")
    text = visible_text(page)
    assert page.status_code == 200
    assert "正在等待审核" in text
    assert "待审核" in text
    assert "民政部门审核" in text
    assert "几个工作日" in text
    assert "蒲江县寿安镇长乐养老服务中心" in text
    assert GOOD_CODE in text
    assert "13800001234" in text
    assert "助餐" in text
    assert "助浴" in text
    assert "社会组织" in text


def test_the_form_offers_the_known_regions_items_and_kinds(build, client):
    world = build.world()
    text = visible_text(client.get("/provider/register"))
    assert "510131" in text
    assert "项目" in text
    assert "助餐" in text
    assert "助浴" in text
    assert "社会组织" in text
    assert "农村集体经济组织" in text
    assert world.meal  # the world's items are the catalogue's


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "", "请填写这一项。"),
    ("kind", "", "请选一种机构类型。"),
    ("kind", "charity", "请从给出的选项中选一个。"),
    ("credit_code", "52510131MR00000", "统一社会信用代码是 18 位，现在是 15 位。"),
    ("credit_code", GOOD_CODE[:7] + "I" + GOOD_CODE[8:], "第 8 位的“I”不会出现在统一社会信用代码里"),
    ("legal_representative", "", "请填写这一项。"),
    ("phone", "12345", "请填写 11 位手机号码"),
    ("address", "", "请填写这一项。"),
    ("region_codes", [], "请至少选一个服务的地区。"),
    ("item_codes", [], "请至少选一项服务。"),
    ("region_codes", ["999999"], "请从列表里选择服务的地区。"),
    ("item_codes", ["NO-SUCH-ITEM"], "请从列表里选择服务项目。"),
    ("capacity", "0", "应在 1 到 1000000 之间。"),
    ("capacity", "很多", "请填写一个整数。"),
    ("username", "a", "应为 3 到 64 个字。"),
    ("username", "bad name!", "用户名要 3 到 64 个字符"),
    ("password", "short", "密码至少要 10 个字符。"),
    ("password", "password123", "最常见的密码之一"),
    ("password_again", "something else entirely", "两次填写的密码不一样"),
])
def test_each_bad_field_is_refused_beside_it_and_writes_nothing(build, client, field, value, message):
    world = build.world()
    before = counts(build)
    form = form_for(world, **{field: value})
    if field == "password":
        form["password_again"] = value
    if field == "kind" and not value:
        form.pop("kind")
    answer = register(client, form)
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    assert message in visible_text(answer)
    # beside its field: the field's block carries the message, and the summary links to it
    assert f'href="#field-{field}"' in body
    assert counts(build) == before
    assert SECRET not in body  # a password is never sent back


def test_the_credit_code_is_said_exactly_on_submit_too(build, client):
    world = build.world()
    wrong_check = GOOD_CODE[:17] + ("0" if GOOD_CODE[17] != "0" else "1")
    answer = register(client, form_for(world, credit_code=wrong_check))
    assert answer.status_code == 422
    assert "最后一位是校验码，和前 17 位对不上" in visible_text(answer)


def test_a_registered_credit_code_is_refused_beside_the_code(build, client):
    world = build.world()
    assert register(client, form_for(world)).status_code == 303
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/provider/status").get_data(as_text=True))})
    before = counts(build)
    answer = register(client, form_for(world, username="someone-else", name="另一家"))
    assert answer.status_code == 409
    assert "这个统一社会信用代码已经登记过。" in visible_text(answer)
    assert 'href="#field-credit_code"' in answer.get_data(as_text=True)
    assert counts(build) == before


def test_a_taken_username_is_refused_beside_the_username(build, client):
    world = build.world()
    build.user(role="admin", username="changle")
    before = counts(build)
    answer = register(client, form_for(world))
    assert answer.status_code == 409
    assert "这个用户名已经有人用了" in visible_text(answer)
    assert 'href="#field-username"' in answer.get_data(as_text=True)
    assert counts(build) == before


def test_the_same_form_posted_twice_registers_once_and_shows_the_status_both_times(build, client, app):
    world = build.world()
    page = client.get("/provider/register").get_data(as_text=True)
    form = {**form_for(world), "csrf_token": csrf_from(page)}
    first = client.post("/provider/register", data=form)
    # the second tap was sent with the first page's cookie: a fresh client stands for it
    second_client = app.test_client()
    second_page = second_client.get("/provider/register").get_data(as_text=True)
    second = second_client.post("/provider/register", data={**form, "csrf_token": csrf_from(second_page)})
    assert first.status_code == second.status_code == 303
    assert second.location == "/provider/status"
    assert build.read(lambda: db.session.scalar(select(func.count()).select_from(Provider)
                                                .where(Provider.credit_code == GOOD_CODE))) == 1
    assert "正在等待审核" in visible_text(second_client.get("/provider/status"))


def test_a_logged_in_user_is_asked_to_log_out_before_registering(build, client):
    world = build.world()
    login_page(client, world.p1.user.username, PASSWORD)
    assert "请先退出登录" in visible_text(client.get("/provider/register"))
    before = counts(build)
    answer = register(client, form_for(world))
    assert answer.status_code == 403
    assert counts(build) == before


@pytest.mark.parametrize(("typed", "said"), [
    ("", ""),
    (GOOD_CODE, "代码格式正确。"),
    (GOOD_CODE.lower(), "代码格式正确。"),
    ("5251", "统一社会信用代码是 18 位，现在是 4 位。"),
    ("52510131MR00000O1X", "第 16 位的“O”不会出现在统一社会信用代码里"),
    ("X" + GOOD_CODE[1:], "第 1 位是登记管理部门代码，“X”不是这样的代码"),
    ("58" + GOOD_CODE[2:],
     "第 2 位是机构类别代码，“8”和第 1 位对不上：第 1 位是 5 时，第 2 位只能是 1、2、3、9 之一。"),
    ("5200" + GOOD_CODE[4:], "第 3 到 8 位是登记地的行政区划代码"),
    (GOOD_CODE[:8] + "MR000002" + GOOD_CODE[16:], "第 9 到 17 位是组织机构代码"),
    (GOOD_CODE[:17] + ("0" if GOOD_CODE[17] != "0" else "1"), "最后一位是校验码"),
])
def test_the_typed_credit_code_is_checked_with_the_exact_reason(build, client, typed, said):
    answer = client.get("/provider/register/credit-code", query_string={"credit_code": typed})
    assert answer.status_code == 200
    text = visible_text(answer)
    assert said in text
    if not said:
        assert text == ""


def test_the_status_page_is_for_provider_logins_only(build, client):
    world = build.world()
    assert client.get("/provider/status").status_code in (302, 401)
    login_page(client, world.alice.user.username, PASSWORD)
    assert client.get("/provider/status").status_code == 403


def test_a_login_of_a_provider_not_approved_lands_on_its_status_with_the_reason(build, client, app):
    world = build.world()
    build.set_provider_status(world.p1, "suspend")
    answer = login_page(client, world.p1.user.username, PASSWORD)
    assert answer.location == "/provider/status"
    text = visible_text(client.get("/provider/status"))
    assert "服务已暂停" in text
    assert "suspend（测试）" in text
    # an approved provider's login lands on its home as before
    assert login_page(app.test_client(), world.p2.user.username, PASSWORD).location == "/provider"


def test_approval_is_told_once_at_the_next_login(build, client, app):
    world = build.world()
    register(client, form_for(world))
    provider_id = build.read(lambda: db.session.scalar(select(Provider.id).where(Provider.credit_code == GOOD_CODE)))
    # still pending: the next login lands on the status page, with no notice
    waiting = app.test_client()
    answer = login_page(waiting, "changle", SECRET)
    assert answer.location == "/provider/status"
    assert "通过审核" not in visible_text(waiting.get("/provider/status")).replace("已通过审核", "")

    approved = client.post(f"/api/v1/providers/{provider_id}/approve", json={"reason": "材料齐全，实地核查通过"},
                           headers=build.headers(world.admin))
    assert approved.status_code == 200

    first = app.test_client()
    answer = login_page(first, "changle", SECRET)
    assert answer.location == "/provider"
    landed = visible_text(first.get("/provider"))
    assert "您的服务机构已经通过审核，可以开始服务了。审核意见：材料齐全，实地核查通过" in landed

    again = app.test_client()
    login_page(again, "changle", SECRET)
    assert "审核意见" not in visible_text(again.get("/provider"))


@pytest.mark.parametrize(("steps", "notice", "lands"), [
    (["revoke"], "您的服务机构注册申请没有通过审核。原因：revoke（测试）", "/provider/status"),
    (["approve", "suspend"], "您的服务机构已被暂停服务。原因：suspend（测试）", "/provider/status"),
    (["approve", "suspend", "reinstate"], "您的服务机构已经恢复服务。说明：reinstate（测试）", "/provider"),
    (["approve", "revoke"], "您的服务机构已被取消资格。原因：revoke（测试）", "/provider/status"),
])
def test_each_decision_is_told_once_with_its_reason(build, client, app, steps, notice, lands):
    world = build.world()
    register(client, form_for(world))
    provider_id = build.read(lambda: db.session.scalar(select(Provider.id).where(Provider.credit_code == GOOD_CODE)))
    for action in steps:
        build.set_provider_status(provider_id, action)
    first = app.test_client()
    answer = login_page(first, "changle", SECRET)
    assert answer.location == lands
    assert notice in visible_text(first.get(lands))
    again = app.test_client()
    login_page(again, "changle", SECRET)
    assert notice not in visible_text(again.get(lands))


def test_every_login_records_its_time_api_and_console_alike(build, client, app, make_user):
    user = make_user(role="admin")
    assert build.read(lambda: db.session.get(User, user.id).last_login_at) is None
    assert client.post("/api/v1/auth/token", json={"username": user.username, "password": PASSWORD}).status_code == 200
    after_token = build.read(lambda: db.session.get(User, user.id).last_login_at)
    assert after_token is not None
    login_page(app.test_client(), user.username, PASSWORD)
    after_console = build.read(lambda: db.session.get(User, user.id).last_login_at)
    assert after_console > after_token
    client.post("/api/v1/auth/login", json={"username": user.username, "password": PASSWORD})
    assert build.read(lambda: db.session.get(User, user.id).last_login_at) > after_console


def test_every_mistake_is_said_at_once_not_one_submit_at_a_time(build, client):
    world = build.world()
    answer = register(client, form_for(world, phone="12345", credit_code=GOOD_CODE[:17] + "Y",
                                       password="short one", password_again="short one"))
    assert answer.status_code == 422
    text = visible_text(answer)
    assert "请填写 11 位手机号码" in text
    assert "最后一位是校验码" in text
    assert "密码至少要 10 个字符。" in text
