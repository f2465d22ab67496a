"""A recipient's page, recording a death (a day in the future refused beside the date, then the day it took
effect), and the CSV import in a real browser, on both databases: every page
passes check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths,
as an admin and as an auditor (who sees no control that changes anything); an import with bad rows, the bad
rows downloaded, fixed and uploaded again creates them."""

import csv
from datetime import date, timedelta
from pathlib import Path

from marketplace.recipients.idnumber import check_character
from tests.browser.harness import check_page, each_width, log_in, shoot, watched

HEADER = ["name", "id_number", "phone", "region_code", "address", "tags"]


def _id(serial: int) -> str:
    first17 = f"510131{date(1941, 3, 4):%Y%m%d}{serial:03d}"
    return first17 + check_character(first17)


def _month(build):
    world = build.world()
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.alice, world.programme, world.meal, world.p2, reason="staff_attitude", note="说话很冲")
    served = build.redeem(world.p2, world.alice, world.meal)
    build.rate(served, 2)
    build.complain(world.p2, redemption=served, text="服务人员态度差")
    return world


def test_a_recipients_page_and_recording_a_death(page, build):
    world = _month(build)
    log_in(page, build.admin())
    page.goto("/staff/recipients")
    with page.expect_navigation():
        page.get_by_role("link", name="李桂英", exact=True).click()
    assert page.url.endswith(f"/staff/recipients/{world.alice.id}")
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-recipient")
    with page.expect_navigation():
        page.get_by_role("link", name="登记为已故").click()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-recipient-status")
    assert "作废" in page.locator("main").inner_text()
    page.get_by_role("radio", name="已故").check()
    date_field = page.get_by_label("去世或迁出的日期")
    today = date.fromisoformat(date_field.input_value())  # today's date is filled in
    date_field.fill((today + timedelta(days=1)).isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name="确认登记").click()
    assert page.locator("#error-effective_on").inner_text() == "日期不能晚于今天。"
    watched(page).clear()  # the browser logs the 422 of the refused form itself
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-recipient-status-refused")
    died = today - timedelta(days=3)
    page.get_by_label("去世或迁出的日期").fill(died.isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name="确认登记").click()
    assert page.url.endswith(f"/staff/recipients/{world.alice.id}")
    assert "已登记为已故" in page.locator("main").inner_text()
    assert "去世日期" in page.locator("main").inner_text()
    check_page(page)


def test_an_auditor_reads_the_recipients_page_without_controls(page, build):
    world = _month(build)
    log_in(page, build.auditor())
    for address in ("/staff/recipients", f"/staff/recipients/{world.alice.id}"):
        assert page.goto(address).status == 200
        for _width in each_width(page):
            check_page(page)
        main = page.locator("main")
        assert main.locator("form[method=post]").count() == 0
        assert main.get_by_role("link", name="代办").count() == 0
    assert main.get_by_role("link", name="登记为已故").count() == 0
    shoot(page, "staff-recipient-auditor")
    refused = page.request.post(f"/staff/recipients/{world.alice.id}/status", form={"status": "deceased"})
    assert refused.status in (403, 400)  # refused either way: no CSRF token, and not an admin


def test_an_import_with_bad_rows_downloaded_fixed_and_imported_again(page, build, tmp_path: Path):
    log_in(page, build.admin())
    page.goto("/staff/recipients")
    with page.expect_navigation():
        page.get_by_role("link", name="用 CSV 文件批量导入").click()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-recipient-import")
    with page.expect_download() as template:
        page.get_by_role("link", name="下载空白模板（CSV）").click()
    assert Path(template.value.path()).read_text(encoding="utf-8-sig").strip() == ",".join(HEADER)

    upload = tmp_path / "people.csv"
    with upload.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([HEADER, ["王秀英", _id(1), "13800001111", "510131", "鹤山街道", "low_income"],
                                      ["刘阿婆", _id(2), "12345", "510131", "", ""],
                                      ["陈大爷", _id(3), "", "999999", "", "rich"]])
    page.locator("#field-file").set_input_files(str(upload))
    with page.expect_navigation():
        page.get_by_role("button", name="导入").click()
    assert page.locator("#created-count").inner_text() == "1"
    assert page.locator("#error-count").inner_text() == "2"
    for _width in each_width(page):
        check_page(page)
    shoot(page, "staff-recipient-import-result")

    with page.expect_download() as download:
        page.get_by_role("button", name="下载有误的行（CSV）").click()
    rows = list(csv.reader(Path(download.value.path()).read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == [*HEADER, "错误原因"]
    assert [row[0] for row in rows[1:]] == ["刘阿婆", "陈大爷"]
    rows[1][2] = "13900002222"
    rows[2][3], rows[2][5] = "510131", "living_alone"
    fixed = tmp_path / "fixed.csv"
    with fixed.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows(rows)
    page.locator("#field-file").set_input_files(str(fixed))
    with page.expect_navigation():
        page.get_by_role("button", name="导入").click()
    assert page.locator("#created-count").inner_text() == "2"
    assert page.locator("#error-count").inner_text() == "0"
    page.goto("/staff/recipients?q=陈大爷")
    assert "陈大爷" in page.locator("main").inner_text()


def test_a_region_limited_admin_cannot_open_another_regions_recipient(page, build):
    """蒲江县's admin finds only 蒲江县's people: another county's recipient is not in the list, and opening their
    page (or acting for them) by address is refused with the console's error page."""
    world = _month(build)
    elsewhere = build.recipient(name="周德明", region_code="510132")
    log_in(page, build.admin(region_code="510131"))
    page.goto("/staff/recipients?q=周德明")
    assert "周德明" not in page.inner_text("main")
    for address in (f"/staff/recipients/{elsewhere.id}", f"/staff/recipients/{elsewhere.id}/act"):
        assert page.goto(address).status == 403
        assert "周德明" not in page.content()
    assert page.goto(f"/staff/recipients/{world.alice.id}").status == 200
