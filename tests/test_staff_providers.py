"""/staff/providers: the approval queue (pending, oldest first), every provider filtered and paged, the list as
CSV and XLSX (same filters, formulas neutralised); a provider's page (particulars, ratings, complaints with
the provider's answers, logins, programmes, applications, the history of decisions); approve, suspend,
reinstate and revoke with a reason after a confirmation that says what follows, once per form; auditors read
everything and decide nothing; a region-limited admin sees and decides only in their region. Both databases."""

import csv
import io
import re

import openpyxl
from sqlalchemy import select

from marketplace.auth.models import User
from marketplace.db import db
from providers.models import ProviderStatusChange
from providers.service import complaints as complaint_service
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, post_form, visible_text

FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')


def _as(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def _decide(client, provider_id: int, action: str, reason: str = "材料齐全，同意准入", **extra):
    """Open the confirmation, then post it (its CSRF token and form key) with *reason*."""
    address = f"/staff/providers/{provider_id}/{action}"
    page = client.get(address).get_data(as_text=True)
    form = {"csrf_token": csrf_from(page), "form_key": FORM_KEY_RE.search(page).group(1), "reason": reason, **extra}
    return client.post(address, data=form), form


def _status(build, provider_id: int) -> str:
    return build.provider_row(provider_id).status


def _history(build, provider_id: int) -> list[tuple]:
    return build.read(lambda: [(c.from_status, c.to_status, c.reason) for c in db.session.scalars(
        select(ProviderStatusChange).where(ProviderStatusChange.provider_id == provider_id)
        .order_by(ProviderStatusChange.id))])


def test_the_queue_lists_pending_providers_oldest_first_before_the_whole_list(build, client):
    meal = build.item(name="助餐")
    first = build.provider(items=[meal], status="pending", name="第一家待审核")
    second = build.provider(items=[meal], status="pending", name="第二家待审核")
    build.provider(items=[meal], name="已批准的机构")
    _as(client, build.admin())
    text = visible_text(client.get("/staff/providers"))
    queue, whole = text.split("全部服务机构", 1)
    assert "待审核（2 家，先登记的在前）" in queue
    assert queue.index(first.name) < queue.index(second.name)
    assert "已批准的机构" not in queue
    assert "共 3 家" in whole
    assert "已批准的机构" in whole


def test_filters_paging_and_a_bad_filter_refused_beside_its_field(build, client):
    meal, bath = build.item(name="助餐"), build.item(name="助浴")
    for n in range(26):
        build.provider(items=[meal], name=f"助餐机构{n:02d}")
    build.provider(items=[bath], name="助浴机构", kind="enterprise", status="suspended")
    _as(client, build.admin())
    first = visible_text(client.get("/staff/providers"))
    assert "共 27 家" in first
    assert "第 1 页，共 2 页" in first
    second = visible_text(client.get("/staff/providers?page=2"))
    assert "助浴机构" in second
    assert "助餐机构00" not in second
    for query in ("status=suspended", "kind=enterprise", f"item_code={bath}"):
        shown = visible_text(client.get(f"/staff/providers?{query}"))
        assert "共 1 家" in shown, query
        assert "助浴机构" in shown
    assert "共 0 家" in visible_text(client.get("/staff/providers?region_code=110101"))
    refused = client.get("/staff/providers?status=zombie")
    assert refused.status_code == 422
    assert 'aria-invalid="true" aria-describedby="error-status"' in refused.get_data(as_text=True)
    assert "请从给出的选项中选一个" in visible_text(refused)


def test_the_exports_hold_what_the_list_shows_with_formulas_neutralised(build, client):
    meal, bath = build.item(name="助餐"), build.item(name="助浴")
    build.provider(items=[meal], name="=HYPERLINK(\"http://x\",\"点此\")")
    build.provider(items=[bath], name="助浴机构", status="suspended")
    _as(client, build.auditor())
    answer = client.get("/staff/providers.csv?status=approved")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    body = answer.get_data(as_text=True)
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    assert rows[0][:4] == ["编号", "名称", "类型", "统一社会信用代码"]
    assert [row[1] for row in rows[1:]] == ["'=HYPERLINK(\"http://x\",\"点此\")"]
    assert rows[1][10] == "已通过审核"
    workbook = client.get(f"/staff/providers.xlsx?item_code={bath}")
    assert workbook.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(workbook.get_data()), read_only=True).active
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][1] == "名称"
    assert [row[1] for row in values[1:]] == ["助浴机构"]
    assert values[1][10] == "已暂停"


def test_a_providers_page_shows_its_particulars_feedback_logins_programmes_and_history(build, client):
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    build.rate(served, 5)
    complaint = build.complain(world.p1, redemption=served, text="饭菜送晚了")
    manager = build.read(lambda: db.session.scalar(select(User).where(User.provider_id == world.p1.id)))
    build.run(lambda: complaint_service.answer_complaint(complaint_id=complaint, answer="已向老人道歉，调整了送餐路线",
                                                         actor=db.session.get(User, manager.id), now=build.now()))
    build.set_provider_status(world.p1, "suspend")
    _as(client, build.auditor())
    page = client.get(f"/staff/providers/{world.p1.id}")
    assert page.status_code == 200
    text = visible_text(page)
    row = build.provider_row(world.p1.id)
    for expected in (row.credit_code, world.p1.legal_representative, world.p1.phone, "四川省成都市蒲江县鹤山街道",
                     "510131", "2000 次", "饭菜送晚了", "已向老人道歉，调整了送餐路线", manager.username, "负责人",
                     world.programme.name, "资质审核通过", "suspend（测试）", "已暂停", "选择它的老人 1 人",
                     "5.0 分（1 人评价）"):
        assert expected in text, expected


