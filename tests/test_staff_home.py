"""The staff home /staff: programmes in scope with their ledger, and what needs attention (both databases)."""

from tests.conftest import PASSWORD
from tests.support.console import csrf_from, login_page, visible_text


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
    assert "新津区助餐项目 ：" not in text


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


# --- what needs attention, and where the work is done ---------------------------------------------------

def _applied(build, world):
    """A newcomer (approved, offering meals in 蒲江县, not enrolled) applies to join the world's programme."""
    from marketplace.auth.models import User
    from marketplace.db import db, utcnow
    from providers.service import applications

    newcomer = build.provider(items=[world.meal], name="鹤山助餐服务社")
    build.run(lambda: applications.apply(programme_id=world.programme.id, note=None,
                                         actor=db.session.get(User, newcomer.user.id), now=utcnow()))
    return newcomer


def _attention_card(page_html: str, title: str) -> str:
    start = page_html.index(f"<h3>{title}</h3>")
    return page_html[start:page_html.index("</li>\n", start)]


def test_applications_to_join_a_programme_are_counted_by_programme(build, client):
    world = build.world()
    _applied(build, world)
    other = build.programme(items=[build.item()], name="新津区助餐项目", region_code="510132")
    assert other
    _login(client, build.admin())
    page = client.get("/staff")
    text = visible_text(page)
    assert "服务机构申请加入项目 1" in text
    assert f"{world.programme.name} ：1 份" in text  # the name links to the programme's page
    assert f'<a href="/staff/programmes/{world.programme.id}">{world.programme.name}</a>' in page.get_data(as_text=True)
    assert "新津区助餐项目 ：" not in text


def test_a_region_limited_admin_counts_only_applications_to_its_programmes(build, client):
    world = build.world()  # in 蒲江县, 510131
    _applied(build, world)
    build.provider(items=[world.meal], regions=("510129",), status="pending")  # something for it to see
    _login(client, build.admin(region_code="510129"))
    text = visible_text(client.get("/staff"))
    assert "待审核的服务机构 1" in text
    assert "服务机构申请加入项目 0" in text


def test_each_item_links_to_where_its_work_is_done_once_that_page_exists(app, make_app, build):
    world = _month_with_complaint(build)
    _applied(build, world)
    build.provider(items=[world.meal], status="pending")
    clerk = build.admin()
    queues = (("staff_providers.index", "/staff/providers"), ("staff_complaints.index", "/staff/complaints"),
              ("staff_settlements.index", "/staff/settlements"),
              ("staff_programmes.show", "/staff/programmes/<int:programme_id>"))
    bare = app.test_client()
    _login(bare, clerk)
    page = bare.get("/staff").get_data(as_text=True)
    for endpoint, rule in queues:  # a page not built yet gets no link (no dead ends)
        if endpoint not in app.view_functions:
            assert f'href="{rule.replace("<int:programme_id>", str(world.programme.id))}"' not in page

    with_pages = make_app()
    for endpoint, rule in queues:
        if endpoint not in with_pages.view_functions:
            with_pages.add_url_rule(rule, endpoint=endpoint, view_func=lambda **_kw: "")
    client = with_pages.test_client()
    _login(client, clerk)
    page = client.get("/staff").get_data(as_text=True)
    assert 'href="/staff/providers"' in _attention_card(page, "待审核的服务机构")
    assert 'href="/staff/complaints"' in _attention_card(page, "未处理的投诉")
    assert "href=" not in _attention_card(page, "待第二人审核的结算")  # nothing waits there
    assert f'href="/staff/programmes/{world.programme.id}"' in _attention_card(page, "服务机构申请加入项目")


def _month_with_complaint(build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.complain(world.p1, redemption=build.redeem(world.p1, world.alice, world.meal))
    return world


def test_a_programme_running_out_early_is_named_among_what_needs_attention(build, client):
    world = build.world(budget_fen=60_000)
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    for _ in range(4):
        build.redeem(world.p1, world.alice, world.meal)
    _login(client, build.admin())
    page = client.get("/staff").get_data(as_text=True)
    card = _attention_card(page, "预算可能提前用完")
    assert world.programme.name in card
    assert "按最近的使用速度" in card


def test_admins_get_the_new_programme_button_and_auditors_do_not(build, client):
    _login(client, build.admin())
    page = client.get("/staff").get_data(as_text=True)
    assert 'href="/staff/programmes/new"' in page
    client.post("/logout", data={"csrf_token": csrf_from(page)})
    _login(client, build.auditor())
    page = client.get("/staff").get_data(as_text=True)
    assert "/staff/programmes/new" not in page
    assert "新建项目" not in page
    assert "<form" not in page.split("</header>", 1)[1]  # nothing on the auditor's home changes anything
