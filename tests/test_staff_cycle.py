"""The monthly cycle in the staff console (/staff/programmes/<id>/issue, /expire), on both databases: the
preview counts what the run then does (recipients, vouchers, cost against what is available, the
shortfall), the run happens once however often its form is posted, the page then shows the run; expiry
likewise; auditors see no form and a posted run is refused; another region's programme is refused."""

import re

from marketplace.programmes import ledger
from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text
from vouchers.models import Issuance, Voucher

FORM_KEY_RE = re.compile(r'name="form_key" value="([^"]+)"')


def _login(client, user):
    assert login_page(client, user.username, PASSWORD).status_code == 302


def _form(client, path: str) -> dict:
    """The CSRF token and form key of the (first action) form on *path*."""
    body = client.get(path).get_data(as_text=True)
    return {"csrf_token": csrf_from(body), "form_key": FORM_KEY_RE.search(body).group(1)}


def _money(fen: int) -> str:
    yuan, cents = divmod(fen, 100)
    return f"¥{yuan:,}.{cents:02d}"


def test_the_preview_counts_what_the_run_issues_and_the_page_then_shows_the_run(build, client):
    world = build.world(budget_fen=10_000_000)
    period = build.period(0)
    clerk = build.admin()
    _login(client, clerk)
    path = f"/staff/programmes/{world.programme.id}/issue?period={period}"
    answer = client.get(path)
    assert answer.status_code == 200
    text = visible_text(answer)
    # alice (5%): meal 1200-60, bath 5000-250; bob (20%): meal 1200-240, bath 5000-1000; quotas 4 and 2.
    cost = 4 * (1140 + 960) + 2 * (4750 + 4000)
    assert "符合条件的老人 2 人" in text
    assert "将发放的服务券 12 张" in text
    assert f"需要的预算 {_money(cost)}" in text
    assert f"可用预算 {_money(10_000_000)}" in text
    assert "确认发放 12 张服务券" in text

    form = {**_form(client, path), "period": period}
    first = client.post(f"/staff/programmes/{world.programme.id}/issue", data=form)
    assert first.status_code == 303
    again = client.post(f"/staff/programmes/{world.programme.id}/issue", data=form)  # a double click
    assert again.status_code == 303
    assert again.location == first.location
    assert build.count(Voucher) == 12
    assert build.count(Issuance) == 1
    assert build.ledger(world.programme).committed_fen == cost

    done = visible_text(client.get(first.location))
    assert "已发放 12 张服务券给 2 位老人" in done
    assert f"已经发放 老人 2 人 服务券 12 张 占用预算 {_money(cost)}" in done
    assert clerk.username in done
    assert "确认发放" not in done


def test_a_shortfall_is_shown_before_running_and_no_button_is_offered(build, client):
    world = build.world(budget_fen=10_000)
    _login(client, build.admin())
    path = f"/staff/programmes/{world.programme.id}/issue?period={build.period(0)}"
    text = visible_text(client.get(path))
    cost = 4 * (1140 + 960) + 2 * (4750 + 4000)
    assert f"还差 {_money(cost - 10_000)}" in text
    assert "确认发放" not in text


def test_a_run_refused_for_want_of_money_says_so_and_writes_nothing(build, client):
    world = build.world(budget_fen=10_000_000)
    path = f"/staff/programmes/{world.programme.id}/issue?period={build.period(0)}"
    _login(client, build.admin())
    form = {**_form(client, path), "period": build.period(0)}
    # Someone else spends the budget between the preview and the click.
    def drain():
        available = ledger.guarded_available(world.programme.id)
        ledger.commit_budget(programme_id=world.programme.id, amount_fen=available, now=build.now())

    build.run(drain)
    answer = client.post(f"/staff/programmes/{world.programme.id}/issue", data=form)
    assert answer.status_code == 409
    assert "剩余预算不够，本次什么都没有发放。" in visible_text(answer)
    assert build.count(Voucher, Voucher.valid_from >= build.first_day(0), Voucher.valid_from < build.first_day(1)) == 0


def test_a_bad_period_is_refused_beside_its_field(build, client):
    world = build.world()
    _login(client, build.admin())
    answer = client.get(f"/staff/programmes/{world.programme.id}/issue?period=2026-13")
    assert answer.status_code == 422
    assert "请填写年月" in visible_text(answer)
    outside = client.get(f"/staff/programmes/{world.programme.id}/issue?period=1999-01")
    assert outside.status_code == 422
    assert "不在项目的起止日期之内" in visible_text(outside)


def test_expiry_previews_how_many_and_how_much_then_runs_once(build, client):
    world = build.world(budget_fen=10_000_000)
    build.issue(world.programme, build.period(-2))
    build.issue(world.programme, build.period(0))
    old = 4 * (1140 + 960) + 2 * (4750 + 4000)
    _login(client, build.admin())
    path = f"/staff/programmes/{world.programme.id}/expire"
    text = visible_text(client.get(path))
    assert "将作废的服务券 12 张" in text
    assert f"回到可用预算 {_money(old)}" in text
    available = build.ledger(world.programme).available_fen
    form = _form(client, path)
    first = client.post(path, data=form)
    assert first.status_code == 303
    assert client.post(path, data=form).status_code == 303
    assert build.count(Voucher, Voucher.status == "expired") == 12
    assert build.ledger(world.programme).available_fen == available + old
    after = visible_text(client.get(first.location))
    assert f"已把 12 张过期的服务券作废，{_money(old)} 回到可用预算。" in after
    assert "没有过期未用的服务券" in after


def test_an_auditor_sees_the_previews_without_forms_and_a_posted_run_is_refused(build, client):
    world = build.world()
    build.issue(world.programme, build.period(-2))
    _login(client, build.auditor())
    for path in (f"/staff/programmes/{world.programme.id}/issue?period={build.period(0)}",
                 f"/staff/programmes/{world.programme.id}/expire"):
        answer = client.get(path)
        assert answer.status_code == 200
        body = answer.get_data(as_text=True)
        assert 'method="post"' not in body.replace('action="/logout"', "").split("</header>", 1)[1]
        assert "确认" not in visible_text(answer)
    csrf = csrf_from(client.get("/staff").get_data(as_text=True))
    for path in (f"/staff/programmes/{world.programme.id}/issue", f"/staff/programmes/{world.programme.id}/expire"):
        refused = client.post(path, data={"csrf_token": csrf, "form_key": "k" * 24, "period": build.period(0)})
        assert refused.status_code == 403
    assert build.count(Voucher, Voucher.status == "expired") == 0
    assert build.count(Issuance) == 1


def test_another_regions_programme_is_refused(build, client):
    elsewhere = build.programme(items=[build.item()], budget_fen=1_000, region_code="510132")
    _login(client, build.admin(region_code="510131"))
    assert client.get(f"/staff/programmes/{elsewhere.id}/issue").status_code == 403
    assert client.get(f"/staff/programmes/{elsewhere.id}/expire").status_code == 403


def test_providers_and_recipients_may_not_open_the_cycle(build, client):
    world = build.world()
    _login(client, world.alice.user)
    assert client.get(f"/staff/programmes/{world.programme.id}/issue").status_code == 403
    assert build.count(Voucher) == 0
