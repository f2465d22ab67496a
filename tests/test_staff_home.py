"""The staff home /staff: programmes in scope with their ledger, and what needs attention (both databases)."""

from tests.conftest import PASSWORD
from tests.support.console import login_page, visible_text


def _login(client, user):
    answer = login_page(client, user.username, PASSWORD)
    assert answer.status_code == 302
    assert answer.location == "/staff"


def test_the_home_shows_each_programme_with_its_ledger_and_what_needs_attention(build, client):
    world = build.world(budget_fen=10_000_000)
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    build.complain(world.p1, redemption=served)
    build.provider(items=[world.meal], status="pending")
    clerk = build.admin()
    _login(client, clerk)
    page = client.get("/staff")
    assert page.status_code == 200
    text = visible_text(page)
    ledger = build.ledger(world.programme)
    assert "¥100,000.00" in text  # allocated
    assert f"可用 {_money(ledger.available_fen)}" in text.replace("：", " ")
    assert "待审核的服务机构 1" in text
    assert "未处理的投诉 1" in text
    assert "待第二人审核的结算 0" in text


def _money(fen: int) -> str:
    yuan, cents = divmod(fen, 100)
    return f"¥{yuan:,}.{cents:02d}"


def test_a_region_limited_admin_sees_only_its_programmes(build, client):
    inside = build.programme(items=[build.item()], budget_fen=1_000, region_code="510131", name="蒲江县助餐项目")
    build.programme(items=[build.item()], budget_fen=1_000, region_code="510132", name="新津区助餐项目")
    assert inside
    _login(client, build.admin(region_code="510131"))
    text = visible_text(client.get("/staff"))
    assert "蒲江县助餐项目" in text
    assert "新津区助餐项目" not in text


def test_an_auditor_is_told_the_pages_are_read_only(build, client):
    _login(client, build.auditor())
    assert "只能查看" in visible_text(client.get("/staff"))


def test_recipients_and_providers_may_not_open_the_staff_home(build, client):
    world = build.world()
    login_page(client, world.alice.user.username, PASSWORD)
    assert client.get("/staff").status_code == 403


def test_strangers_are_sent_to_login_and_back(client):
    answer = client.get("/staff")
    assert answer.status_code == 302
    assert answer.location == "/login?next=/staff"


def test_the_projection_at_the_recent_rate_is_shown_and_an_early_end_is_flagged(build, client):
    world = build.world(budget_fen=60_000)  # a small budget, most of it committed by one month's vouchers
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    for _ in range(4):  # the whole month's quota: 345 days of money left at this rate
        build.redeem(world.p1, world.alice, world.meal)
    _as_admin = build.admin()
    assert login_page(client, _as_admin.username, PASSWORD).status_code == 302
    text = visible_text(client.get("/staff"))
    assert "按最近的使用速度，预算将在" in text
    assert "早于项目结束日" in text
