"""The provider's work list in a real browser, on both databases, at 360 px: filter by item and dates,
reverse a service through its confirmation, download the list as CSV and XLSX; every page passes
check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths."""

import csv
import io
from pathlib import Path

import openpyxl

from tests.browser.harness import WIDTHS, check_page, each_width, log_in, shoot
from vouchers.serials import serial_for


def _work(build):
    """p1 served alice a meal last month, and a meal and a bath this month."""
    world = build.world()
    build.issue(world.programme, build.period(-1))
    build.issue(world.programme, build.period(0))
    build.choose(world.alice, world.programme, world.meal, world.p1)
    build.choose(world.alice, world.programme, world.bath, world.p1)
    earlier = build.redeem(world.p1, world.alice, world.meal, delivered_at=build.in_month(-1, 3, hour=10))
    meal = build.redeem(world.p1, world.alice, world.meal)
    bath = build.redeem(world.p1, world.alice, world.bath)
    return world, earlier, meal, bath


def _rows(page) -> list[str]:
    return page.locator("tbody tr").evaluate_all("rows => rows.map(row => row.id)")


def test_filter_reverse_and_download_on_a_phone(page, build):
    world, earlier, meal, bath = _work(build)
    log_in(page, build.user(role="provider", provider_id=world.p1.id))
    page.set_viewport_size(WIDTHS["phone"])
    assert sorted(_rows(page)) == sorted([f"redemption-{meal.id}", f"redemption-{bath.id}"])
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-work")

    # By item, then by dates (last month).
    page.get_by_label("服务", exact=True).select_option(label="助浴")
    with page.expect_navigation():
        page.get_by_role("button", name="查看").click()
    assert _rows(page) == [f"redemption-{bath.id}"]
    page.get_by_label("服务", exact=True).select_option(label="全部")
    page.get_by_label("从哪天").fill(build.first_day(-1).isoformat())
    page.get_by_label("到哪天").fill(build.last_day(-1).isoformat())
    with page.expect_navigation():
        page.get_by_role("button", name="查看").click()
    assert _rows(page) == [f"redemption-{earlier.id}"]
    assert serial_for(earlier.voucher_id) in page.locator("main").inner_text()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-work-filtered")

    # Reverse this month's meal: the confirmation says what will happen, asks why, then back to the list.
    page.goto("/provider")
    page.locator(f"#redemption-{meal.id}").get_by_role("link", name="撤销").click()
    page.wait_for_url(f"**/provider/redemptions/{meal.id}/reverse*")
    assert "服务券退回给老人" in page.locator("main").inner_text()
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-reverse")
    page.get_by_label("为什么撤销？").fill("扫错了人")
    with page.expect_navigation():
        page.get_by_role("button", name="确认撤销").click()
    assert page.url.split("?")[0].endswith("/provider")
    assert "已撤销这次服务" in page.get_by_role("status").first.inner_text()
    assert "已撤销" in page.locator(f"#redemption-{meal.id}").inner_text()
    assert page.locator(f"#redemption-{meal.id} a").count() == 0  # nothing left to reverse
    assert build.redemption(meal.id).status == "reversed"
    check_page(page)

    # Both downloads: the list as shown.
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="下载 CSV 表格").click()
    data = Path(csv_download.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][0] == "核销编号"
    assert sorted(int(row[0]) for row in rows[1:]) == sorted([meal.id, bath.id])
    with page.expect_download() as xlsx_download:
        page.get_by_role("link", name="下载 Excel 表格").click()
    assert xlsx_download.value.suggested_filename.endswith(".xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(Path(xlsx_download.value.path()).read_bytes())).worksheets[0]
    assert sorted(row[0] for row in sheet.iter_rows(min_row=2, values_only=True)) == sorted([meal.id, bath.id])
    check_page(page)
