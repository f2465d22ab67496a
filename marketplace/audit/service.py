"""Record and verify the audit chain.

Each event's hash is sha256(prev_hash + canonical JSON of the event), so changing, deleting or
reordering any stored event breaks verification at that event. Events are queued by `record` and
appended when their transaction commits (so they are written in the same transaction as the change
they describe, and vanish with it on rollback). The append updates the single `audit_head` row
first: on PostgreSQL that row lock, on SQLite the write lock, serialises appenders, so two concurrent
transactions can never chain onto the same predecessor. Holding that lock only for the final
statements of a transaction keeps contention short.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from marketplace import scope
from marketplace.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from marketplace.db import db, paginate, utcnow
from marketplace.regions import region_prefix

_PENDING = "audit_pending"
SYSTEM_ACTOR = "system"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record(*, action: str, entity: str, entity_id: int | str, region_code: str | None, data: dict | None = None,
           actor=None, now: datetime | None = None, on_behalf_of: int | None = None) -> None:
    """Queue an audit event for the current transaction.

    *actor* is the acting user (anything with `id` and `username`) or None for the system (CLI,
    scheduled jobs). *region_code* is the region the event concerns (None: every region); a
    region-limited admin reads only the events of regions overlapping theirs. *on_behalf_of* is the id
    of the recipient an admin acted for (代办), None otherwise. *data* must never hold personal data in
    clear: masked forms only.
    """
    session = db.session()
    # Remember the savepoint the event belongs to: rolling that savepoint back drops the event, rolling
    # back anything else (a sibling savepoint) must not.
    session.info.setdefault(_PENDING, []).append((session.get_nested_transaction(), {
        "at": now or utcnow(),
        "actor_id": getattr(actor, "id", None),
        "actor": getattr(actor, "username", None) or SYSTEM_ACTOR,
        "action": action,
        "entity": entity,
        "entity_id": str(entity_id),
        "data": canonical_json(data or {}),
        "region_code": region_code,
        "on_behalf_of": on_behalf_of,
    }))


def acting_for(actor, recipient_id: int | None) -> int | None:
    """*on_behalf_of* for an event about *recipient_id*: the recipient when an admin acts for them (代办: staff
    or a community worker at the recipient's side), None when the recipient acts themself or nobody is named."""
    return recipient_id if getattr(actor, "role", None) == "admin" else None


def event_hash(prev_hash: str, *, id: int, at: datetime, actor_id: int | None, actor: str, action: str,
               entity: str, entity_id: str, data: str, region_code: str | None, on_behalf_of: int | None = None) -> str:
    fields = {
        "id": id,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor": actor,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "data": data,
    }
    if region_code is not None:  # events from before regions were recorded hash as they always did
        fields["region_code"] = region_code
    if on_behalf_of is not None:  # likewise events from before 代办 was recorded, and every other event
        fields["on_behalf_of"] = on_behalf_of
    body = canonical_json(fields)
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # releasing a savepoint: append once, when the outermost transaction commits
    pending = [item for _savepoint, item in session.info.pop(_PENDING, None) or ()]
    if not pending:
        return
    connection = session.connection()  # Core statements straight on the connection: no ORM layer
    last_id, prev_hash = connection.execute(_ADVANCE_HEAD, {"events": len(pending)}).one()
    rows = []
    for offset, item in enumerate(pending):
        event_id = last_id - len(pending) + 1 + offset
        digest = event_hash(prev_hash, id=event_id, **item)
        rows.append({"id": event_id, **item, "prev_hash": prev_hash, "hash": digest,
                     "region_prefix": None if item["region_code"] is None else region_prefix(item["region_code"])})
        prev_hash = digest
    connection.execute(_INSERT_EVENT, rows[0] if len(rows) == 1 else rows)
    connection.execute(_SET_HEAD_HASH, {"head_hash": prev_hash})


# Built once: every transaction that changes something appends through these three statements.
_HEAD = AuditHead.__table__
_ADVANCE_HEAD = (update(_HEAD).where(_HEAD.c.id == 1).values(last_id=_HEAD.c.last_id + bindparam("events"))
                 .returning(_HEAD.c.last_id, _HEAD.c.last_hash))
_INSERT_EVENT = insert(AuditEvent.__table__)
_SET_HEAD_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(last_hash=bindparam("head_hash"))


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, rolled_back) -> None:
    if rolled_back.parent is None:
        session.info.pop(_PENDING, None)
    elif rolled_back.nested:
        # Only the savepoint's own events go; those recorded before it still describe committed work.
        pending = session.info.get(_PENDING, [])
        pending[:] = [(savepoint, item) for savepoint, item in pending if not _inside(savepoint, rolled_back)]
    # Otherwise a flush inside the transaction failed; the transaction itself must now roll back.


def _inside(savepoint, transaction) -> bool:
    while savepoint is not None:
        if savepoint is transaction:
            return True
        savepoint = savepoint.parent
    return False


