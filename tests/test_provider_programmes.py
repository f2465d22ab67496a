"""The provider's programmes page /provider/programmes and its apply form (both databases): what it serves,
what it could join, its applications with the bureau's reason; only the manager applies, once per form."""

import re
from types import SimpleNamespace

import pytest

from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text

FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')
PAGE = "/provider/programmes"


@pytest.fixture
def scene(build):
    """The newcomer serves meals in 蒲江县 and is enrolled in `served`; `open` (active, meals and baths, in
    蒲江县) it could join; a draft, a programme of 大邑县 and one buying only cleaning it could not."""
    meal, bath, cleaning = build.item(name="助餐", unit="餐"), build.item(name="助浴"), build.item(name="助洁")
    served = build.programme(items=[(meal, 1237, 10)], name="蒲江县助餐服务券")
    open_ = build.programme(items=[(meal, 1500, 8), (bath, 5000, 2)], name="蒲江县居家养老服务券")
    build.programme(items=[meal], status="draft", name="蒲江县明年助餐券")
    build.programme(items=[meal], region_code="510129", name="大邑县助餐服务券")
    build.programme(items=[cleaning], name="蒲江县助洁服务券")
    newcomer = build.provider(items=[meal], enrol_in=[served], name="鹤山助餐服务社")
    staff = build.user(role="provider", provider_id=newcomer.id)
    return SimpleNamespace(meal=meal, served=served, open=open_, newcomer=newcomer, staff=staff,
                           admin=build.headers(build.system_admin), manager=build.headers(newcomer.user))


