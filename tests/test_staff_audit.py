"""/staff/audit: the events newest first with filters (action, entity, actor, on_behalf_of, local dates),
paging without a count, CSV/XLSX of what is shown, and the chain's verification with the head hash to
publish (auditors may run it: it changes nothing). Both databases."""

import csv
import io
from datetime import timedelta

from openpyxl import load_workbook
from sqlalchemy import select, text

from marketplace import audit
from marketplace.audit.models import AuditEvent, AuditHead
from marketplace.db import db, transaction
from tests.conftest import PASSWORD
from tests.support.console import login_page, visible_text


def _as(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def _record(app, *, action="thing.changed", entity="thing", entity_id=1, region_code="510131", at=None,
            on_behalf_of=None, data=None):
    with app.app_context(), transaction():
        audit.record(action=action, entity=entity, entity_id=entity_id, region_code=region_code, now=at,
                     on_behalf_of=on_behalf_of, data=data or {})


def _ids(response) -> list[int]:
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    return [int(row[0]) for row in rows[1:]]


def _all_ids(build) -> list[int]:
    return build.read(lambda: db.session.scalars(select(AuditEvent.id).order_by(AuditEvent.id.desc())).all())


def test_events_newest_first_filtered_by_action_entity_and_on_behalf_of(app, build, client):
    _record(app, action="thing.made", entity_id=7)
    _record(app, action="thing.changed", entity_id=7, on_behalf_of=42)
    _record(app, action="thing.changed", entity="other", entity_id=8)
    admin = build.admin()
    _as(client, admin)
    page = client.get("/staff/audit")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert body.index("thing.changed") < body.index("thing.made")  # newest first
    assert _ids(client.get("/staff/audit.csv")) == _all_ids(build)
    changed = client.get("/staff/audit.csv?action=thing.changed&entity=thing").get_data(as_text=True)
    assert changed.count("thing.changed") == 1
    assert "thing.made" not in changed
    assert len(_ids(client.get("/staff/audit.csv?on_behalf_of=42"))) == 1
    assert len(_ids(client.get("/staff/audit.csv?entity=thing&entity_id=7"))) == 2


def test_filter_by_actor_and_local_days(app, build, client):
    admin = build.admin()
    build.complain(build.world().p1, text="投诉")  # events by the system admin, now
    _record(app, action="old.thing", at=build.now() - timedelta(days=40))
    _as(client, admin)
    by_system_admin = client.get(f"/staff/audit.csv?actor={build.system_admin.username.upper()}")
    assert "complaint.filed" in by_system_admin.get_data(as_text=True)
    assert "old.thing" not in by_system_admin.get_data(as_text=True)
    day = (build.today() - timedelta(days=40)).isoformat()
    that_day = client.get(f"/staff/audit?from={day}&to={day}")
    assert "old.thing" in visible_text(that_day)
    assert "complaint.filed" not in visible_text(that_day)
    assert "old.thing" not in visible_text(client.get(f"/staff/audit?from={build.today().isoformat()}"))


def test_a_range_that_ends_before_it_starts_is_refused_beside_the_field(build, client):
    _as(client, build.auditor())
    page = client.get("/staff/audit?from=2026-03-02&to=2026-03-01")
    assert page.status_code == 422
    assert 'id="error-to"' in page.get_data(as_text=True)
    assert "结束日期不能早于开始日期" in visible_text(page)


def test_paging_without_counting(app, build, client):
    for n in range(55):
        _record(app, action=f"step.{n:02d}")
    _as(client, build.admin())
    first = visible_text(client.get("/staff/audit?entity=thing"))
    assert "step.54" in first
    assert "step.04" not in first
    assert "下一页" in first
    second = visible_text(client.get("/staff/audit?entity=thing&page=2"))
    assert "step.04" in second
    assert "step.54" not in second
    assert "下一页" not in second


def test_exports_are_utf8_with_bom_and_xlsx_with_chinese_headers(app, build, client):
    _record(app, action="thing.changed", data={"reason": "=cmd|' /C calc'!A0"})
    _as(client, build.auditor())
    answer = client.get("/staff/audit.csv")
    assert answer.mimetype == "text/csv"
    assert answer.get_data(as_text=True).startswith("\ufeff编号")
    workbook = client.get("/staff/audit.xlsx")
    sheet = load_workbook(io.BytesIO(workbook.get_data())).active
    values = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert values[0][:4] == ["编号", "时间", "操作人", "动作"]
    assert [row[0] for row in values[1:]] == _all_ids(build)


def test_an_auditor_verifies_the_chain_and_sees_the_head_hash_to_publish(app, build, client):
    _record(app)
    _record(app)
    _as(client, build.auditor())
    page = client.get("/staff/audit")
    assert 'method="post"' not in page.get_data(as_text=True).split("<main")[1]  # nothing to change here
    verified = client.get("/staff/audit/verify")
    assert verified.status_code == 200
    head = build.read(lambda: db.session.get(AuditHead, 1).last_hash)
    assert "审计链完整" in visible_text(verified)
    assert head in verified.get_data(as_text=True)


def test_a_tampered_chain_is_reported_where_it_breaks(app, build, client):
    _record(app)
    _record(app)
    first = min(_all_ids(build))
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("UPDATE audit_event SET data = :data WHERE id = :id"),
                           {"data": '{"tampered":true}', "id": first})
    _as(client, build.admin())
    verified = visible_text(client.get("/staff/audit/verify"))
    assert f"从第 {first} 条记录起核验不通过" in verified
    assert "审计链完整" not in verified


def test_a_region_limited_admin_reads_only_events_of_its_region(app, build, client):
    _record(app, action="inside.thing", region_code="510131")
    _record(app, action="outside.thing", region_code="510132")
    _as(client, build.admin(region_code="510131"))
    shown = visible_text(client.get("/staff/audit"))
    assert "inside.thing" in shown
    assert "outside.thing" not in shown
    assert "outside.thing" not in client.get("/staff/audit.csv").get_data(as_text=True)
