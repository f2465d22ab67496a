"""The staff console for market-integrity flags (`/staff/anomalies`): the queue (open first by default, the
most severe first, filters, exports), a flag's page with its services, and an admin's confirmation or dismissal
with a reason through the flags service — which holds the services out of settlement; auditors read only and a
posted decision is refused; a region-limited admin cannot open another region's flag; the staff home and the
programme dashboard count open flags. Flags are planted directly (detection has its own tests). Every test
runs on SQLite and PostgreSQL."""

import csv
import io
import re

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db, utcnow
from marketplace.programmes.models import Programme
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption
from vouchers.service import settlement

PRICE, QUOTA = 1500, 10
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')
CAPACITY = {"count": 130, "capacity": 100, "tolerance_percent": 0}
SHORT = {"count": 2, "min_minutes": 30, "shortest": 4}


def _as(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


@pytest.fixture
def scene(build):
    meal = build.item()
    programme = build.programme(items=[(meal, PRICE, QUOTA)])
    provider = build.provider(items=[meal], enrol_in=[programme.id])
    alice = build.recipient()
    build.choose(alice, programme.id, meal, provider)
    build.issue(programme.id, build.period(-1))
    served = [build.redeem(provider, alice, meal, delivered_at=build.in_month(-1, day, 10)) for day in (3, 4)]
    return programme, provider, served


def plant(build, programme, provider, served, *, rule="over_capacity", severity="medium", status="open",
          evidence=None) -> int:
    def insert():
        flag = AnomalyFlag(programme_id=programme.id, period=build.period(-1), rule=rule, severity=severity,
                           subject=f"provider:{provider.id}:{rule}", provider_id=provider.id,
                           evidence=evidence or CAPACITY, status=status, created_at=utcnow())
        db.session.add(flag)
        db.session.flush()
        for redemption in served:
            db.session.add(AnomalyFlagRedemption(flag_id=flag.id, redemption_id=redemption.id))
        return flag.id
    return build.run(insert)


def test_the_queue_shows_open_flags_most_severe_first_with_their_explanation(build, client, scene):
    programme, provider, served = scene
    low = plant(build, programme, provider, served[:1], rule="short_duration", severity="low", evidence=SHORT)
    medium = plant(build, programme, provider, served)
    done = plant(build, programme, provider, served, rule="typed_code_share", severity="low", status="dismissed",
                 evidence={"share_percent": 60, "count": 20, "typed": 12, "max_share_percent": 30})
    _as(client, build.admin())
    page = client.get("/staff/anomalies")
    assert page.status_code == 200
    shown = page.get_data(as_text=True)
    assert shown.index(f'id="anomaly-{medium}"') < shown.index(f'id="anomaly-{low}"')
    assert f'id="anomaly-{done}"' not in shown
    text = visible_text(page)
    assert "超过申报的服务能力" in text
    assert "本月服务 130 次" in text
    every = client.get("/staff/anomalies?status=all").get_data(as_text=True)
    assert f'id="anomaly-{done}"' in every
    only = client.get("/staff/anomalies?status=all&rule=short_duration").get_data(as_text=True)
    assert f'id="anomaly-{low}"' in only
    assert f'id="anomaly-{medium}"' not in only


def test_a_bad_filter_is_refused_beside_its_field(build, client, scene):
    _as(client, build.admin())
    page = client.get("/staff/anomalies?rule=zombie")
    assert page.status_code == 422
    assert 'id="error-rule"' in page.get_data(as_text=True)


def test_the_export_lists_what_the_queue_shows(build, client, scene):
    programme, provider, served = scene
    flag = plant(build, programme, provider, served)
    _as(client, build.auditor())
    exported = client.get("/staff/anomalies.csv")
    assert exported.status_code == 200
    rows = list(csv.reader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:3] == ["编号", "严重程度", "规则"]
    assert [row[0] for row in rows[1:]] == [str(flag)]
    assert rows[1][1] == "中等"
    assert rows[1][7] == "2"
    workbook = client.get("/staff/anomalies.xlsx")
    assert workbook.status_code == 200
    assert workbook.data[:2] == b"PK"


def test_confirming_holds_the_services_and_dismissing_releases_them(build, client, scene):
    programme, provider, served = scene
    flag = plant(build, programme, provider, served)
    admin = build.admin()
    _as(client, admin)
    page = client.get(f"/staff/anomalies/{flag}")
    text = visible_text(page)
    assert "确认后，其中还没结算的服务（¥24.00）暂不结算" in text
    assert f"{served[0].id}" in text
    short = client.post(f"/staff/anomalies/{flag}/confirm", data={"csrf_token": csrf_from(page.get_data(as_text=True)),
                                                                  "reason": " "})
    assert short.status_code == 422
    assert 'id="error-reason"' in short.get_data(as_text=True)
    assert build.read(lambda: db.session.get(AnomalyFlag, flag).status) == "open"

    fields = dict(HIDDEN.findall(client.get(f"/staff/anomalies/{flag}").get_data(as_text=True).split("<main")[1]))
    assert {"csrf_token", "form_key"} <= set(fields)
    data = {**fields, "reason": "电话回访：老人说没有人来送餐"}
    confirmed = client.post(f"/staff/anomalies/{flag}/confirm", data=data)
    assert confirmed.status_code == 303
    again = client.post(f"/staff/anomalies/{flag}/confirm", data=data)  # a double click: the same answer
    assert again.status_code == 303
    after = visible_text(client.get(f"/staff/anomalies/{flag}"))
    assert "已确认" in after
    assert "电话回访：老人说没有人来送餐" in after

    def settleable() -> int:
        return settlement.draft_preview(programme=db.session.get(Programme, programme.id),
                                        period=build.period(-1)).services
    assert build.read(settleable) == 0

    fields = dict(HIDDEN.findall(client.get(f"/staff/anomalies/{flag}").get_data(as_text=True).split("<main")[1]))
    dismissed = client.post(f"/staff/anomalies/{flag}/dismiss", data={**fields, "reason": "核实后服务属实"})
    assert dismissed.status_code == 303
    assert build.read(lambda: db.session.get(AnomalyFlag, flag).status) == "dismissed"
    assert build.read(settleable) == 2
    actions = build.read(lambda: db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.entity == "anomaly_flag")).all())
    assert actions.count("anomaly.confirmed") == 1
    assert "anomaly.dismissed" in actions


