"""/staff/complaints: the queue (open first, oldest first, with age and the provider's answer; filters,
paging, CSV/XLSX with typed texts neutralised), one complaint's page and its resolution (admins only, once
per form; auditors read without a form and are refused a post), and /staff/rankings. Both databases."""

import csv
import io
import re
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from marketplace.auth.models import User
from marketplace.db import db
from providers.models import Complaint
from providers.service import complaints
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, post_form, visible_text

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
ANSWER = "已核实：那天送餐车坏了，已向老人道歉。"


def _as(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


@pytest.fixture
def queue(build):
    """alice complained about a meal from p1 ten days ago (p1 answered), bob about p2 two days ago; an older
    complaint about p2 is resolved."""
    world = build.world()
    build.issue(world.programme)
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    old = build.complain(world.p1, redemption=served, at=build.now() - timedelta(days=10),
                         text="送餐晚了一个小时，饭菜是凉的")
    new = build.complain(world.p2, recipient=world.bob, at=build.now() - timedelta(days=2), text="=HYPERLINK(\"x\")")
    done = build.complain(world.p2, recipient=world.bob, at=build.now() - timedelta(days=20), text="上门迟到")
    build.resolve(done, upheld=False)
    build.run(lambda: complaints.answer_complaint(complaint_id=old, answer=ANSWER,
                                                  actor=db.session.get(User, world.p1.user.id), now=build.now()))
    return world, old, new, done, served


def test_open_complaints_come_first_oldest_first_with_age_and_answer(build, client, queue):
    world, old, new, done, _served = queue
    _as(client, build.admin())
    page = client.get("/staff/complaints")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert body.index(f'id="complaint-{old}"') < body.index(f'id="complaint-{new}"') < body.index(
        f'id="complaint-{done}"')
    text = visible_text(page)
    assert "共 3 件投诉" in text
    assert "已等待 10 天" in text
    assert "已等待 2 天" in text
    assert ANSWER in text
    assert world.p1.user.username in text  # who answered
    assert "未答复" in text


def test_filters_by_status_provider_and_answered(build, client, queue):
    world, old, new, done, _served = queue
    _as(client, build.admin())
    shown = client.get("/staff/complaints?status=open&answered=false").get_data(as_text=True)
    assert f'id="complaint-{new}"' in shown
    assert f'id="complaint-{old}"' not in shown
    assert f'id="complaint-{done}"' not in shown
    by_provider = client.get(f"/staff/complaints?provider_id={world.p2.id}").get_data(as_text=True)
    assert f'id="complaint-{new}"' in by_provider
    assert f'id="complaint-{done}"' in by_provider
    assert f'id="complaint-{old}"' not in by_provider


def test_a_bad_filter_is_refused_beside_its_field(build, client, queue):
    _as(client, build.admin())
    page = client.get("/staff/complaints?status=zombie")
    assert page.status_code == 422
    assert 'id="error-status"' in page.get_data(as_text=True)


def test_paging(build, client):
    world = build.world()
    people = [world.alice, world.bob, *(build.recipient() for _ in range(7))]  # at most 3 open complaints each
    for n in range(27):
        build.complain(world.p1, recipient=people[n % 9], at=build.now() - timedelta(minutes=100 - n),
                       text=f"投诉{n:02d}")
    _as(client, build.admin())
    first = visible_text(client.get("/staff/complaints"))
    assert "第 1 页，共 2 页" in first
    assert "投诉00" in first
    assert "投诉26" not in first
    second = visible_text(client.get("/staff/complaints?page=2"))
    assert "投诉26" in second
    assert "投诉00" not in second


def test_exports_neutralise_typed_texts_and_keep_the_filter(build, client, queue):
    _world, old, new, done, _served = queue
    _as(client, build.auditor())
    answer = client.get("/staff/complaints.csv?status=open")
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    text = answer.get_data(as_text=True)
    assert text.startswith("\ufeff投诉编号")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert [row[0] for row in rows[1:]] == [str(old), str(new)]
    assert "'=HYPERLINK(\"x\")" in [cell for row in rows for cell in row]
    workbook = client.get("/staff/complaints.xlsx")
    assert workbook.status_code == 200
    sheet = load_workbook(io.BytesIO(workbook.get_data())).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][0] == "投诉编号"
    assert [row[0] for row in values[1:]] == [old, new, done]
    assert "'=HYPERLINK(\"x\")" in [cell for row in values for cell in row]


