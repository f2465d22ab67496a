"""/staff/recipients: search by name, phone or the last 4 of the masked ID, filters, paging, and the look-up
by full ID number (posted, never in an address, never stored), inside the admin's region only. Both databases."""

from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from tests.conftest import PASSWORD
from tests.support.console import login_page, post_form, visible_text


def _as(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def test_search_by_name_phone_and_id_tail(build, client):
    li = build.recipient(name="李桂英", phone="13800001111")
    build.recipient(name="张建国", phone="13900002222")
    _as(client, build.admin())
    assert "李桂英" in visible_text(client.get("/staff/recipients?q=桂英"))
    assert "张建国" not in visible_text(client.get("/staff/recipients?q=桂英"))
    assert "张建国" in visible_text(client.get("/staff/recipients?q=0000222"))
    tail = li.id_number_masked[-4:]
    assert "李桂英" in visible_text(client.get(f"/staff/recipients?q={tail}"))


def test_the_list_never_shows_a_full_id_number(build, client):
    li = build.recipient(name="李桂英")
    _as(client, build.admin())
    page = client.get("/staff/recipients").get_data(as_text=True)
    assert li.id_number not in page
    assert li.id_number_masked in page


def test_bad_filters_are_refused_beside_the_field(build, client):
    _as(client, build.admin())
    page = client.get("/staff/recipients?status=zombie&page=0")
    assert page.status_code == 422
    assert 'id="field-status"' in page.get_data(as_text=True)
    assert "请从给出的选项中选一个" in visible_text(page)


def test_paging(build, client):
    for n in range(27):
        build.recipient(name=f"王{n:02d}")
    _as(client, build.admin())
    first = visible_text(client.get("/staff/recipients"))
    assert "共 27 人" in first
    assert "第 1 页，共 2 页" in first
    second = visible_text(client.get("/staff/recipients?page=2"))
    assert "王26" in second
    assert "王00" not in second


def test_a_region_limited_admin_finds_only_its_region(build, client):
    build.recipient(name="李桂英", region_code="510131")
    build.recipient(name="赵大娘", region_code="510132")
    _as(client, build.admin(region_code="510131"))
    text = visible_text(client.get("/staff/recipients"))
    assert "李桂英" in text
    assert "赵大娘" not in text


def test_look_up_by_full_id_number_opens_the_recipient_and_keeps_no_number(build, client, app):
    li = build.recipient(name="李桂英")
    _as(client, build.admin())
    answer = post_form(client, "/staff/recipients/lookup", {"id_number": li.id_number}, from_page="/staff/recipients")
    assert answer.status_code == 302
    assert answer.location == f"/staff/recipients/{li.id}/act"
    build.set_recipient_status(li, "deceased")
    shown = post_form(client, "/staff/recipients/lookup", {"id_number": li.id_number}, from_page="/staff/recipients")
    assert shown.status_code == 200
    assert "共 1 人" in visible_text(shown)
    assert li.id_number not in shown.get_data(as_text=True)
    with app.app_context():
        from marketplace.db import db
        events = db.session.scalars(select(AuditEvent)).all()
        assert all(li.id_number not in str(event.data) for event in events)


def test_look_up_outside_the_region_or_unknown_says_so_beside_the_field(build, client):
    elsewhere = build.recipient(name="赵大娘", region_code="510132")
    _as(client, build.admin(region_code="510131"))
    answer = post_form(client, "/staff/recipients/lookup", {"id_number": elsewhere.id_number},
                       from_page="/staff/recipients")
    assert answer.status_code == 404
    body = answer.get_data(as_text=True)
    assert 'id="error-id_number"' in body
    assert "您的区域内没有登记这个身份证号码的老人" in visible_text(answer)
    assert elsewhere.id_number not in body


def test_an_invalid_number_is_refused_beside_the_field(build, client):
    _as(client, build.admin())
    answer = post_form(client, "/staff/recipients/lookup", {"id_number": "12345"}, from_page="/staff/recipients")
    assert answer.status_code == 422
    assert "身份证号码不正确" in visible_text(answer)
    blank = post_form(client, "/staff/recipients/lookup", {"id_number": " "}, from_page="/staff/recipients")
    assert blank.status_code == 422
    assert "请填写这一项" in visible_text(blank)


def test_auditors_search_but_may_not_look_up(build, client):
    build.recipient(name="李桂英")
    _as(client, build.auditor())
    page = client.get("/staff/recipients")
    assert "李桂英" in visible_text(page)
    assert "/staff/recipients/lookup" not in page.get_data(as_text=True)
    refused = post_form(client, "/staff/recipients/lookup", {"id_number": "x"}, from_page="/staff/recipients")
    assert refused.status_code == 403


def test_recipients_may_not_open_the_list(build, client):
    world = build.world()
    _as(client, world.alice.user)
    assert client.get("/staff/recipients").status_code == 403