def test_an_auditor_reads_without_a_form_and_a_posted_decision_is_refused(build, client, scene):
    programme, provider, served = scene
    flag = plant(build, programme, provider, served)
    _as(client, build.auditor())
    page = client.get(f"/staff/anomalies/{flag}")
    assert page.status_code == 200
    assert 'method="post"' not in page.get_data(as_text=True).split("<main", 1)[1].split("</main>")[0]
    token = csrf_from(client.get("/staff/anomalies").get_data(as_text=True))  # the logout form's
    refused = client.post(f"/staff/anomalies/{flag}/confirm", data={"csrf_token": token, "reason": "看看"})
    assert refused.status_code == 403
    assert build.read(lambda: db.session.get(AnomalyFlag, flag).status) == "open"


def test_a_region_limited_admin_cannot_open_another_regions_flag(build, client, scene):
    programme, provider, served = scene
    flag = plant(build, programme, provider, served)
    elsewhere = "990000" if not programme.region_code.startswith("99") else "110000"
    _as(client, build.admin(region_code=elsewhere))
    assert f'id="anomaly-{flag}"' not in client.get("/staff/anomalies").get_data(as_text=True)
    assert client.get(f"/staff/anomalies/{flag}").status_code in (403, 404)


def test_the_staff_home_and_the_dashboard_count_open_flags(build, client, scene):
    programme, provider, served = scene
    plant(build, programme, provider, served)
    plant(build, programme, provider, served[:1], rule="short_duration", severity="low", evidence=SHORT)
    _as(client, build.admin())
    home = visible_text(client.get("/staff"))
    assert "待核实的异常情况 2" in home
    dashboard = visible_text(client.get(f"/staff/programmes/{programme.id}"))
    assert "待核实 2 条" in dashboard


def test_an_admin_checks_a_month_now_and_a_bad_month_is_refused_beside_its_field(build, client, scene):
    programme, provider, served = scene
    _as(client, build.admin())
    page = client.get("/staff/anomalies").get_data(as_text=True)
    fields = dict(HIDDEN.findall(page.split('action="/staff/anomalies/detect"')[1].split("</form>")[0]))
    bad = client.post("/staff/anomalies/detect", data={**fields, "programme_id": programme.id, "period": "2026-13"})
    assert bad.status_code == 422
    assert 'id="error-detect-period"' in bad.get_data(as_text=True)
    done = client.post("/staff/anomalies/detect", data={**fields, "programme_id": programme.id,
                                                        "period": build.period(-1)})
    assert done.status_code == 303
    assert "检查完了：新发现" in visible_text(client.get(done.headers["Location"]))
    events = build.read(lambda: db.session.scalars(select(AuditEvent.action).where(
        AuditEvent.action == "anomalies.detected")).all())
    assert events == ["anomalies.detected"]


def test_the_provider_sees_its_confirmed_flags_on_its_settlements_page_and_no_other(build, client, scene):
    programme, provider, served = scene
    confirmed = plant(build, programme, provider, served, status="confirmed")
    plant(build, programme, provider, served[:1], rule="short_duration", severity="low", evidence=SHORT)
    _as(client, provider.user)
    text = visible_text(client.get("/provider/settlements"))
    assert "民政部门核实的异常情况（1 条）" in text
    assert "本月服务 130 次" in text
    assert "服务时长过短" not in text  # the open flag is not shown
    assert confirmed
