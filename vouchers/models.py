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
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.db import UTCDateTime, db
from vouchers.serials import serial_for

BIGINT = BigInteger().with_variant(Integer, "sqlite")
VOUCHER_STATUSES = ("issued", "redeemed", "expired", "revoked")
# Why a recipient left a provider (optional, kept with the switch): the market's signal, counted per reason.
SWITCH_REASONS = ("service_quality", "staff_attitude", "timeliness", "price", "moved", "other")
# How the recipient proved presence: a scanned presence code, its 8 digits typed in, or a printed card.
PRESENCE_KINDS = ("presence_code", "typed_code", "voucher_card")


class Issuance(db.Model):
    """One issuing act: a monthly run (at most one per programme and period) or a supplementary issue."""

    __tablename__ = "issuance"
    __table_args__ = (
        # NULL for supplementary issues, which may be many; a monthly run is unique per period.
        UniqueConstraint("programme_id", "monthly_period"),
        CheckConstraint("kind IN ('monthly', 'supplementary')", name="kind_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    period: Mapped[str] = mapped_column(String(7))
    monthly_period: Mapped[str | None] = mapped_column(String(7))
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    vouchers: Mapped[int] = mapped_column(Integer, default=0)
    committed_fen: Mapped[int] = mapped_column(BIGINT, default=0)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class Voucher(db.Model):
    """One service unit of one item. Its serial is derived from its id (vouchers.serials)."""

    __tablename__ = "voucher"
    __table_args__ = (
        CheckConstraint("status IN ('issued', 'redeemed', 'expired', 'revoked')", name="status_known"),
        CheckConstraint("face_value_fen > 0 AND copay_fen >= 0", name="amounts"),
        CheckConstraint("valid_from <= valid_until", name="validity_ordered"),
        # Redemption looks for a recipient's earliest-expiring issued voucher of an item.
        Index("ix_voucher_recipient_item_status", "recipient_id", "item_code", "status", "valid_until"),
        Index("ix_voucher_programme_status_valid_until", "programme_id", "status", "valid_until"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"))
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"))
    issuance_id: Mapped[int] = mapped_column(ForeignKey("issuance.id"), index=True)
    face_value_fen: Mapped[int] = mapped_column(Integer)
    copay_fen: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def serial(self) -> str:
        return serial_for(self.id)


class Choice(db.Model):
    """The provider a recipient currently chose for one item of one programme (docs/domain.md, rule 4)."""

    __tablename__ = "choice"

    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"), primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), primary_key=True)
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"), primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    chosen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    chosen_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class ChoiceEvent(db.Model):
    """Every choice and switch, kept: the market signal of who recipients leave and join."""

    __tablename__ = "choice_event"
    __table_args__ = (
        Index("ix_choice_event_recipient", "recipient_id", "programme_id", "item_code"),
        CheckConstraint("switch_reason IN ('service_quality', 'staff_attitude', 'timeliness', 'price', 'moved', "
                        "'other')", name="switch_reason_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"))
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"))
    from_provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"))
    to_provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    chosen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    chosen_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    # Who acted: the recipient themself, or an admin (community worker) acting for them.
    acted_as: Mapped[str] = mapped_column(String(16))
    # Why the recipient left from_provider (one of SWITCH_REASONS), and in their words (`other` needs them);
    # only a switch from another provider has them.
    switch_reason: Mapped[str | None] = mapped_column(String(20))
    switch_note: Mapped[str | None] = mapped_column(String(200))


class Redemption(db.Model):
    """A delivered service (核销): at most one completed redemption per voucher."""

    __tablename__ = "redemption"
    __table_args__ = (
        # A voucher is redeemed at most once at a time; a reversed redemption stays as history and
        # the voucher may then be redeemed again.
        Index("uq_redemption_voucher_completed", "voucher_id", unique=True,
              postgresql_where=text("status = 'completed'"), sqlite_where=text("status = 'completed'")),
        CheckConstraint("presence IN ('presence_code', 'typed_code', 'voucher_card')", name="presence_known"),
        CheckConstraint("status IN ('completed', 'reversed')", name="status_known"),
        Index("ix_redemption_provider_delivered", "provider_id", "delivered_at"),
        Index("ix_redemption_programme_delivered", "programme_id", "delivered_at"),
        # The market-integrity rules join a month's redemptions by recipient and by scanning login in time.
        Index("ix_redemption_recipient_delivered", "recipient_id", "delivered_at"),
        Index("ix_redemption_scanned_by_delivered", "scanned_by", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(BIGINT, primary_key=True)
    voucher_id: Mapped[int] = mapped_column(ForeignKey("voucher.id"), index=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"))
    item_code: Mapped[str] = mapped_column(String(32))
    scanned_by: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    presence: Mapped[str] = mapped_column(String(16))
    face_value_fen: Mapped[int] = mapped_column(Integer)
    copay_fen: Mapped[int] = mapped_column(Integer)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reversed_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reversal_reason: Mapped[str | None] = mapped_column(Text)
    settlement_id: Mapped[int | None] = mapped_column(ForeignKey("settlement.id"), index=True)


class UsedPresenceCode(db.Model):
    """Nonces of presence codes already used: a code works once."""

    __tablename__ = "used_presence_code"

    nonce: Mapped[str] = mapped_column(String(16), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PresenceShortCode(db.Model):
    """The typed form of a presence code: 8 digits, kept only as a keyed hash (vouchers.tokens.short_code_hashes).

    It names the presence code's nonce, so using either the code or its token uses both (the nonce goes
    into used_presence_code), and it lives exactly as long as the token. A hash is unique: a dead code
    (used or expired) gives its hash up to a new one, a live one makes the new code be drawn again.
    """

    __tablename__ = "presence_short_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(16), unique=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Settlement(db.Model):
    """What the bureau pays one provider for one programme and month (结算), tied to performance.

    Its redemptions point at it (`redemption.settlement_id`), so a redemption is in at most one
    settlement; approved and paid settlements are never changed.
    """

    __tablename__ = "settlement"
    __table_args__ = (
        UniqueConstraint("programme_id", "provider_id", "period"),
        CheckConstraint("status IN ('draft', 'approved', 'paid')", name="status_known"),
        CheckConstraint("net_fen <= gross_fen AND net_fen >= 0", name="net_within_gross"),
        CheckConstraint("pay_percent BETWEEN 0 AND 100", name="pay_percent_range"),
        # On SQLite, never hand a deleted draft's id to another settlement (audit events name ids).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))
    status: Mapped[str] = mapped_column(String(8))
    redemptions_count: Mapped[int] = mapped_column(Integer)
    gross_fen: Mapped[int] = mapped_column(BIGINT)
    # The parts of the performance score (each 0–100; evaluation only when a third party scored).
    satisfaction_score: Mapped[int] = mapped_column(Integer)
    complaint_score: Mapped[int] = mapped_column(Integer)
    upheld_complaints: Mapped[int] = mapped_column(Integer)
    evaluation_score: Mapped[int | None] = mapped_column(Integer)
    performance_score: Mapped[int] = mapped_column(Integer)
    pay_percent: Mapped[int] = mapped_column(Integer)
    net_fen: Mapped[int] = mapped_column(BIGINT)
    flagged_for_termination: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    payment_reference: Mapped[str | None] = mapped_column(String(100))


# The market-integrity flag's life: open → confirmed or dismissed (each with a reason, by an admin in scope);
# a confirmed flag may later be dismissed and a dismissed one confirmed.
ANOMALY_STATUSES = ("open", "confirmed", "dismissed")
ANOMALY_SEVERITIES = ("low", "medium", "high")


class AnomalyFlag(db.Model):
    """One finding of a market-integrity rule (marketplace/programmes/integrity.py lists them) about one
    subject in one programme and month: a recipient, a provider or a staff login. Detecting again finds the
    same row (unique rule, programme, period, subject) and creates nothing twice. A confirmed flag holds its
    redemptions out of settlement exactly as an open complaint does."""

    __tablename__ = "anomaly_flag"
    __table_args__ = (
        UniqueConstraint("rule", "programme_id", "period", "subject"),
        CheckConstraint("status IN ('open', 'confirmed', 'dismissed')", name="status_known"),
        CheckConstraint("severity IN ('low', 'medium', 'high')", name="severity_known"),
        Index("ix_anomaly_flag_programme_period", "programme_id", "period", "status"),
        Index("ix_anomaly_flag_provider_status", "provider_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    period: Mapped[str] = mapped_column(String(7))
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    # What the finding is about, as "<kind>:<id>[:<more>]" (recipient:12, provider:3, login:40, …): the
    # unique key's last part, so the same finding found again is the same row.
    subject: Mapped[str] = mapped_column(String(80))
    provider_id: Mapped[int | None] = mapped_column(ForeignKey("provider.id"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipient.id"))
    staff_user_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    # The figures behind the finding (times, counts, shares, thresholds): what the explanation is made from.
    evidence: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reason: Mapped[str | None] = mapped_column(Text)


class AnomalyFlagRedemption(db.Model):
    """A redemption a flag is about: held out of settlement while the flag is confirmed."""

    __tablename__ = "anomaly_flag_redemption"

    flag_id: Mapped[int] = mapped_column(ForeignKey("anomaly_flag.id", ondelete="CASCADE"), primary_key=True)
    redemption_id: Mapped[int] = mapped_column(BIGINT, ForeignKey("redemption.id"), primary_key=True, index=True)
