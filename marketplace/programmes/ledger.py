"""The budget ledger: a double-entry journal per programme.

Every money movement is one `JournalEntry` whose `JournalLine`s sum to zero, written in the same
transaction as the change it pays for. Entries are never updated; balances are sums of lines.

    allocation   funding → available        (a negative allocation reverses it)
    commitment   available → committed      (vouchers issued)
    release      committed → available      (vouchers expired or revoked)
    redemption   committed → redeemed       (a voucher was used)
    reversal     redeemed → committed       (a redemption was undone)
    settlement   redeemed → settled         (net pay of an approved settlement)
    deduction    redeemed → available       (gross − net: pay withheld for poor performance)

`released` = everything that flowed back into `available` by release or deduction.
The identity allocated = available + committed + redeemed + settled holds because entries balance.

`post_entry` is the only writer. When an entry takes money out of `available` it first runs the
guarded UPDATE on `programme_budget` (`... WHERE available_fen >= :amount`): of any number of
concurrent transactions, on PostgreSQL or SQLite, only those that fit succeed, and available never
goes below zero (a CHECK constraint stands behind the guard).
"""

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update

from marketplace.db import db
from marketplace.programmes.models import ACCOUNTS, BudgetAmendment, JournalEntry, JournalLine, ProgrammeBudget
from marketplace.signals import reconciliation_checks

RELEASE_KINDS = ("release", "deduction")


class InsufficientBudget(Exception):
    """Not enough available budget for a movement; callers turn it into their own domain error."""

    def __init__(self, *, requested_fen: int, available_fen: int):
        super().__init__(f"requested {requested_fen} fen, {available_fen} fen available")
        self.requested_fen = requested_fen
        self.available_fen = available_fen
        self.shortfall_fen = requested_fen - available_fen


@dataclass(frozen=True)
class Ledger:
    allocated_fen: int
    committed_fen: int
    redeemed_fen: int
    settled_fen: int
    released_fen: int
    available_fen: int
    # Part of released_fen: pay withheld from providers for poor performance (gross − net).
    deducted_fen: int = 0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    expected: int
    actual: int
    description: str


def open_budget(*, programme_id: int) -> None:
    """Create the programme's guarded balance row (available 0)."""
    db.session.add(ProgrammeBudget(programme_id=programme_id, available_fen=0))


def post_entry(*, programme_id: int, kind: str, lines: dict[str, int], now: datetime, actor_id: int | None = None,
               reference_type: str | None = None, reference_id: str | int | None = None,
               memo: str | None = None) -> int:
    """Write one balanced journal entry and return its id.

    :raises InsufficientBudget: the entry takes more out of `available` than is there.
    """
    lines = {account: amount for account, amount in lines.items() if amount}
    if sum(lines.values()) != 0 or not lines or not set(lines) <= set(ACCOUNTS):
        raise ValueError(f"unbalanced or unknown journal lines: {lines}")
    delta = lines.get("available", 0)
    if delta:
        _move_available(programme_id=programme_id, delta=delta)
    connection = db.session.connection()  # Core statements straight on the connection: no ORM layer
    entry_id = connection.execute(
        _INSERT_ENTRY,
        {"programme_id": programme_id, "kind": kind, "reference_type": reference_type,
         "reference_id": None if reference_id is None else str(reference_id), "memo": memo, "created_at": now,
         "actor_id": actor_id},
    ).scalar_one()
    connection.execute(_INSERT_LINE, [
        {"entry_id": entry_id, "programme_id": programme_id, "kind": kind, "account": account, "amount_fen": amount}
        for account, amount in lines.items()
    ])
    return entry_id


# Built once, on the tables (not the ORM entities): every redemption posts an entry, and SQLAlchemy
# then reuses the compiled statements without the ORM's bulk-insert machinery.
_INSERT_ENTRY = insert(JournalEntry.__table__).returning(JournalEntry.__table__.c.id)
# RETURNING makes SQLAlchemy send the lines as one multi-row INSERT ("insertmanyvalues"): one round trip.
_INSERT_LINE = insert(JournalLine.__table__).returning(JournalLine.__table__.c.id)


def _move_available(*, programme_id: int, delta: int) -> None:
    budget = ProgrammeBudget.__table__
    statement = update(budget).where(budget.c.programme_id == programme_id)
    if delta < 0:
        statement = statement.where(budget.c.available_fen >= -delta)
    if db.session.execute(statement.values(available_fen=budget.c.available_fen + delta)).rowcount == 1:
        return
    available = db.session.scalar(select(budget.c.available_fen).where(budget.c.programme_id == programme_id))
    if available is None:
        raise ValueError(f"programme {programme_id} has no budget row")
    raise InsufficientBudget(requested_fen=-delta, available_fen=available)