def log_in(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def apply_page(scene) -> str:
    return f"{PAGE}/{scene.open.id}/apply"


def submit(client, scene, page_html: str, note: str = ""):
    return client.post(apply_page(scene), data={"csrf_token": csrf_from(page_html), "note": note,
                                                "form_key": FORM_KEY_RE.search(page_html).group(1)})


def applications(client, scene) -> list[dict]:
    return client.get("/api/v1/programme-applications", headers=scene.admin).get_json()["items"]


def test_the_page_shows_what_it_serves_at_which_price_and_what_it_could_join(client, scene):
    log_in(client, scene.newcomer.user)
    response = client.get(PAGE)
    assert response.status_code == 200
    text = visible_text(response)
    served, joinable = text.split("可以申请加入的项目", 1)
    assert "蒲江县助餐服务券" in served
    assert "助餐：¥12.37 / 餐" in served
    assert "蒲江县居家养老服务券" in joinable
    assert "助餐：¥15.00 / 餐" in joinable
    assert "助浴" not in text  # the newcomer does not offer baths
    for elsewhere in ("蒲江县明年助餐券", "大邑县助餐服务券", "蒲江县助洁服务券"):
        assert elsewhere not in text
    assert f'href="{apply_page(scene)}"' in response.get_data(as_text=True)
    assert "还没有申请过" in text


def test_the_manager_applies_with_a_note_and_sees_it_pending(client, scene):
    log_in(client, scene.newcomer.user)
    form = client.get(apply_page(scene))
    assert form.status_code == 200
    assert "蒲江县居家养老服务券" in visible_text(form)
    answer = submit(client, scene, form.get_data(as_text=True), note="有 12 名助餐员")
    assert answer.status_code == 303
    assert answer.location == f"{PAGE}#applications"
    [application] = applications(client, scene)
    assert application["status"] == "pending"
    assert application["programme_id"] == scene.open.id
    assert application["note"] == "有 12 名助餐员"
    text = visible_text(client.get(PAGE))
    assert "申请已经提交" in text
    assert "已经申请，等待民政部门审核。" in text
    assert "等待审核" in text.split("我的申请", 1)[1]


def test_a_double_tap_or_a_reload_applies_once(client, scene):
    log_in(client, scene.newcomer.user)
    page = client.get(apply_page(scene)).get_data(as_text=True)
    first, second = submit(client, scene, page), submit(client, scene, page)
    assert first.status_code == second.status_code == 303
    assert second.location == first.location
    assert len(applications(client, scene)) == 1


def test_a_second_form_after_applying_is_refused_with_a_plain_sentence(client, scene):
    log_in(client, scene.newcomer.user)
    page = client.get(apply_page(scene)).get_data(as_text=True)
    assert submit(client, scene, page).status_code == 303
    again = client.get(apply_page(scene))
    assert again.status_code == 409
    assert "已经申请过加入这个项目" in visible_text(again)
    assert "提交申请" not in visible_text(again)
    answer = submit(client, scene, page.replace(FORM_KEY_RE.search(page).group(1), "f" * 32))
    assert answer.status_code == 409
    assert "已经申请过加入这个项目" in visible_text(answer)
    assert len(applications(client, scene)) == 1


def test_a_note_too_long_is_shown_again_with_the_message_beside_it(client, scene):
    log_in(client, scene.newcomer.user)
    page = client.get(apply_page(scene)).get_data(as_text=True)
    answer = submit(client, scene, page, note="长" * 501)
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    assert 'id="error-note"' in body
    assert "最多 500 个字" in visible_text(answer)
    assert "长" * 501 in body  # what was typed is kept
    assert applications(client, scene) == []


def test_a_programme_it_serves_already_cannot_be_applied_to(client, scene):
    log_in(client, scene.newcomer.user)
    answer = client.get(f"{PAGE}/{scene.served.id}/apply")
    assert answer.status_code == 409
    assert "这家服务机构已经加入这个项目" in visible_text(answer)


def test_the_bureaus_reason_for_a_refusal_is_shown(client, scene):
    log_in(client, scene.newcomer.user)
    submit(client, scene, client.get(apply_page(scene)).get_data(as_text=True))
    [application] = applications(client, scene)
    client.post(f"/api/v1/programme-applications/{application['id']}/refuse",
                json={"reason": "本年度名额已满，请明年再申请"}, headers=scene.admin)
    mine = visible_text(client.get(PAGE)).split("我的申请", 1)[1]
    assert "未同意" in mine
    assert "本年度名额已满，请明年再申请" in mine


def test_an_accepted_application_moves_the_programme_to_those_it_serves(client, scene):
    log_in(client, scene.newcomer.user)
    submit(client, scene, client.get(apply_page(scene)).get_data(as_text=True))
    [application] = applications(client, scene)
    client.post(f"/api/v1/programme-applications/{application['id']}/accept", json={}, headers=scene.admin)
    served, rest = visible_text(client.get(PAGE)).split("可以申请加入的项目", 1)
    assert "蒲江县居家养老服务券" in served
    assert "已同意" in rest.split("我的申请", 1)[1]


def test_scanning_staff_see_the_page_but_do_not_apply(client, scene):
    log_in(client, scene.staff)
    response = client.get(PAGE)
    assert response.status_code == 200
    assert "请用本机构的管理员账号申请" in visible_text(response)
    assert f'href="{apply_page(scene)}"' not in response.get_data(as_text=True)
    assert client.get(apply_page(scene)).status_code == 403
    page = client.get(PAGE).get_data(as_text=True)
    answer = client.post(apply_page(scene), data={"csrf_token": csrf_from(page), "form_key": "k" * 32})
    assert answer.status_code == 403
    assert applications(client, scene) == []


def test_a_provider_sees_only_its_own_applications(client, scene, build):
    other = build.provider(items=[scene.meal], name="另一家助餐社")
    client.post(f"/api/v1/programmes/{scene.open.id}/applications", json={"note": "别人的申请"},
                headers=build.headers(other.user))
    log_in(client, scene.newcomer.user)
    text = visible_text(client.get(PAGE))
    assert "还没有申请过" in text
    assert "别人的申请" not in text


def test_a_suspended_provider_is_told_why_it_cannot_apply(client, scene, build):
    build.set_provider_status(scene.newcomer, "suspend")
    log_in(client, scene.newcomer.user)
    response = client.get(PAGE)
    assert "现在不能申请加入项目" in visible_text(response)
    assert f'href="{apply_page(scene)}"' not in response.get_data(as_text=True)
    answer = client.get(apply_page(scene))
    assert answer.status_code == 409
    assert "服务机构还没有通过审核或已被暂停" in visible_text(answer)


def test_only_provider_logins_open_it(client, scene, build):
    assert client.get(PAGE).status_code == 302  # to the login page
    recipient = build.recipient(login=True)
    log_in(client, recipient.user)
    assert client.get(PAGE).status_code == 403
