from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.db import UTCDateTime, db

PROGRAMME_STATUSES = ("draft", "active", "closed")
# Ledger accounts. `funding` is the bureau's appropriation (its balance is minus what was allocated);
# the other balances are those of docs/domain.md#accounts. An entry's lines always sum to zero.
ACCOUNTS = ("funding", "available", "committed", "redeemed", "settled")
BIGINT = BigInteger().with_variant(Integer, "sqlite")


class Programme(db.Model):
    __tablename__ = "programme"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'active', 'closed')", name="status_known"),
        CheckConstraint("starts_on <= ends_on", name="period_ordered"),
        CheckConstraint("reserved_share_percent BETWEEN 0 AND 100", name="reserved_share_percent"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    authority: Mapped[str] = mapped_column(String(120))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8), default="draft")
    # {"min_age": int | None, "tags_any": [tag, ...]}
    eligibility: Mapped[dict] = mapped_column(JSON)
    # {"default": percent, <tag>: percent, ...}; a recipient pays the lowest percent among their tags.
    copay_percent: Mapped[dict] = mapped_column(JSON)
    reserved_share_percent: Mapped[int] = mapped_column(Integer)
    # [{"min_score": int, "pay_percent": int}, ...] sorted by min_score; the first has min_score 0.
    settlement_rules: Mapped[list] = mapped_column(JSON)
    rating_window_days: Mapped[int] = mapped_column(Integer)
    reversal_window_hours: Mapped[int] = mapped_column(Integer)
    choice_required: Mapped[bool] = mapped_column(Boolean)
    # The programme's own thresholds for the market-integrity rules, {rule: {parameter: value}}; what is
    # absent takes the default of marketplace/programmes/integrity.py. None: every default.
    anomaly_parameters: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    items: Mapped[list["ProgrammeItem"]] = relationship(
        back_populates="programme", order_by="ProgrammeItem.item_code", lazy="selectin")


class ProgrammeItem(db.Model):
    """A catalogue item bought by a programme, at the programme's unit price and monthly quota."""

    __tablename__ = "programme_item"
    __table_args__ = (
        CheckConstraint("unit_price_fen > 0", name="unit_price_positive"),
        CheckConstraint("monthly_quota > 0", name="monthly_quota_positive"),
    )

    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id", ondelete="CASCADE"), primary_key=True)
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"), primary_key=True)
    unit_price_fen: Mapped[int] = mapped_column(Integer)
    monthly_quota: Mapped[int] = mapped_column(Integer)
    # The shortest plausible service: a redemption recorded as shorter is flagged (`short_duration`).
    min_duration_minutes: Mapped[int | None] = mapped_column(Integer)

    programme: Mapped[Programme] = relationship(back_populates="items")


class ProgrammeBudget(db.Model):
    """The guarded balance of a programme's `available` account.

    The journal is the truth; this one row exists so that committing budget can be a single guarded
    UPDATE (`... WHERE available_fen >= :amount`), which is race-free on PostgreSQL and SQLite alike.
    Reconciliation checks that it equals the journal's `available` balance.
    """

    __tablename__ = "programme_budget"
    __table_args__ = (CheckConstraint("available_fen >= 0", name="available_not_negative"),)

    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id", ondelete="CASCADE"), primary_key=True)
    available_fen: Mapped[int] = mapped_column(BIGINT)


class JournalEntry(db.Model):
    """One money movement. Never updated or deleted; its lines sum to zero."""

    __tablename__ = "journal_entry"
    __table_args__ = (Index("ix_journal_entry_reference", "reference_type", "reference_id"),)

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    # allocation, commitment, release, redemption, reversal, settlement, deduction, payment
    kind: Mapped[str] = mapped_column(String(16))
    reference_type: Mapped[str | None] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    memo: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class JournalLine(db.Model):
    __tablename__ = "journal_line"
    __table_args__ = (
        CheckConstraint("account IN ('funding', 'available', 'committed', 'redeemed', 'settled')",
                        name="account_known"),
        CheckConstraint("amount_fen != 0", name="amount_not_zero"),
        # Balances are sums per programme and account; the kind lets `released` be summed too.
        Index("ix_journal_line_programme_id_account", "programme_id", "account", "kind"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), index=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    kind: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(16))
    amount_fen: Mapped[int] = mapped_column(BIGINT)


class BudgetAmendment(db.Model):
    """An allocation or reduction of a programme's budget, with its reason: the source of `allocated`."""

    __tablename__ = "budget_amendment"
    __table_args__ = (
        CheckConstraint("amount_fen != 0", name="amount_not_zero"),
        UniqueConstraint("entry_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BIGINT)
    reason: Mapped[str] = mapped_column(Text)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
