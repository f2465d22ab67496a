"""Drafting a month's settlements from the staff console, and discarding a draft, on both databases.

The drafting page (/staff/settlements/draft?programme_id=&period=) shows, before anything is written,
each provider's settleable services and their worth — the settlement service's own `draft_preview`, so
it agrees with what drafting then creates — and takes each provider's third-party evaluation E (0–100,
or blank). A bad E, programme or month is refused beside its field and writes nothing. A draft can be
deleted from its page after a confirmation that says what follows: its services become settleable
again and the deletion is recorded. Auditors neither draft nor delete."""

from fractions import Fraction

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db
from marketplace.programmes.models import Programme
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from tests.test_staff_settlements import FORM_KEY_RE, _served_last_month
from vouchers.models import Redemption, Settlement
from vouchers.service import settlement as settlement_service
from vouchers.service.settlement import WEIGHTS_WITH_EVALUATION, WEIGHTS_WITHOUT_EVALUATION, half_up


def _login(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def _draft_page(world, period: str) -> str:
    return f"/staff/settlements/draft?programme_id={world.programme.id}&period={period}"


def _form(client, path: str) -> dict:
    """The CSRF token and form key of the page's posting form."""
    body = client.get(path).get_data(as_text=True)
    return {"csrf_token": csrf_from(body), "form_key": FORM_KEY_RE.search(body).group(1)}


def _draft(client, world, period: str, **evaluations: str):
    """Open the drafting page and post it with the given E fields (`evaluation-<provider id>`)."""
    data = {**_form(client, _draft_page(world, period)), "programme_id": world.programme.id, "period": period}
    return client.post("/staff/settlements/draft", data={**data, **evaluations})


def _deleted_events(build, settlement_id: int) -> list[AuditEvent]:
    return build.read(lambda: db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "settlement.deleted", AuditEvent.entity_id == str(settlement_id))).all())


def test_the_preview_shows_what_drafting_then_creates(build, client):
    world = _served_last_month(build)
    period = build.period(-1)
    _login(client, build.admin())
    page = client.get(_draft_page(world, period))
    assert page.status_code == 200
    preview = build.read(lambda: settlement_service.draft_preview(
        programme=db.session.get(Programme, world.programme.id), period=period))
    shown = {line.provider_id: (line.services, line.gross_fen) for line in preview.lines}
    assert set(shown) == {world.p1.id, world.p2.id}
    assert shown[world.p1.id][0] == 3
    assert shown[world.p2.id][0] == 1
    text = visible_text(page)
    assert "服务机构 2 家" in text
    assert "服务次数 4 次" in text
    assert "确认起草 2 份结算" in text
    for provider in (world.p1, world.p2):
        assert provider.name in text
    assert f'name="evaluation-{world.p1.id}"' in page.get_data(as_text=True)

    answer = _draft(client, world, period)
    assert answer.status_code == 303
    drafted = {s.provider_id: (s.redemptions_count, s.gross_fen) for s in build.settlements()}
    assert drafted == shown
    assert sum(gross for _count, gross in drafted.values()) == preview.gross_fen
    assert sum(count for count, _gross in drafted.values()) == preview.services


def test_evaluations_reach_the_settlement_and_change_its_score_as_the_service_computes(build, client):
    world = _served_last_month(build)
    _login(client, build.admin())
    answer = _draft(client, world, build.period(-1), **{f"evaluation-{world.p1.id}": "90",
                                                        f"evaluation-{world.p2.id}": " "})
    assert answer.status_code == 303
    by_provider = {s.provider_id: s for s in build.settlements()}
    evaluated, plain = by_provider[world.p1.id], by_provider[world.p2.id]
    assert evaluated.evaluation_score == 90
    assert plain.evaluation_score is None
    s_weight, k_weight, e_weight = WEIGHTS_WITH_EVALUATION
    assert evaluated.performance_score == half_up(
        s_weight * evaluated.satisfaction_score + k_weight * evaluated.complaint_score + e_weight * 90)
    s_weight, k_weight, _none = WEIGHTS_WITHOUT_EVALUATION
    assert plain.performance_score == half_up(s_weight * plain.satisfaction_score + k_weight * plain.complaint_score)
    # Nobody has rated or complained: S is 75 and K 100, so E = 90 lifts 82.5 (83) to 84.5 (85).
    assert (evaluated.satisfaction_score, evaluated.complaint_score) == (75, 100)
    assert (evaluated.performance_score, plain.performance_score) == (85, 83)
    assert half_up(Fraction(7, 10) * 75 + Fraction(3, 10) * 100) == 83
    detail = visible_text(client.get(f"/staff/settlements/{evaluated.id}"))
    assert "第三方评价 E 90" in detail


