"""Reconciliation after a whole month of the scheme, and what it catches (docs/domain.md#invariants).

A full scenario — issue, redeem, reverse, expire, revoke, settle, approve, pay — reconciles on both
databases; then ONE row is corrupted directly with SQL, behind the services' back, and exactly the
check(s) that watch that row fail. Every test runs on SQLite and PostgreSQL.
"""

import pytest
from sqlalchemy import select, text

from marketplace.db import db
from marketplace.programmes.models import JournalEntry, JournalLine
from tests.support.scenario import FullScenario
from vouchers.models import Redemption, Settlement, Voucher

API = "/api/v1"
CHECKS = {
    "journal_entries_balanced", "journal_lines_match_entries", "allocated_matches_amendments",
    "allocation_entries_match_amendments", "guarded_available_matches_journal", "available_not_negative",
    "committed_matches_issued_vouchers", "redeemed_settled_deducted_match_redemptions",
    "settled_matches_approved_settlements", "settlements_match_their_redemptions", "vouchers_redeemed_at_most_once",
    "voucher_status_matches_redemptions",
}


@pytest.fixture
def full(build) -> FullScenario:
    return build.full_scenario()


def reconciliation(client, build, programme_id: int) -> dict:
    response = client.get(f"{API}/programmes/{programme_id}/reconciliation", headers=build.headers(build.auditor()))
    assert response.status_code == 200
    return response.get_json()


def failing(report: dict) -> set[str]:
    return {check["name"] for check in report["checks"] if not check["ok"]}


def test_a_whole_month_reconciles(build, client, full):
    report = reconciliation(client, build, full.programme)

    assert report["ok"] is True, [check for check in report["checks"] if not check["ok"]]
    assert {check["name"] for check in report["checks"]} >= CHECKS
    # The scenario really went everywhere: every status and every kind of movement exists.
    statuses = {v.status for v in build.vouchers(Voucher.programme_id == full.programme)}
    assert statuses == {"issued", "redeemed", "expired", "revoked"}
    assert {s.status for s in build.settlements()} == {"paid", "approved", "draft"}
    assert build.count(Redemption, Redemption.status == "reversed") == 2
    balances = build.ledger(full.programme)
    assert balances.settled_fen > 0
    assert balances.deducted_fen > 0
    assert balances.redeemed_fen > 0
    assert balances.committed_fen > 0
    assert balances.released_fen > balances.deducted_fen
    assert balances.allocated_fen == (balances.available_fen + balances.committed_fen + balances.redeemed_fen
                                      + balances.settled_fen)
    approved = [build.settlement(full.paid), build.settlement(full.approved)]
    assert balances.settled_fen == sum(s.net_fen for s in approved)
    assert balances.deducted_fen == sum(s.gross_fen - s.net_fen for s in approved)


def _one(statement):
    return db.session.scalars(statement.limit(1)).one()


def _line(entry_kind: str, account: str):
    return _one(select(JournalLine.id).join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
                .where(JournalEntry.kind == entry_kind, JournalLine.account == account).order_by(JournalLine.id))


