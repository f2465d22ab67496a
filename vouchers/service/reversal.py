"""Reversal: undoing a redemption within the programme's reversal window.

The voucher is issued again and its value moves from redeemed back to committed, in one transaction.
A voucher given back in a closed programme, or to a recipient who died or moved, could never be used:
it is revoked at once and its value released instead.
"""

from datetime import datetime, timedelta

from sqlalchemy import update

from marketplace import audit, transitions
from marketplace.db import db
from marketplace.errors import DomainError, InvalidTransition
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from providers.service.ratings import withdraw_rating
from vouchers.models import Redemption, Voucher
from vouchers.service.revocation import end_open_vouchers


class AlreadySettled(DomainError):
    status, code, message = 409, "already_settled", "The redemption belongs to a settlement and cannot be reversed."


class ReversalWindowClosed(DomainError):
    status, code, message = 409, "reversal_window_closed", "The reversal window of this redemption has closed."


def reversible_until(redemption: Redemption, *, window_hours: int) -> datetime:
    """The last instant *redemption* may be reversed: its scan plus its programme's reversal window."""
    return redemption.created_at + timedelta(hours=window_hours)


def reverse_redemption(*, redemption: Redemption, reason: str, actor, now: datetime) -> Redemption:
    """Undo a redemption within the programme's reversal window: the voucher is issued again (or, in a
    closed programme or for a recipient who died or moved, revoked and its value released), and a
    rating of it leaves the ranking totals.

    :raises AlreadySettled: it is part of a settlement.
    :raises ReversalWindowClosed: the window has passed.
    :raises InvalidTransition: it was reversed already.
    """
    if redemption.status != "completed":
        raise InvalidTransition("This redemption was already reversed.", status=redemption.status, to="reversed")
    if redemption.settlement_id is not None:
        raise AlreadySettled()
    programme = db.session.get(Programme, redemption.programme_id)
    if now > reversible_until(redemption, window_hours=programme.reversal_window_hours):
        raise ReversalWindowClosed(window_hours=programme.reversal_window_hours)
    # Guarded on "not settled" too: a settlement run claiming it meanwhile wins, and this is refused.
    transitions.move(redemption, to="reversed", allowed_from={"completed"}, what="The redemption",
                     values={"reversed_at": now, "reversed_by": actor.id, "reversal_reason": reason},
                     guards=(Redemption.settlement_id.is_(None),))
    withdraw_rating(redemption_id=redemption.id)
    db.session.execute(update(Voucher).where(Voucher.id == redemption.voucher_id, Voucher.status == "redeemed")
                       .values(status="issued", status_changed_at=now, status_reason=f"reversed: {reason}")
                       .execution_options(synchronize_session=False))
    ledger.post_entry(programme_id=redemption.programme_id, kind="reversal",
                      lines={"redeemed": -redemption.face_value_fen, "committed": redemption.face_value_fen},
                      now=now, actor_id=actor.id, reference_type="redemption", reference_id=redemption.id)
    audit.record(action="redemption.reversed", entity="redemption", entity_id=redemption.id, actor=actor, now=now,
                 region_code=programme.region_code,
                 data={"voucher_id": redemption.voucher_id, "reason": reason,
                       "face_value_fen": redemption.face_value_fen})
    # A closed programme or a recipient who died or moved keeps no open voucher (their receivers revoked
    # them): the voucher given back here could never be used, so its value is released, not re-committed.
    recipient = db.session.get(Recipient, redemption.recipient_id)
    if programme.status != "active" or recipient.status != "active":
        why = "programme closed" if programme.status != "active" else f"recipient {recipient.status}"
        revoked, _released = end_open_vouchers(Voucher.id == redemption.voucher_id, status="revoked",
                                               reason=f"reversed after {why}", actor=actor, now=now)
        if revoked:
            audit.record(action="voucher.revoked", entity="voucher", entity_id=redemption.voucher_id, actor=actor,
                         region_code=programme.region_code,
                         now=now, data={"reason": f"reversed after {why}",
                                        "face_value_fen": redemption.face_value_fen})
    return redemption
