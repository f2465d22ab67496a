"""The provider's programmes page in a real browser, on both databases: the manager applies to join a programme on
a 360 px phone (a double click applies once), the bureau refuses with a reason the page then shows; every page
passes check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths."""

from tests.browser.harness import WIDTHS, check_page, each_width, log_in, shoot, watched


def _scene(build):
    meal, bath = build.item(name="助餐", unit="餐"), build.item(name="助浴")
    served = build.programme(items=[(meal, 1237, 10), (bath, 5000, 2)], name="蒲江县助餐服务券")
    joinable = build.programme(items=[(meal, 1500, 8)], name="蒲江县居家养老服务券")
    provider = build.provider(items=[meal, bath], enrol_in=[served], name="鹤山助餐服务社")
    return joinable, provider


def test_the_manager_applies_on_a_phone_and_reads_the_bureaus_answer(page, build, client):
    joinable, provider = _scene(build)
    page.set_viewport_size(WIDTHS["phone"])
    log_in(page, provider.user)
    assert page.goto("/provider/programmes").status == 200
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-programmes")

    page.set_viewport_size(WIDTHS["phone"])
    with page.expect_navigation():
        page.get_by_role("link", name="申请加入“蒲江县居家养老服务券”").click()
    assert page.url.endswith(f"/provider/programmes/{joinable.id}/apply")
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-programme-apply")

    page.set_viewport_size(WIDTHS["phone"])
    page.get_by_label("想告诉民政部门的话（可以不写）").fill("我们有 12 名助餐员，在鹤山街道服务五年了。")
    with page.expect_navigation():
        page.get_by_role("button", name="提交申请").dblclick()
    assert page.url.endswith("/provider/programmes#applications")
    assert page.get_by_text("申请已经提交").is_visible()
    assert page.get_by_text("已经申请，等待民政部门审核。").is_visible()
    check_page(page)

    admin = build.headers(build.system_admin)
    [application] = client.get("/api/v1/programme-applications", headers=admin).get_json()["items"]
    assert application["note"] == "我们有 12 名助餐员，在鹤山街道服务五年了。"
    refused = client.post(f"/api/v1/programme-applications/{application['id']}/refuse",
                          json={"reason": "本年度名额已满，请明年再申请"}, headers=admin)
    assert refused.status_code == 200

    page.goto("/provider/programmes")
    applications = page.get_by_role("region", name="我的申请")
    assert applications.get_by_text("本年度名额已满，请明年再申请").is_visible()
    assert applications.get_by_text("未同意").is_visible()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-programmes-refused")


def test_a_note_too_long_is_refused_beside_the_field(page, build):
    joinable, provider = _scene(build)
    log_in(page, provider.user)
    page.goto(f"/provider/programmes/{joinable.id}/apply")
    # maxlength stops a person typing more; a script (or an old browser) may still post it.
    note = page.get_by_label("想告诉民政部门的话（可以不写）")
    note.evaluate("(field, text) => { field.removeAttribute('maxlength'); field.value = text; }", "长" * 501)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="提交申请").click()
    assert navigation.value.status == 422
    watched(page).clear()  # the browser logs the 422 of the refused form itself
    assert page.get_by_text("最多 500 个字。").first.is_visible()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-programme-apply-refused")