def test_an_admin_approves_from_the_queue_after_a_confirmation_once_per_form(build, client):
    meal = build.item(name="助餐")
    pending = build.provider(items=[meal], status="pending", name="暖阳助餐服务社")
    _as(client, build.admin())
    queue = client.get("/staff/providers").get_data(as_text=True)
    assert f"/staff/providers/{pending.id}/approve?from=queue" in queue
    confirmation = client.get(f"/staff/providers/{pending.id}/approve?from=queue")
    assert confirmation.status_code == 200
    assert "可以申请加入项目" in visible_text(confirmation)
    answer, form = _decide(client, pending.id, "approve", **{"from": "queue"})
    assert answer.status_code == 303
    assert answer.location == "/staff/providers"
    assert "已批准 暖阳助餐服务社" in visible_text(client.get("/staff/providers"))
    again = client.post(f"/staff/providers/{pending.id}/approve", data=form)  # a double click, a reload
    assert again.status_code == 303
    assert _status(build, pending.id) == "approved"
    assert _history(build, pending.id) == [(None, "pending", "registered"),
                                           ("pending", "approved", "材料齐全，同意准入")]


def test_suspend_says_how_many_recipients_chose_it_then_reinstate_and_revoke(build, client):
    world = build.world()
    build.choose_all(world, world.p1)
    _as(client, build.admin())
    confirmation = visible_text(client.get(f"/staff/providers/{world.p1.id}/suspend"))
    assert "已经选择它的 2 位老人仍然选着它" in confirmation
    assert _decide(client, world.p1.id, "suspend", "多次投诉属实")[0].location == f"/staff/providers/{world.p1.id}"
    assert _status(build, world.p1.id) == "suspended"
    assert _decide(client, world.p1.id, "reinstate", "整改完成")[0].status_code == 303
    assert _decide(client, world.p1.id, "revoke", "年检不合格")[0].status_code == 303
    assert [to for _f, to, _r in _history(build, world.p1.id)] == ["pending", "approved", "suspended", "approved",
                                                                   "revoked"]
    shown = visible_text(client.get(f"/staff/providers/{world.p1.id}"))
    assert "年检不合格" in shown
    assert "确认" not in shown  # revoked is final: nothing to decide


def test_a_missing_reason_is_refused_beside_the_field_and_changes_nothing(build, client):
    pending = build.provider(items=[build.item()], status="pending")
    _as(client, build.admin())
    answer, _form = _decide(client, pending.id, "approve", reason=" ")
    assert answer.status_code == 422
    assert 'id="error-reason"' in answer.get_data(as_text=True)
    assert "请填写这一项" in visible_text(answer)
    assert _status(build, pending.id) == "pending"


def test_a_decision_someone_made_first_is_refused_plainly(build, client):
    pending = build.provider(items=[build.item()], status="pending")
    _as(client, build.admin())
    address = f"/staff/providers/{pending.id}/approve"
    page = client.get(address).get_data(as_text=True)
    build.set_provider_status(pending, "approve")  # a colleague, meanwhile
    answer = client.post(address, data={"csrf_token": csrf_from(page), "form_key": FORM_KEY_RE.search(page).group(1),
                                        "reason": "同意"})
    assert answer.status_code == 409
    text = visible_text(answer)
    assert "这家机构现在的状态是“已通过审核”，可能别的工作人员刚刚处理过" in text
    assert "确认批准" not in text
    assert _history(build, pending.id)[-1][2] == "approve（测试）"
    assert client.get(f"/staff/providers/{pending.id}/suspend").status_code == 200
    assert client.get(f"/staff/providers/{pending.id}/reinstate").status_code == 409


def test_an_auditor_reads_everything_and_decides_nothing(build, client):
    pending = build.provider(items=[build.item()], status="pending")
    _as(client, build.auditor())
    for address in ("/staff/providers", f"/staff/providers/{pending.id}"):
        page = client.get(address)
        assert page.status_code == 200
        body = page.get_data(as_text=True)
        assert body.count('method="post"') == 1  # logging out, nothing else
        assert "/approve" not in body
        assert "/revoke" not in body
    assert client.get(f"/staff/providers/{pending.id}/approve").status_code == 403
    page = client.get("/staff/providers").get_data(as_text=True)
    posted = client.post(f"/staff/providers/{pending.id}/approve",
                         data={"csrf_token": csrf_from(page), "form_key": "k" * 24, "reason": "同意"})
    assert posted.status_code == 403
    assert _status(build, pending.id) == "pending"


def test_a_region_limited_admin_sees_and_decides_only_in_their_region(build, client):
    item = build.item()
    here = build.provider(items=[item], status="pending", regions=("510131",), name="本区机构")
    there = build.provider(items=[item], status="pending", regions=("510132",), name="外区机构")
    _as(client, build.admin(region_code="510131"))
    text = visible_text(client.get("/staff/providers"))
    assert "本区机构" in text
    assert "外区机构" not in text
    assert client.get(f"/staff/providers/{there.id}").status_code == 403
    assert client.get(f"/staff/providers/{there.id}/approve").status_code == 403
    page = client.get("/staff/providers").get_data(as_text=True)
    posted = client.post(f"/staff/providers/{there.id}/approve",
                         data={"csrf_token": csrf_from(page), "form_key": "k" * 24, "reason": "同意"})
    assert posted.status_code == 403
    assert _status(build, there.id) == "pending"
    assert _decide(client, here.id, "approve")[0].status_code == 303


def test_unknown_providers_are_not_found(build, client):
    _as(client, build.admin())
    assert client.get("/staff/providers/999999").status_code == 404
    assert post_form(client, "/staff/providers/999999/approve", {"reason": "同意"},
                     from_page="/staff/providers").status_code == 404