def test_a_low_evaluation_lowers_the_pay_by_the_programmes_rules(build, client):
    world = _served_last_month(build)
    _login(client, build.admin())
    assert _draft(client, world, build.period(-1), **{f"evaluation-{world.p1.id}": "0"}).status_code == 303
    [low] = build.settlements(Settlement.provider_id == world.p1.id)
    assert low.evaluation_score == 0
    assert low.performance_score == 58  # 37.5 + 20 + 0, rounded half up
    rules = build.read(lambda: sorted(db.session.get(Programme, world.programme.id).settlement_rules,
                                      key=lambda rule: rule["min_score"]))
    expected = [rule for rule in rules if rule["min_score"] <= 58][-1]["pay_percent"]
    assert low.pay_percent == expected
    assert low.net_fen == low.gross_fen * expected // 100


@pytest.mark.parametrize(("given", "said"), [("-1", "应在 0 到 100 之间。"), ("101", "应在 0 到 100 之间。"),
                                             ("abc", "请填写一个整数。"), ("7.5", "请填写一个整数。")])
def test_an_invalid_evaluation_is_refused_beside_its_field_and_nothing_is_written(build, client, given, said):
    world = _served_last_month(build)
    _login(client, build.admin())
    events = build.count(AuditEvent)
    form = {**_form(client, _draft_page(world, build.period(-1))), "programme_id": world.programme.id,
            "period": build.period(-1), f"evaluation-{world.p1.id}": "80", f"evaluation-{world.p2.id}": given}
    answer = client.post("/staff/settlements/draft", data=form)
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    assert f'<p class="field-error" id="error-evaluation-{world.p2.id}">{said}</p>' in body
    assert f'id="error-evaluation-{world.p1.id}"' not in body
    assert f'value="{given}"' in body  # what was typed stays, to be corrected
    assert f"{world.p2.name}的第三方评价：{said}" in visible_text(answer)
    assert build.count(Settlement) == 0
    assert build.count(Redemption, Redemption.settlement_id.is_not(None)) == 0
    assert build.count(AuditEvent) == events
    # The refused form is still usable once corrected.
    fixed = client.post("/staff/settlements/draft", data={**form, f"evaluation-{world.p2.id}": "60"})
    assert fixed.status_code == 303
    assert {s.provider_id: s.evaluation_score for s in build.settlements()} == {world.p1.id: 80, world.p2.id: 60}


def test_a_bad_programme_or_month_is_refused_beside_its_field(build, client):
    world = _served_last_month(build)
    _login(client, build.admin())
    bad_month = client.get(f"/staff/settlements/draft?programme_id={world.programme.id}&period=13-2026")
    assert bad_month.status_code == 422
    assert '<p class="field-error" id="error-period">请填写年月，例如 2026-12。</p>' in bad_month.get_data(as_text=True)
    assert "确认起草" not in visible_text(bad_month)
    unknown = client.get(f"/staff/settlements/draft?programme_id=999999&period={build.period(-1)}")
    assert unknown.status_code == 404
    assert 'id="error-programme_id"' in unknown.get_data(as_text=True)
    assert "没有找到" in visible_text(unknown)
    empty = client.get("/staff/settlements/draft")
    assert empty.status_code == 422
    assert visible_text(empty).count("请填写这一项") >= 2
    # A posted form with a bad month: refused the same way, nothing written.
    form = {**_form(client, _draft_page(world, build.period(-1))), "programme_id": world.programme.id,
            "period": "2026-13"}
    posted = client.post("/staff/settlements/draft", data=form)
    assert posted.status_code == 422
    assert "请填写年月" in visible_text(posted)
    assert build.count(Settlement) == 0


def test_another_regions_programme_cannot_be_drafted(build, client):
    world = _served_last_month(build)
    _login(client, build.admin(region_code="510132"))
    assert client.get(_draft_page(world, build.period(-1))).status_code == 403
    assert build.count(Settlement) == 0


def test_nothing_to_settle_is_said_plainly_without_a_button(build, client):
    world = build.world()
    _login(client, build.admin())
    page = client.get(_draft_page(world, build.period(-1)))
    assert page.status_code == 200
    text = visible_text(page)
    assert "这个月没有可以起草的结算。" in text
    assert "确认起草" not in text
    assert 'method="post"' not in page.get_data(as_text=True).split("</header>", 1)[1]


