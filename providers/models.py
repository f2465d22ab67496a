from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.db import UTCDateTime, db

# 承接主体 kinds (docs/domain.md#provider-kinds). Social organisations may be favoured by a programme's reserved share.
KINDS = ("social_organisation", "enterprise", "public_institution", "community_organisation", "rural_collective")
STATUSES = ("pending", "approved", "suspended", "revoked")


class Provider(db.Model):
    __tablename__ = "provider"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'approved', 'suspended', 'revoked')", name="status_known"),
        CheckConstraint("kind IN ('social_organisation', 'enterprise', 'public_institution', "
                        "'community_organisation', 'rural_collective')", name="kind_known"),
        CheckConstraint("capacity > 0", name="capacity_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(32))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    legal_representative: Mapped[str] = mapped_column(String(50))
    phone: Mapped[str] = mapped_column(String(20))
    address: Mapped[str] = mapped_column(String(200))
    # Services the provider can deliver per month: a planning figure shown to the bureau.
    capacity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())

    region_rows: Mapped[list["ProviderRegion"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProviderRegion.region_code")
    item_rows: Mapped[list["ProviderItem"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProviderItem.item_code")

    @property
    def region_codes(self) -> list[str]:
        return [row.region_code for row in self.region_rows]

    @property
    def item_codes(self) -> list[str]:
        return [row.item_code for row in self.item_rows]


class ProviderRegion(db.Model):
    """A region (GB/T 2260 code; a code ending in 00 pairs covers its whole area) the provider serves."""

    __tablename__ = "provider_region"

    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    # The code without its trailing 00 pairs, so "serves region X" is `X LIKE prefix || '%'` in SQL.
    prefix: Mapped[str] = mapped_column(String(6), index=True)


class ProviderItem(db.Model):
    """A catalogue service the provider offers."""

    __tablename__ = "provider_item"

    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id", ondelete="CASCADE"), primary_key=True)
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"), primary_key=True, index=True)


class ProviderStatusChange(db.Model):
    """Every qualification decision, with its reason (also in the audit chain)."""

    __tablename__ = "provider_status_change"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(10))
    to_status: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class Enrolment(db.Model):
    """A provider admitted to a programme."""

    __tablename__ = "enrolment"
    __table_args__ = (UniqueConstraint("programme_id", "provider_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enrolled_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))


class ProgrammeApplication(db.Model):
    """A provider asking to join a programme (申请加入项目); an admin accepts it (which enrols the
    provider) or refuses it, with a reason. At most one pending application per programme and provider."""

    __tablename__ = "programme_application"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'accepted', 'refused')", name="status_known"),
        Index("uq_programme_application_pending", "programme_id", "provider_id", unique=True,
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), index=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    # What the provider tells the bureau (staff, experience in the area); optional.
    note: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    reason: Mapped[str | None] = mapped_column(Text)


class Rating(db.Model):
    """A recipient's satisfaction score (1–5) for one redemption, or one recorded by staff from a phone
    follow-up (回访). It counts for the provider, programme and item of the redeemed voucher."""

    __tablename__ = "rating"
    __table_args__ = (
        UniqueConstraint("redemption_id"),
        CheckConstraint("score BETWEEN 1 AND 5", name="score_range"),
        CheckConstraint("source IN ('recipient', 'phone_followup')", name="source_known"),
        # A provider's ratings newest first (its latest comments) is a short backward index scan.
        Index("ix_rating_provider_created", "provider_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Named, not imported: redemptions belong to the vouchers domain above this one.
    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemption.id"))
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"))
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"))
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id"))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    rated_by: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RatingAggregate(db.Model):
    """Running totals per provider, programme and item, kept in the rating's transaction, so that a
    ranking sums a few thousand rows instead of scanning every rating."""

    __tablename__ = "rating_aggregate"
    __table_args__ = (Index("ix_rating_aggregate_item_code", "item_code", "provider_id"),)

    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programme.id"), primary_key=True)
    item_code: Mapped[str] = mapped_column(ForeignKey("service_item.code"), primary_key=True)
    ratings_count: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[int] = mapped_column(Integer)
    satisfied_count: Mapped[int] = mapped_column(Integer)  # scores of 4 or 5


class Complaint(db.Model):
    """A complaint against a provider, optionally about one redemption (which it then puts on hold)."""

    __tablename__ = "complaint"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        Index("ix_complaint_redemption_status", "redemption_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("provider.id"), index=True)
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("recipient.id"))
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemption.id"))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(8))
    upheld: Mapped[bool | None] = mapped_column(Boolean)
    resolution: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[int] = mapped_column(ForeignKey("user_account.id"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    # The provider's one answer, given while the complaint is open; staff read it before resolving.
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
