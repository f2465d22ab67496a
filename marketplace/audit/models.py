from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from marketplace.db import UTCDateTime, db

GENESIS_HASH = "0" * 64


class AuditEvent(db.Model):
    """One recorded change. Never updated or deleted; `hash` chains it to the event before it."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity_entity_id", "entity", "entity_id"),)

    # Assigned from AuditHead.last_id, not by the database: ids are gapless, so a deleted event
    # shows up as a hole in the sequence.
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(80))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(64))
    # Canonical JSON text, stored exactly as hashed.
    data: Mapped[str] = mapped_column(Text)
    # The region the event concerns (a programme's, a recipient's, the common region of a provider's),
    # hashed with the event; None for what concerns every region (the catalogue). region_prefix is its
    # prefix (marketplace.regions), for the scope filter: a region-limited admin sees the events whose
    # region overlaps theirs.
    region_code: Mapped[str | None] = mapped_column(String(6))
    region_prefix: Mapped[str | None] = mapped_column(String(6), index=True)
    # The recipient an admin acted for (代办: a choice, a complaint, a phone follow-up rating, a printed
    # card), hashed with the event; None when the actor acted for themself or for nobody in particular.
    on_behalf_of: Mapped[int | None] = mapped_column(Integer)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(db.Model):
    """The single row that serialises appends: the id and hash of the newest event."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))
