"""The anomaly queue in a real browser, on both databases: an admin opens the queue, reads a flag with its
services and confirms it with a reason (a reason too short first: the message beside the field); an auditor reads
the same pages without a form. Every page passes check_page (axe WCAG 2.2 AA, no console error, nothing from
another origin) at phone and desk widths."""

import re

from marketplace.db import db, utcnow
from tests.browser.harness import check_page, each_width, log_in, shoot, watched
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption


def _checked(page, name: str | None = None) -> None:
    for _width in each_width(page):
        check_page(page)
    if name:
        shoot(page, name)


def _plant(build, world, served) -> int:
    def insert():
        flag = AnomalyFlag(programme_id=world.programme.id, period=build.period(-1), rule="month_end_burst",
                           severity="medium", subject=f"provider:{world.p1.id}", provider_id=world.p1.id,
                           evidence={"last_days": 3, "share_percent": 62, "median_percent": 11, "z": "6.1",
                                     "z_threshold": 3.5},
                           status="open", created_at=utcnow())
        db.session.add(flag)
        db.session.flush()
        for redemption in served:
            db.session.add(AnomalyFlagRedemption(flag_id=flag.id, redemption_id=redemption.id))
        return flag.id
    return build.run(insert)


def test_an_admin_confirms_a_flag_and_an_auditor_only_reads(new_context, build):
    world = build.world(budget_fen=10_000_000)
    build.issue(world.programme, build.period(-1))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    served = [build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, day)) for day in (28, 29)]
    flag = _plant(build, world, served)

    clerk = new_context().new_page()
    log_in(clerk, build.admin())
    clerk.goto("/staff")
    assert "待核实的异常情况" in clerk.locator("main").inner_text()
    clerk.get_by_role("link", name="去核实异常情况").click()
    assert "月底集中核销" in clerk.locator("main").inner_text()
    _checked(clerk, "staff-anomalies")
    clerk.locator(f"#anomaly-{flag} a").click()
    assert "本月最后 3 天完成了 62% 的服务" in clerk.locator("main").inner_text()
    _checked(clerk, "staff-anomaly")

    clerk.get_by_label(re.compile("理由")).fill("短")
    with clerk.expect_navigation():
        clerk.get_by_role("button", name="确认异常，暂不结算").click()
    watched(clerk).clear()
    assert clerk.locator("#error-reason").is_visible()
    _checked(clerk, "staff-anomaly-refused")
    clerk.get_by_label(re.compile("理由")).fill("电话回访：老人说月底那几天没有人来")
    with clerk.expect_navigation():
        clerk.get_by_role("button", name="确认异常，暂不结算").click()
    text = clerk.locator("main").inner_text()
    assert "已确认" in text
    assert "电话回访：老人说月底那几天没有人来" in text
    _checked(clerk)

    reader = new_context().new_page()
    log_in(reader, build.auditor())
    reader.goto(f"/staff/anomalies/{flag}")
    assert reader.locator("main form[method=post]").count() == 0
    _checked(reader)
    reader.goto("/staff/anomalies?status=all")
    _checked(reader)
