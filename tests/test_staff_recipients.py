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


# --- the list's exports ------------------------------------------------------------------------------------

def test_the_export_is_what_the_list_shows_with_masked_ids_only(build, client):
    li = build.recipient(name="李桂英", tags=("low_income",))
    zhang = build.recipient(name="张建国")
    build.recipient(name="赵大娘", region_code="510132")
    _as(client, build.admin(region_code="510131"))
    answer = client.get("/staff/recipients.csv?q=李")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeff编号,姓名,身份证号码（隐去中间）")
    assert li.id_number_masked in text
    assert "低保" in text
    assert li.id_number not in text
    assert zhang.name not in text
    assert "赵大娘" not in text
    everyone = client.get("/staff/recipients.csv").get_data(as_text=True)
    assert "张建国" in everyone
    assert "赵大娘" not in everyone
    workbook = client.get("/staff/recipients.xlsx?q=李")
    assert workbook.status_code == 200
    assert workbook.data[:2] == b"PK"
    workbook.close()


def test_the_list_links_its_exports_with_its_filters(build, client):
    build.recipient(name="李桂英")
    _as(client, build.admin())
    page = client.get("/staff/recipients?q=桂英&status=active").get_data(as_text=True)
    assert "/staff/recipients.csv?q=" in page
    assert "status=active" in page


def test_a_bad_filter_on_the_export_answers_the_list_with_the_refusal(build, client):
    _as(client, build.admin())
    assert client.get("/staff/recipients.csv?status=zombie").status_code == 422


# --- a recipient's page ------------------------------------------------------------------------------------

def test_a_recipients_page_shows_vouchers_choices_switches_services_ratings_and_complaints(build, client):
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.alice, world.programme, world.meal, world.p2, reason="timeliness", note="总是迟到")
    served = build.redeem(world.p2, world.alice, world.meal)
    build.rate(served, 4)
    build.complain(world.p2, redemption=served, text="饭菜太凉")
    _as(client, build.admin())
    page = client.get(f"/staff/recipients/{world.alice.id}")
    assert page.status_code == 200
    text = visible_text(page)
    assert world.alice.id_number_masked in text
    assert world.alice.id_number not in page.get_data(as_text=True)
    assert "本月的服务券" in text
    assert "助餐" in text
    assert "不准时：总是迟到" in text
    assert "4 分（满分 5 分）" in text
    assert "饭菜太凉" in text
    assert f"/staff/recipients/{world.alice.id}/act" in page.get_data(as_text=True)
    assert f"/staff/recipients/{world.alice.id}/status?to=deceased" in page.get_data(as_text=True)


def test_auditors_read_a_recipients_page_without_any_control(build, client):
    world = build.world()
    build.issue(world.programme)
    _as(client, build.auditor())
    page = client.get(f"/staff/recipients/{world.alice.id}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "本月的服务券" in visible_text(page)
    assert "/act" not in body
    assert "/status" not in body
    assert "<form" not in body.split("<main", 1)[1]
    assert client.get(f"/staff/recipients/{world.alice.id}/status").status_code == 403
    refused = post_form(client, f"/staff/recipients/{world.alice.id}/status",
                        {"status": "deceased", "form_key": "k" * 20}, from_page="/staff/recipients")
    assert refused.status_code == 403


def test_an_admin_of_another_region_may_not_open_the_recipient(build, client):
    elsewhere = build.recipient(name="赵大娘", region_code="510132")
    _as(client, build.admin(region_code="510131"))
    assert client.get(f"/staff/recipients/{elsewhere.id}").status_code == 403
    assert client.get(f"/staff/recipients/{elsewhere.id}/status").status_code == 403
    assert client.get("/staff/recipients/999999").status_code == 404


# --- recording a death or a move ---------------------------------------------------------------------------

def _open_vouchers(build, recipient):
    from vouchers.models import Voucher
    return build.vouchers(Voucher.recipient_id == recipient.id, Voucher.status == "issued")


def test_the_confirmation_says_what_will_be_revoked_and_released_then_the_change_does_it_once(build, client, app):
    world = build.world()
    build.issue(world.programme)
    open_vouchers = _open_vouchers(build, world.alice)
    assert open_vouchers
    total = sum(v.face_value_fen for v in open_vouchers)
    _as(client, build.admin())
    address = f"/staff/recipients/{world.alice.id}/status"
    confirm = client.get(address + "?to=deceased")
    text = visible_text(confirm)
    assert f"作废 {len(open_vouchers)} 张还没有使用的服务券" in text
    assert f"¥{total / 100:,.2f}" in text
    assert len(_open_vouchers(build, world.alice)) == len(open_vouchers)  # the preview changed nothing
    html = confirm.get_data(as_text=True)
    from tests.support.console import csrf_from
    key = html.split('name="form_key" value="', 1)[1].split('"', 1)[0]
    today = html.split('name="effective_on" type="date" value="', 1)[1].split('"', 1)[0]
    data = {"status": "deceased", "effective_on": today, "form_key": key, "csrf_token": csrf_from(html)}
    first = client.post(address, data=data)
    assert first.status_code == 303
    assert first.location.endswith(f"/staff/recipients/{world.alice.id}")
    again = client.post(address, data=data)  # a double tap
    assert again.status_code == 303
    assert _open_vouchers(build, world.alice) == []
    shown = visible_text(client.get(first.location))
    assert f"已登记为已故。作废了 {len(open_vouchers)} 张未使用的服务券" in shown
    assert "登记为迁出" not in shown
    with app.app_context():
        from marketplace.db import db
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "recipient.updated")).all()
        assert len(events) == 1


def test_a_status_without_a_choice_is_refused_beside_the_field(build, client):
    li = build.recipient(name="李桂英")
    _as(client, build.admin())
    address = f"/staff/recipients/{li.id}/status"
    html = client.get(address).get_data(as_text=True)
    from tests.support.console import csrf_from
    key = html.split('name="form_key" value="', 1)[1].split('"', 1)[0]
    refused = client.post(address, data={"status": "active", "form_key": key, "csrf_token": csrf_from(html)})
    assert refused.status_code == 422
    assert "请从给出的选项中选一个" in visible_text(refused)


def test_a_deceased_recipient_offers_no_change(build, client):
    li = build.recipient(name="李桂英", status="deceased")
    _as(client, build.admin())
    assert "已故的记录不能再改状态" in visible_text(client.get(f"/staff/recipients/{li.id}/status"))
    assert "/status" not in client.get(f"/staff/recipients/{li.id}").get_data(as_text=True)