def test_the_complaint_page_shows_the_answer_above_the_resolve_form(build, client, queue):
    world, old, _new, _done, served = queue
    _as(client, build.admin())
    page = client.get(f"/staff/complaints/{old}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert body.index(ANSWER) < body.index('name="resolution"')
    text = visible_text(page)
    assert world.alice.id_number_masked in text
    assert str(served.id) in text
    assert "¥" in text  # the held redemption's value


def test_an_admin_resolves_once_and_a_double_post_changes_nothing_more(build, client, queue):
    _world, old, _new, _done, _served = queue
    admin = build.admin()
    _as(client, admin)
    form = client.get(f"/staff/complaints/{old}").get_data(as_text=True)
    fields = dict(HIDDEN.findall(form))
    assert {"csrf_token", "form_key"} <= set(fields)
    data = {**fields, "upheld": "true", "resolution": "已核实属实，扣减考核分"}
    first = client.post(f"/staff/complaints/{old}/resolve", data=data)
    assert first.status_code == 303
    again = client.post(f"/staff/complaints/{old}/resolve", data=data)
    assert again.status_code == 303
    stored = build.read(lambda: db.session.get(Complaint, old))
    assert (stored.status, stored.upheld, stored.resolved_by) == ("resolved", True, admin.id)
    shown = visible_text(client.get(f"/staff/complaints/{old}"))
    assert "投诉属实" in shown
    assert "已核实属实，扣减考核分" in shown
    assert "确认处理" not in shown


def test_a_short_resolution_is_refused_beside_the_field(build, client, queue):
    _world, old, _new, _done, _served = queue
    _as(client, build.admin())
    answer = post_form(client, f"/staff/complaints/{old}/resolve", {"upheld": "false", "resolution": "否"},
                       from_page=f"/staff/complaints/{old}")
    assert answer.status_code == 422
    assert 'id="error-resolution"' in answer.get_data(as_text=True)
    assert build.read(lambda: db.session.get(Complaint, old).status) == "open"


def test_an_auditor_reads_without_a_form_and_a_posted_resolution_is_refused(build, client, queue):
    _world, old, _new, _done, _served = queue
    _as(client, build.auditor())
    page = client.get(f"/staff/complaints/{old}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert 'method="post"' not in body.replace('action="/logout"', "").split("<main")[1]
    assert ANSWER in body
    token = csrf_from(client.get("/staff/complaints").get_data(as_text=True))
    refused = client.post(f"/staff/complaints/{old}/resolve",
                          data={"csrf_token": token, "upheld": "true", "resolution": "审计人员不能处理"})
    assert refused.status_code == 403
    assert build.read(lambda: db.session.get(Complaint, old).status) == "open"


def test_a_region_limited_admin_sees_only_its_regions_complaints(build, client):
    world = build.world()
    outsider = build.recipient(region_code="510132", name="端木桂香")
    inside = build.complain(world.p1, recipient=world.alice, text="本区的投诉")
    outside = build.complain(world.p1, recipient=outsider, text="外区的投诉")
    _as(client, build.admin(region_code="510131"))
    text = visible_text(client.get("/staff/complaints"))
    assert "本区的投诉" in text
    assert "外区的投诉" not in text
    assert client.get(f"/staff/complaints/{outside}").status_code == 403
    assert client.get(f"/staff/complaints/{inside}").status_code == 200
    assert "外区的投诉" not in client.get("/staff/complaints.csv").get_data(as_text=True)


def test_rankings_per_item_and_region_with_complaint_counts(build, client):
    world = build.world()
    build.choose_all(world, world.p1, world.alice, world.bob)
    build.issue(world.programme)
    build.rated_services(world.p1, [world.alice, world.bob], world.programme, world.meal, [5, 5])
    build.complain(world.p2, recipient=world.bob)
    build.complain(world.p2, recipient=world.alice)
    _as(client, build.auditor())
    page = client.get(f"/staff/rankings?item_code={world.meal}&region_code=510131")
    assert page.status_code == 200
    text = visible_text(page)
    assert text.index(world.p1.name) < text.index(world.p2.name)
    assert "属实 0／全部 2 件" in text  # staff see every complaint; the public ranking the upheld ones only
    assert "2 件正在处理" in text
    exported = client.get(f"/staff/rankings.csv?item_code={world.meal}&region_code=510131").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(exported.lstrip("\ufeff"))))
    assert rows[0][0] == "名次"
    assert rows[0][-3:] == ["投诉属实（件）", "全部投诉（件）", "换走的老人"]
    assert [(row[0], row[1], row[-3], row[-2]) for row in rows[1:]] == [("1", world.p1.name, "0", "0"),
                                                                       ("2", world.p2.name, "0", "2")]
    assert client.get("/staff/rankings?item_code=NOPE").status_code == 422
