"""Ending open vouchers: revoking one, revoking all of a programme or a recipient, expiring the old.

Each moves the issued vouchers' face value from committed back to available in the same
transaction (a set-based guarded UPDATE … RETURNING, then one journal entry per programme).
"""

from datetime import date, datetime

from sqlalchemy import and_, func, select, update

from marketplace import audit
from marketplace.db import db, local_date
from marketplace.errors import InvalidTransition
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from marketplace.programmes.service import programme_region
from vouchers.models import Voucher


def end_open_vouchers(condition, *, status: str, reason: str, actor, now: datetime) -> tuple[int, dict[int, int]]:
    """Move every issued voucher matching *condition* to *status* and release its value.

    Returns how many changed and the face value released per programme.
    """
    changed = db.session.execute(
        update(Voucher).where(Voucher.status == "issued", condition)
        .values(status=status, status_changed_at=now, status_reason=reason)
        .returning(Voucher.programme_id, Voucher.face_value_fen)
        .execution_options(synchronize_session=False)
    )
    released: dict[int, int] = {}
    count = 0
    for programme_id, face_value in changed:
        released[programme_id] = released.get(programme_id, 0) + face_value
        count += 1
    for programme_id, amount in released.items():
        ledger.release_commitment(programme_id=programme_id, amount_fen=amount, now=now,
                                  actor_id=getattr(actor, "id", None), memo=f"{status}: {reason}")
    return count, released


def revoke_voucher(*, voucher: Voucher, reason: str, actor, now: datetime) -> Voucher:
    """Revoke one issued voucher and release its value. :raises InvalidTransition: it is not issued."""
    count, _released = end_open_vouchers(Voucher.id == voucher.id, status="revoked", reason=reason, actor=actor,
                                         now=now)
    if not count:
        raise InvalidTransition(f"Only an issued voucher can be revoked; this one is {voucher.status}.")
    db.session.refresh(voucher)
    audit.record(action="voucher.revoked", entity="voucher", entity_id=voucher.id, actor=actor, now=now,
                 region_code=programme_region(voucher.programme_id),
                 data={"reason": reason, "face_value_fen": voucher.face_value_fen})
    return voucher


def revoke_open_vouchers(*, reason: str, region_code: str, actor, now: datetime, programme_id: int | None = None,
                         recipient_id: int | None = None) -> int:
    """Revoke every issued voucher of a programme or of a recipient (closing, death, moving away);
    *region_code* is the programme's or the recipient's."""
    condition = Voucher.programme_id == programme_id if programme_id is not None else (
        Voucher.recipient_id == recipient_id)
    count, released = end_open_vouchers(condition, status="revoked", reason=reason, actor=actor, now=now)
    if count:
        audit.record(action="vouchers.revoked", entity="programme" if programme_id else "recipient",
                     region_code=region_code,
                     entity_id=programme_id or recipient_id, actor=actor, now=now,
                     data={"reason": reason, "vouchers": count, "released_fen": sum(released.values())})
    return count


def expirable(programme: Programme, now: datetime):
    """SQL condition on Voucher: the programme's vouchers whose validity ended before today (local)."""
    return and_(Voucher.programme_id == programme.id, Voucher.valid_until < local_date(now))


def preview_expiry(*, programme: Programme, now: datetime) -> list[tuple[date, int, int]]:
    """What expire_vouchers would end now, writing nothing: (last valid day, vouchers, face value) per day."""
    return [(valid_until, int(count), int(total)) for valid_until, count, total in db.session.execute(
        select(Voucher.valid_until, func.count(), func.sum(Voucher.face_value_fen))
        .where(Voucher.status == "issued", expirable(programme, now))
        .group_by(Voucher.valid_until).order_by(Voucher.valid_until))]


def expire_vouchers(*, programme: Programme, actor, now: datetime) -> dict:
    """Expire the programme's issued vouchers whose validity has passed; release their value."""
    count, released = end_open_vouchers(expirable(programme, now), status="expired", reason="validity ended",
                                        actor=actor, now=now)
    released_fen = sum(released.values())
    if count:
        audit.record(action="vouchers.expired", entity="programme", entity_id=programme.id, actor=actor, now=now,
                     region_code=programme.region_code,
                     data={"vouchers": count, "released_fen": released_fen})
    return {"expired": count, "released_fen": released_fen}