def commit_budget(*, programme_id: int, amount_fen: int, now: datetime, actor_id: int | None = None,
                  reference_type: str | None = None, reference_id: str | int | None = None,
                  memo: str | None = None) -> int:
    """Move *amount_fen* from available to committed, or raise and move nothing.

    This is the one function through which vouchers claim budget (docs/domain.md, rule 1: no budget, no vouchers).

    :raises InsufficientBudget: available is less than *amount_fen* at this instant.
    """
    if amount_fen <= 0:
        raise ValueError("a commitment is a positive amount")
    return post_entry(programme_id=programme_id, kind="commitment", lines={"available": -amount_fen,
                                                                            "committed": amount_fen},
                      now=now, actor_id=actor_id, reference_type=reference_type, reference_id=reference_id,
                      memo=memo)


def release_commitment(*, programme_id: int, amount_fen: int, now: datetime, actor_id: int | None = None,
                       reference_type: str | None = None, reference_id: str | int | None = None,
                       memo: str | None = None) -> int:
    """Return committed money (expired or revoked vouchers) to available."""
    if amount_fen <= 0:
        raise ValueError("a release is a positive amount")
    return post_entry(programme_id=programme_id, kind="release", lines={"committed": -amount_fen,
                                                                         "available": amount_fen},
                      now=now, actor_id=actor_id, reference_type=reference_type, reference_id=reference_id,
                      memo=memo)


def balances(programme_id: int) -> Ledger:
    """Derive the programme's balances from its journal lines."""
    rows = db.session.execute(
        select(JournalLine.account, JournalLine.kind, func.sum(JournalLine.amount_fen))
        .where(JournalLine.programme_id == programme_id)
        .group_by(JournalLine.account, JournalLine.kind)
    ).all()
    totals = dict.fromkeys(ACCOUNTS, 0)
    released = deducted = 0
    for account, kind, amount in rows:
        totals[account] += int(amount)
        if account == "available" and kind in RELEASE_KINDS:
            released += int(amount)
        if account == "available" and kind == "deduction":
            deducted += int(amount)
    return Ledger(allocated_fen=-totals["funding"], committed_fen=totals["committed"],
                  redeemed_fen=totals["redeemed"], settled_fen=totals["settled"], released_fen=released,
                  available_fen=totals["available"], deducted_fen=deducted)


def guarded_available(programme_id: int) -> int:
    return db.session.scalar(select(ProgrammeBudget.available_fen).where(ProgrammeBudget.programme_id == programme_id))


def reconcile(programme_id: int) -> dict:
    """Re-derive the ledger from the source tables and report each check."""
    ledger = balances(programme_id)
    unbalanced = db.session.scalar(
        select(func.count()).select_from(
            select(JournalLine.entry_id).where(JournalLine.programme_id == programme_id)
            .group_by(JournalLine.entry_id).having(func.sum(JournalLine.amount_fen) != 0).subquery()
        )
    )
    lines_astray = db.session.scalar(
        select(func.count()).select_from(JournalLine).join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
        .where(JournalEntry.programme_id == programme_id)
        .where((JournalLine.programme_id != JournalEntry.programme_id) | (JournalLine.kind != JournalEntry.kind))
    )
    amendments = db.session.scalar(
        select(func.coalesce(func.sum(BudgetAmendment.amount_fen), 0))
        .where(BudgetAmendment.programme_id == programme_id)
    )
    allocation_entries = db.session.scalar(
        select(func.coalesce(func.sum(JournalLine.amount_fen), 0))
        .where(JournalLine.programme_id == programme_id, JournalLine.kind == "allocation",
               JournalLine.account == "available")
    )
    guarded = guarded_available(programme_id) or 0
    checks = [
        Check("journal_entries_balanced", unbalanced == 0, 0, unbalanced,
              "Entries whose lines do not sum to zero"),
        Check("journal_lines_match_entries", lines_astray == 0, 0, lines_astray,
              "Lines whose programme or kind differ from their entry's"),
        Check("allocated_matches_amendments", int(amendments) == ledger.allocated_fen, int(amendments),
              ledger.allocated_fen, "Budget amendments (expected) against the journal's allocated balance"),
        Check("allocation_entries_match_amendments", int(amendments) == int(allocation_entries), int(amendments),
              int(allocation_entries), "Budget amendments against allocation entries into available"),
        Check("guarded_available_matches_journal", guarded == ledger.available_fen, ledger.available_fen, guarded,
              "The guarded available balance (actual) against the journal's (expected)"),
        Check("available_not_negative", ledger.available_fen >= 0 and guarded >= 0, 0,
              min(ledger.available_fen, guarded), "Available must never be below zero"),
    ]
    for _receiver, extra in reconciliation_checks.send(programme_id):
        checks.extend(extra)
    return {"ok": all(check.ok for check in checks), "checks": [asdict(check) for check in checks]}
