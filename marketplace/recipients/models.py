from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from marketplace.db import UTCDateTime, db

# Fixed list (docs/domain.md#recipient-tags): 失能, 低保, 特困, 高龄, 独居.
TAGS = ("disabled", "low_income", "extreme_poverty", "advanced_age", "living_alone")
RECIPIENT_STATUSES = ("active", "moved", "deceased")


class Recipient(db.Model):
    """A resident who may receive vouchers.

    The national ID number is never stored: `id_number_hash` is an HMAC-SHA256 blind index under
    ID_HASH_KEY (for uniqueness and look-up), `id_number_masked` is what people see.
    """

    __tablename__ = "recipient"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'moved', 'deceased')", name="status_known"),
        CheckConstraint("sex IN ('male', 'female')", name="sex_known"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    id_number_hash: Mapped[str] = mapped_column(String(64), unique=True)
    id_number_masked: Mapped[str] = mapped_column(String(18))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(6))
    phone: Mapped[str | None] = mapped_column(String(20))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(8), default="active")
    # The local date the recipient's death or move took effect (asked with the status change); services
    # delivered after it are flagged (`served_after_exit`). None while active, and for older records.
    status_effective_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    tag_rows: Mapped[list["RecipientTag"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="RecipientTag.tag")

    @property
    def tags(self) -> list[str]:
        return [row.tag for row in self.tag_rows]


class RecipientTag(db.Model):
    """One tag of a recipient: a row each, so eligibility and co-payment can be decided in SQL."""

    __tablename__ = "recipient_tag"
    __table_args__ = (
        CheckConstraint(
            "tag IN ('disabled', 'low_income', 'extreme_poverty', 'advanced_age', 'living_alone')", name="tag_known"),
    )

    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipient.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(16), primary_key=True)
