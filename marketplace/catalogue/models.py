from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.db import UTCDateTime, db

# The natures an item can have. Only `service` may be bought; every other nature is on the negative
# list (the migration seeds one rule per nature, with its legal reason).
NATURES = ("service", "goods", "construction", "financing", "staff_hiring", "judicial",
           "administrative_penalty", "administrative_coercion")
# What an item's code may be: 1–32 letters, digits, '_', '.', '-', starting with a letter or digit.
ITEM_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"


class ServiceCategory(db.Model):
    """One of the six categories of the guidance catalogue; seeded by migration 0002."""

    __tablename__ = "service_category"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(Integer)


class NegativeListRule(db.Model):
    """Something that may never be bought with public service money; seeded by migration 0002."""

    __tablename__ = "negative_list_rule"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    reason: Mapped[str] = mapped_column(Text)


class ServiceItem(db.Model):
    __tablename__ = "service_item"
    __table_args__ = (
        CheckConstraint("standard_price_fen > 0", name="price_positive"),
        # Defence in depth behind the service rule: nothing but a service is ever stored.
        CheckConstraint("nature = 'service'", name="service_only"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(80))
    category_code: Mapped[str] = mapped_column(ForeignKey("service_category.code"))
    unit: Mapped[str] = mapped_column(String(8))
    standard_price_fen: Mapped[int] = mapped_column(Integer)
    nature: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    # How long one service usually takes: the window the market-integrity rules give a redemption with no
    # recorded duration (marketplace/programmes/integrity.py has the fallback when this is empty too).
    default_duration_minutes: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