def test_providers_already_settled_for_the_month_are_named_as_such(build, client):
    world = _served_last_month(build)
    [first, _second] = build.settle(world.programme, build.period(-1))
    # A service of that month recorded after drafting: it waits for the next month's settlement.
    build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, 20))
    _login(client, build.admin())
    page = client.get(_draft_page(world, build.period(-1)))
    text = visible_text(page)
    assert "这个月已经结算过的服务机构" in text
    assert world.p1.name in text
    assert world.p2.name in text
    assert "另有 1 次服务" in text
    assert "这个月没有可以起草的结算。" in text
    assert "还没有结算的服务，都属于这个月已经结算过的服务机构" in text
    assert "确认起草" not in text
    assert f'href="/staff/settlements/{first}"' in page.get_data(as_text=True)


def test_an_auditor_can_neither_draft_nor_discard(build, client):
    world = _served_last_month(build)
    [first, _second] = build.settle(world.programme, build.period(-1))
    _login(client, build.auditor())
    detail = client.get(f"/staff/settlements/{first}")
    assert detail.status_code == 200
    assert "删除这份草稿" not in visible_text(detail)
    assert f"/staff/settlements/{first}/discard" not in detail.get_data(as_text=True)
    assert "起草这个月的结算" not in visible_text(client.get("/staff/settlements"))
    assert client.get(_draft_page(world, build.period(-1))).status_code == 403
    assert client.get(f"/staff/settlements/{first}/discard").status_code == 403
    csrf = csrf_from(client.get("/staff").get_data(as_text=True))
    drafted = client.post("/staff/settlements/draft", data={
        "csrf_token": csrf, "form_key": "d" * 24, "programme_id": world.programme.id, "period": build.period(0)})
    assert drafted.status_code == 403
    discarded = client.post(f"/staff/settlements/{first}/discard", data={"csrf_token": csrf, "form_key": "e" * 24})
    assert discarded.status_code == 403
    assert len(build.settlements()) == 2
    assert _deleted_events(build, first) == []


def test_discarding_a_draft_frees_its_services_for_a_new_draft_and_is_recorded(build, client):
    world = _served_last_month(build)
    period = build.period(-1)
    [first, _second] = build.settle(world.programme, period, evaluations={world.p1.id: 40})
    gross = build.settlement(first).gross_fen
    admin = build.admin()
    _login(client, admin)
    detail = client.get(f"/staff/settlements/{first}")
    assert f'href="/staff/settlements/{first}/discard"' in detail.get_data(as_text=True)
    confirm = client.get(f"/staff/settlements/{first}/discard")
    assert confirm.status_code == 200
    text = visible_text(confirm)
    assert "这份草稿的 3 次服务" in text
    assert "可以重新起草" in text
    assert "记入操作记录" in text

    keys = _form(client, f"/staff/settlements/{first}/discard")
    answer = client.post(f"/staff/settlements/{first}/discard", data=keys)
    assert answer.status_code == 303
    assert answer.location == f"/staff/settlements?programme_id={world.programme.id}&period={period}"
    assert client.post(f"/staff/settlements/{first}/discard", data=keys).location == answer.location  # double click
    assert build.settlement(first) is None
    assert build.count(Redemption, Redemption.settlement_id == first) == 0
    assert "已删除" in visible_text(client.get(answer.location))
    stale = client.post(f"/staff/settlements/{first}/discard", data={**keys, "form_key": "s" * 24})  # another tab
    assert stale.status_code == 404
    [event] = _deleted_events(build, first)
    assert event.actor_id == admin.id

    # Its services are settleable again: the preview lists the provider, and drafting again works.
    assert world.p1.name in visible_text(client.get(_draft_page(world, period)))
    again = _draft(client, world, period, **{f"evaluation-{world.p1.id}": "95"})
    assert again.status_code == 303
    [redrafted] = build.settlements(Settlement.provider_id == world.p1.id)
    assert redrafted.id != first
    assert (redrafted.redemptions_count, redrafted.gross_fen, redrafted.evaluation_score) == (3, gross, 95)


def test_discarding_an_approved_settlement_is_refused_on_its_page(build, client):
    world = _served_last_month(build)
    [first, _second] = build.settle(world.programme, build.period(-1))
    build.approve(first, by=build.admin())
    _login(client, build.admin())
    detail = client.get(f"/staff/settlements/{first}")
    assert "删除这份草稿" not in visible_text(detail)
    confirm = client.get(f"/staff/settlements/{first}/discard")
    assert confirm.status_code == 200
    assert "只有草稿可以删除" in visible_text(confirm)
    assert "确认删除" not in visible_text(confirm)
    csrf = csrf_from(detail.get_data(as_text=True))
    refused = client.post(f"/staff/settlements/{first}/discard", data={"csrf_token": csrf, "form_key": "r" * 24})
    assert refused.status_code == 409
    assert "只有草稿可以删除。这份结算已经审核，不能再删除。" in visible_text(refused)
    assert build.settlement(first).status == "approved"
    assert build.count(Redemption, Redemption.settlement_id == first) == 3
    assert _deleted_events(build, first) == []
