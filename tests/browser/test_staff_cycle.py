"""The monthly cycle in a real browser, on both databases, with two admins in two browser contexts: the first
issues a month (preview, then the run), drafts its settlements (a preview with each provider's third-party
evaluation E: an out-of-range one is refused beside its field), cannot approve them, and opens the page that
deletes a draft without deleting it; the second approves and pays. An auditor sees every page without an
action control, and a posted approve is refused (403). Every page passes check_page (axe WCAG 2.2 AA, no
console error, nothing from another origin) at phone and desk widths, for an admin and for the auditor."""

import re

from tests.browser.harness import check_page, each_width, log_in, shoot, watched
from vouchers.models import Voucher


def _checked(page, name: str | None = None) -> None:
    for _width in each_width(page):
        check_page(page)
    if name:
        shoot(page, name)


def _no_action_controls(page) -> None:
    """Nothing in the page's main part changes anything: no form that posts, no submit button."""
    assert page.locator("main form[method=post]").count() == 0
    assert page.locator("main button[type=submit]").count() == page.locator("main form[method=get] button").count()


def test_the_monthly_cycle_with_two_admins_and_an_auditor(new_context, build):
    world = build.world(budget_fen=10_000_000)
    first_admin, second_admin, auditor = build.admin(), build.admin(), build.auditor()
    last_month = build.period(-1)

    clerk = new_context().new_page()
    log_in(clerk, first_admin)
    # Issue last month: the preview, then the run; the page then shows the run.
    clerk.goto(f"/staff/programmes/{world.programme.id}/issue?period={last_month}")
    assert "将发放的服务券" in clerk.locator("main").inner_text()
    _checked(clerk, "staff-issue-preview")
    with clerk.expect_navigation():
        clerk.get_by_role("button", name=re.compile("确认发放")).click()
    assert "已发放 12 张服务券给 2 位老人" in clerk.locator("main").inner_text()
    assert clerk.get_by_role("button", name=re.compile("确认发放")).count() == 0
    _checked(clerk, "staff-issue-done")
    assert build.count(Voucher) == 12

    # The month's services.
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.bob, world.programme, world.bath, world.p2)
    for day in (3, 5):
        build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, day))
    build.redeem(world.p2, world.bob, world.bath, delivered_at=build.in_month(-1, 8))

    clerk.goto(f"/staff/programmes/{world.programme.id}/expire")
    _checked(clerk, "staff-expire")

    # Draft last month's settlements from the list: first the preview, with a field for each provider's E.
    clerk.goto("/staff/settlements")
    _checked(clerk)
    clerk.get_by_label("结算月份").fill(last_month)
    with clerk.expect_navigation():
        clerk.get_by_role("button", name="起草这个月的结算").click()
    preview = clerk.locator("main").inner_text()
    assert "2 家" in preview
    assert world.p1.name in preview
    assert world.p2.name in preview
    _checked(clerk, "staff-settlement-draft-preview")
    evaluation = clerk.get_by_label(re.compile(f"第三方评价 E.*{re.escape(world.p1.name)}"))
    evaluation.fill("101")  # out of range: refused beside the field (422), nothing drafted
    with clerk.expect_navigation():
        clerk.get_by_role("button", name="确认起草 2 份结算").click()
    assert "应在 0 到 100 之间" in clerk.locator("main").inner_text()
    assert build.settlements() == []
    watched(clerk).clear()  # the browser logs the refused form's 422 itself
    _checked(clerk, "staff-settlement-draft-refused")
    evaluation.fill("88")
    with clerk.expect_navigation():
        clerk.get_by_role("button", name="确认起草 2 份结算").click()
    assert "已起草 2 份结算" in clerk.locator("main").inner_text()
    _checked(clerk, "staff-settlements")
    drafted = build.settlements()
    assert [s.created_by for s in drafted] == [first_admin.id, first_admin.id]
    assert {s.provider_id: s.evaluation_score for s in drafted} == {world.p1.id: 88, world.p2.id: None}
    settlement_id = next(s.id for s in drafted if s.provider_id == world.p1.id)

    # The drafter cannot approve: the page says so and offers no button.
    with clerk.expect_navigation():
        clerk.locator(f'main a[href="/staff/settlements/{settlement_id}"]').click()
    assert "需要另一位工作人员审核" in clerk.locator("main").inner_text()
    assert clerk.locator("main dl.facts div", has_text="第三方评价 E").inner_text().split()[-1] == "88"
    assert clerk.get_by_role("button", name="审核通过").count() == 0
    _checked(clerk, "staff-settlement-drafter")
    # Deleting the draft is a quiet link to a page that says what follows; not taken here.
    with clerk.expect_navigation():
        clerk.get_by_role("link", name="删除这份草稿").click()
    assert "回到未结算，可以重新起草" in clerk.locator("main").inner_text()
    _checked(clerk, "staff-settlement-discard")
    with clerk.expect_navigation():
        clerk.get_by_role("link", name="不删了，返回").click()

    # The colleague approves, then pays.
    colleague = new_context().new_page()
    log_in(colleague, second_admin)
    colleague.goto(f"/staff/settlements/{settlement_id}")
    assert first_admin.username in colleague.locator("main").inner_text()
    _checked(colleague)
    with colleague.expect_navigation():
        colleague.get_by_role("button", name="审核通过").click()
    assert build.settlement(settlement_id).status == "approved"
    _checked(colleague, "staff-settlement-approved")
    colleague.get_by_label(re.compile("付款凭证号")).fill("国库集中支付-2026-0007")
    with colleague.expect_navigation():
        colleague.get_by_role("button", name="记录付款").click()
    paid = build.settlement(settlement_id)
    assert paid.status == "paid"
    assert paid.payment_reference == "国库集中支付-2026-0007"
    assert "国库集中支付-2026-0007" in colleague.locator("main").inner_text()
    _checked(colleague, "staff-settlement-paid")

    # The auditor reads every page without an action control; a posted approve is refused.
    reader = new_context().new_page()
    log_in(reader, auditor)
    other = next(s.id for s in drafted if s.id != settlement_id)
    for address in (f"/staff/programmes/{world.programme.id}/issue?period={build.period(0)}",
                    f"/staff/programmes/{world.programme.id}/expire", "/staff/settlements",
                    f"/staff/settlements/{other}", f"/staff/settlements/{settlement_id}"):
        assert reader.goto(address).status == 200
        _no_action_controls(reader)
        _checked(reader)
    shoot(reader, "staff-settlement-auditor")
    reader.goto(f"/staff/settlements/{other}")
    token = reader.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = reader.request.post(f"/staff/settlements/{other}/approve",
                                  form={"csrf_token": token, "form_key": "a" * 24})
    assert refused.status == 403
    assert build.settlement(other).status == "draft"
