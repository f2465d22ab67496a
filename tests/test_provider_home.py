"""The provider staff's home /provider: today's and this month's services and the latest ones (both databases)."""

from tests.conftest import PASSWORD
from tests.support.console import login_page, visible_text


def test_today_the_month_and_the_latest_services_of_this_provider_only(build, client):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.meal, world.p2)
    build.redeem(world.p1, world.alice, world.meal)
    build.redeem(world.p1, world.alice, world.meal)
    build.redeem(world.p2, world.bob, world.meal)
    staff = build.user(role="provider", provider_id=world.p1.id)
    answer = login_page(client, staff.username, PASSWORD)
    assert answer.location == "/provider"
    text = visible_text(client.get("/provider"))
    assert "今天完成的服务 2 次" in text
    assert "本月完成的服务 2 次" in text
    assert text.count("助餐") >= 2
    assert "李桂英" not in text  # no names on the list


def test_a_reversed_service_is_shown_as_such_and_leaves_the_totals(build, client):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = build.redeem(world.p1, world.alice, world.meal)
    build.reverse(served)
    staff = build.user(role="provider", provider_id=world.p1.id)
    login_page(client, staff.username, PASSWORD)
    text = visible_text(client.get("/provider"))
    assert "今天完成的服务 0 次" in text
    assert "已撤销" in text


def test_only_provider_staff_open_it(build, client):
    world = build.world()
    login_page(client, world.alice.user.username, PASSWORD)
    assert client.get("/provider").status_code == 403
