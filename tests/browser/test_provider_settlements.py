"""The provider's settlements in a real browser, on both databases: the list and a settlement pass
check_page (axe WCAG 2.2 AA, no console error, nothing from another origin) at phone and desk widths,
both statements download from the settlement's page, and the page prints on A4 without its controls.

`open_settlement_and_download(page, settlement_id)` is the step the end-to-end test reuses."""

import csv
import io
from pathlib import Path

from openpyxl import load_workbook

from tests.browser.harness import check_page, each_width, log_in, shoot
from vouchers.statements import HEADERS


def open_settlement_and_download(page, settlement_id: int) -> dict[str, Path]:
    """From the provider's list, open settlement *settlement_id* like a person (its link), check the page
    at every width, and download both statements through their buttons: {"xlsx": path, "csv": path}."""
    page.goto("/provider/settlements")
    link = page.locator(f'a[href="/provider/settlements/{settlement_id}"]')
    with page.expect_navigation():
        link.click()
    assert page.url.endswith(f"/provider/settlements/{settlement_id}")
    for _width in each_width(page):
        check_page(page)
    downloaded = {}
    for kind, name in (("xlsx", "下载对账单（Excel）"), ("csv", "下载对账单（CSV）")):
        with page.expect_download() as download:
            page.get_by_role("link", name=name).click()
        assert download.value.suggested_filename.endswith(f"-{settlement_id}.{kind}")
        downloaded[kind] = Path(download.value.path())
    return downloaded


def test_the_list_a_settlement_and_both_statements(page, build):
    scene = build.full_scenario()
    p1 = scene.providers[0]
    log_in(page, build.user(role="provider", provider_id=p1.id))
    page.goto("/provider/settlements")
    for _width in each_width(page):
        check_page(page)
    shoot(page, "provider-settlements")

    downloaded = open_settlement_and_download(page, scene.paid)
    shoot(page, "provider-settlement")
    raw = downloaded["csv"].read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == HEADERS
    assert len([row for row in rows[1:] if row and row[0].isdigit()]) == 4
    workbook = load_workbook(io.BytesIO(downloaded["xlsx"].read_bytes()))
    sheet_rows = [list(row) for row in workbook.active.iter_rows(values_only=True)]
    workbook.close()
    assert sheet_rows[0] == HEADERS
    assert sheet_rows[-1][:2] == ["应付金额（元）", "75.24"]


def test_the_settlement_prints_without_its_controls(page, build):
    scene = build.full_scenario()
    log_in(page, build.user(role="provider", provider_id=scene.providers[1].id))
    page.goto(f"/provider/settlements/{scene.approved}")
    assert page.get_by_role("button", name="打印").is_visible()  # print-button.js shows it
    page.emulate_media(media="print")
    try:
        assert not page.get_by_role("link", name="下载对账单（Excel）").is_visible()
        assert not page.get_by_role("button", name="打印").is_visible()
        assert not page.locator("header.site-header").is_visible()
        # The lines are on paper in full, not in a scroll box.
        assert page.locator(".table-wrap").first.evaluate("el => getComputedStyle(el).overflowX") == "visible"
        assert page.get_by_text("得分 = 0.5 × 25 + 0.2 × 100 + 0.3 × 40 = 44.5，四舍五入为 45 分。").is_visible()
        pdf = page.pdf(format="A4")
    finally:
        page.emulate_media(media="screen")
    assert pdf.startswith(b"%PDF")


def test_another_providers_settlement_is_a_not_found_page(page, build):
    scene = build.full_scenario()
    log_in(page, build.user(role="provider", provider_id=scene.providers[0].id))
    answer = page.goto(f"/provider/settlements/{scene.draft}")
    assert answer.status == 404
    assert page.get_by_role("heading", name="找不到这个页面").is_visible()