@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    first_broken_id: int | None = None
    reason: str | None = None
    head_hash: str | None = None


def verify_chain() -> Verification:
    """Re-hash every event in order and name the first one that does not match its place.

    Safe while other transactions append (PostgreSQL reads each statement afresh): the head is read
    before the walk and again after it. Every event up to the first head must be there and end with
    its hash; an event beyond the second head was added behind the head's back.
    """
    before = _head()
    if before is None:
        return Verification(False, 0, None, "the chain head is missing")
    expected_id, expected_prev, count, anchor_hash = 1, GENESIS_HASH, 0, GENESIS_HASH
    columns = [AuditEvent.id, AuditEvent.at, AuditEvent.actor_id, AuditEvent.actor, AuditEvent.action,
               AuditEvent.entity, AuditEvent.entity_id, AuditEvent.data, AuditEvent.region_code,
               AuditEvent.on_behalf_of, AuditEvent.prev_hash, AuditEvent.hash]
    # A server-side cursor on PostgreSQL: close it even when the walk stops at a broken event.
    with db.session.execute(select(*columns).order_by(AuditEvent.id).execution_options(yield_per=2000)) as rows:
        for row in rows:
            if row.id != expected_id:
                return Verification(False, count, expected_id, f"event {expected_id} is missing")
            if row.prev_hash != expected_prev:
                return Verification(False, count, row.id, f"event {row.id} does not follow event {row.id - 1}")
            recomputed = event_hash(expected_prev, id=row.id, at=row.at, actor_id=row.actor_id, actor=row.actor,
                                    action=row.action, entity=row.entity, entity_id=row.entity_id, data=row.data,
                                    region_code=row.region_code, on_behalf_of=row.on_behalf_of)
            if recomputed != row.hash:
                return Verification(False, count, row.id, f"event {row.id} was altered")
            if row.id == before.last_id:
                anchor_hash = row.hash
            expected_id, expected_prev, count = expected_id + 1, row.hash, count + 1
    after = _head()
    if count > after.last_id:
        return Verification(False, after.last_id, after.last_id + 1,
                            f"event {after.last_id + 1} was added outside the chain head")
    if count < before.last_id:
        return Verification(False, count, expected_id,
                            f"the chain head records {before.last_id} events; event {expected_id} is missing")
    if anchor_hash != before.last_hash:
        return Verification(False, count, before.last_id,
                            f"event {before.last_id} does not end the chain the head records (a rewrite)")
    return Verification(True, count, None, None, expected_prev)


def _head():
    return db.session.execute(select(AuditHead.last_id, AuditHead.last_hash).where(AuditHead.id == 1)).one_or_none()


def _events(*, actor, entity: str | None = None, entity_id: str | None = None, on_behalf_of: int | None = None,
            action: str | None = None, actor_name: str | None = None, since: datetime | None = None,
            before: datetime | None = None):
    """The events *actor* may read, newest first, narrowed by whichever filters are given."""
    statement = select(AuditEvent).where(scope.overlaps_within(actor, AuditEvent.region_prefix))
    statement = statement.order_by(AuditEvent.id.desc())
    if entity is not None:
        statement = statement.where(AuditEvent.entity == entity)
    if entity_id is not None:
        statement = statement.where(AuditEvent.entity_id == entity_id)
    if on_behalf_of is not None:
        statement = statement.where(AuditEvent.on_behalf_of == on_behalf_of)
    if action is not None:
        statement = statement.where(AuditEvent.action == action)
    if actor_name is not None:
        statement = statement.where(AuditEvent.actor == actor_name.lower())  # usernames are stored lower-cased
    if since is not None:
        statement = statement.where(AuditEvent.at >= since)
    if before is not None:
        statement = statement.where(AuditEvent.at < before)
    return statement


def list_events(*, actor, page: int, per_page: int, **filters) -> dict:
    """One page of events, newest first, optionally for one entity, of what admins did for one recipient, of
    one action or actor, or within [since, before): for a region-limited admin only those whose region
    overlaps theirs (not those of every region); auditors and unscoped admins see all."""
    return paginate(_events(actor=actor, **filters), page=page, per_page=per_page)


def iter_events(*, actor, batch: int = 2000, **filters):
    """Every event list_events would page through, newest first, read in batches (for the exports)."""
    with db.session.execute(_events(actor=actor, **filters).execution_options(yield_per=batch)) as rows:
        for (event,) in rows:
            yield event


def event_page(*, actor, page: int, per_page: int, **filters) -> dict:
    """One page of list_events' events without counting them all (the trail grows by millions): `{items,
    page, per_page, has_next}`."""
    rows = db.session.scalars(_events(actor=actor, **filters).limit(per_page + 1).offset((page - 1) * per_page)).all()
    return {"items": rows[:per_page], "page": page, "per_page": per_page, "has_next": len(rows) > per_page}