# name → (the row to corrupt, given the scenario: (SQL, params)), the checks that must fail
CORRUPTIONS = {
    "issued_voucher_face_value": (
        lambda full: ("UPDATE voucher SET face_value_fen = face_value_fen + 1 WHERE id = :id",
                      {"id": full.issued_voucher}),
        {"committed_matches_issued_vouchers"}),
    "unsettled_redemption_face_value": (
        lambda full: ("UPDATE redemption SET face_value_fen = face_value_fen + 1 WHERE id = :id",
                      {"id": full.unsettled.id}),
        {"redeemed_settled_deducted_match_redemptions"}),
    "settled_redemption_face_value": (
        lambda full: ("UPDATE redemption SET face_value_fen = face_value_fen - 1 WHERE id = :id",
                      {"id": full.settled.id}),
        {"redeemed_settled_deducted_match_redemptions", "settlements_match_their_redemptions"}),
    "expired_voucher_flipped_to_redeemed": (
        lambda full: ("UPDATE voucher SET status = 'redeemed' WHERE id = :id", {"id": full.expired_voucher}),
        {"voucher_status_matches_redemptions"}),
    "revoked_voucher_flipped_to_redeemed": (
        lambda full: ("UPDATE voucher SET status = 'redeemed' WHERE id = :id", {"id": full.revoked_voucher}),
        {"voucher_status_matches_redemptions"}),
    "issued_voucher_flipped_to_redeemed": (
        lambda full: ("UPDATE voucher SET status = 'redeemed' WHERE id = :id", {"id": full.issued_voucher}),
        {"voucher_status_matches_redemptions", "committed_matches_issued_vouchers"}),
    "redeemed_voucher_flipped_to_issued": (
        lambda full: ("UPDATE voucher SET status = 'issued' WHERE id = :id", {"id": full.unsettled.voucher_id}),
        {"voucher_status_matches_redemptions", "committed_matches_issued_vouchers"}),
    "draft_settlement_gross": (
        lambda full: ("UPDATE settlement SET gross_fen = gross_fen + 1 WHERE id = :id", {"id": full.draft}),
        {"settlements_match_their_redemptions"}),
    "paid_settlement_gross": (
        lambda full: ("UPDATE settlement SET gross_fen = gross_fen + 100 WHERE id = :id", {"id": full.paid}),
        {"settlements_match_their_redemptions"}),
    "settlement_count": (
        lambda full: ("UPDATE settlement SET redemptions_count = redemptions_count + 1 WHERE id = :id",
                      {"id": full.approved}),
        {"settlements_match_their_redemptions"}),
    "approved_settlement_net": (
        lambda full: ("UPDATE settlement SET net_fen = net_fen - 1 WHERE id = :id", {"id": full.approved}),
        {"settled_matches_approved_settlements"}),
    "paid_settlement_net": (
        lambda full: ("UPDATE settlement SET net_fen = net_fen - 1 WHERE id = :id", {"id": full.paid}),
        {"settled_matches_approved_settlements"}),
    "redemption_moved_to_another_settlement": (
        lambda full: ("UPDATE redemption SET settlement_id = :other WHERE id = :id",
                      {"id": full.settled.id, "other": full.draft}),
        {"settlements_match_their_redemptions"}),
    "redemption_journal_line": (
        lambda full: ("UPDATE journal_line SET amount_fen = amount_fen + 1 WHERE id = :id",
                      {"id": _line("redemption", "redeemed")}),
        {"journal_entries_balanced", "redeemed_settled_deducted_match_redemptions"}),
    "settlement_journal_line": (
        lambda full: ("UPDATE journal_line SET amount_fen = amount_fen - 1 WHERE id = :id",
                      {"id": _line("settlement", "settled")}),
        # settled is part of redeemed + settled + deducted as well
        {"journal_entries_balanced", "settled_matches_approved_settlements",
         "redeemed_settled_deducted_match_redemptions"}),
    "commitment_journal_line": (
        lambda full: ("UPDATE journal_line SET amount_fen = amount_fen + 1 WHERE id = :id",
                      {"id": _line("commitment", "committed")}),
        {"journal_entries_balanced", "committed_matches_issued_vouchers"}),
    "funding_journal_line": (
        lambda full: ("UPDATE journal_line SET amount_fen = amount_fen - 1 WHERE id = :id",
                      {"id": _line("allocation", "funding")}),
        {"journal_entries_balanced", "allocated_matches_amendments"}),
    "guarded_available": (
        lambda full: ("UPDATE programme_budget SET available_fen = available_fen + 1 WHERE programme_id = :id",
                      {"id": full.programme}),
        {"guarded_available_matches_journal"}),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupting_one_row_fails_exactly_the_checks_that_watch_it(build, client, full, corruption):
    make_sql, expected = CORRUPTIONS[corruption]
    assert failing(reconciliation(client, build, full.programme)) == set()

    def corrupt():
        statement, params = make_sql(full)
        assert db.session.execute(text(statement), params).rowcount == 1

    build.run(corrupt)

    report = reconciliation(client, build, full.programme)
    assert report["ok"] is False
    assert failing(report) == expected
    for check in report["checks"]:
        if check["name"] in expected and check["name"] != "journal_entries_balanced":
            assert check["expected"] != check["actual"], check


def test_another_programme_is_not_disturbed_by_a_corruption(build, client, full):
    meal = build.item()
    other = build.programme(items=[(meal, 1000, 1)]).id
    build.run(lambda: db.session.execute(text("UPDATE settlement SET net_fen = net_fen - 1 WHERE id = :id"),
                                         {"id": full.approved}))

    assert failing(reconciliation(client, build, other)) == set()
    assert failing(reconciliation(client, build, full.programme)) == {"settled_matches_approved_settlements"}


def test_the_settlements_in_the_scenario_hold_exactly_their_redemptions(build, full):
    for settlement_id in (full.paid, full.approved, full.draft):
        settlement = build.settlement(settlement_id)
        redemptions = build.redemptions(Redemption.settlement_id == settlement_id)
        assert settlement.redemptions_count == len(redemptions) > 0
        assert settlement.gross_fen == sum(r.face_value_fen for r in redemptions)
        assert all(r.status == "completed" and r.provider_id == settlement.provider_id for r in redemptions)
    assert build.redemption(full.unsettled.id).settlement_id is None
    assert build.redemption(full.reversed.id).settlement_id is None
    assert build.count(Settlement) == 3
