"""Redemption (核销): proving presence and redeeming a voucher for a delivered service.

A recipient proves presence with a presence code (a signed token that lives about two minutes and
works once) or a printed voucher card. The provider scans it and names the item; the recipient's
earliest-expiring valid voucher for that item, in a programme where this provider may serve them, is
redeemed in one transaction. This is the hot path (a scanner at every door): a successful scan is one
guarded `UPDATE voucher … RETURNING` (redemption_sql) that also checks the programme, the provider
and the choice, then the inserts of the redemption, its journal entry and its audit event. Why a scan
was refused is worked out only after nothing matched.
"""

from datetime import date, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.db import db, insert_ignoring_conflicts, local_date
from marketplace.errors import DomainError, NotFound, ValidationFailed
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from vouchers import tokens
from vouchers.models import Redemption, UsedPresenceCode, Voucher
from vouchers.service import redemption_sql

# A delivery may be recorded a little ahead of the server clock (phones drift), never further.
CLOCK_SKEW = timedelta(minutes=5)
# A service may be recorded late (no signal in the village), but not so late that a voucher past its
# validity could still be spent by backdating.
MAX_BACKDATING = timedelta(days=7)


class VoucherAlreadyRedeemed(DomainError):
    status, code, message = 409, "voucher_already_redeemed", "This voucher has already been redeemed."


class VoucherExpired(DomainError):
    status, code, message = 410, "voucher_expired", "The voucher has expired."


class NoValidVoucher(DomainError):
    status, code, message = 409, "no_valid_voucher", "The recipient has no valid voucher for this service."


class ProviderNotChosen(DomainError):
    status, code, message = 403, "provider_not_chosen", "The recipient chose another provider for this service."


class RedeemerNotApproved(DomainError):
    status, code, message = 403, "provider_not_approved", "Only an approved provider may redeem vouchers."


class TokenAlreadyUsed(DomainError):
    status, code, message = 409, "token_already_used", "This presence code has been used; ask for a new one."


def create_presence_code(*, recipient_id: int, now: datetime) -> dict:
    """A presence code for the recipient to show: valid about two minutes, works once."""
    token, expires_at = tokens.presence_token(recipient_id=recipient_id, now=now)
    return {"token": token, "expires_at": expires_at}


def own_presence_token(token: str, *, actor, now: datetime) -> str:
    """The recipient's own unexpired presence code, to be drawn as a QR code.

    :raises InvalidToken, TokenExpired: the code is bad or old. :raises NotFound: someone else's code.
    """
    if tokens.read_presence_token(token, now=now).recipient_id != actor.recipient_id:
        raise NotFound("No such presence code.")
    return token


def redeem(*, actor, now: datetime, presence_token: str | None = None, item_code: str | None = None,
           voucher_token: str | None = None, delivered_at: datetime | None = None,
           duration_minutes: int | None = None, notes: str | None = None) -> Redemption:
    """Redeem a voucher for a service the actor's provider has delivered, in one transaction.

    With a presence code and an item: the recipient's earliest-expiring valid voucher of that item in a
    programme where this provider may serve them. With a voucher card: that voucher.

    :raises RedeemerNotApproved: the provider is not approved (whatever it scanned).
    :raises InvalidToken, TokenExpired, TokenAlreadyUsed: the code is bad, old or used.
    :raises ProviderNotChosen: the recipient chose someone else (or the provider is not enrolled).
    :raises VoucherExpired, NoValidVoucher, VoucherAlreadyRedeemed: nothing left to redeem.
    """
    provider_id = actor.provider_id
    delivered_at = delivered_at or now
    try:
        today = _delivery_day(delivered_at, now)
        if presence_token is not None:
            if not item_code:
                raise ValidationFailed({"item_code": "Name the service delivered."})
            claims = tokens.read_presence_token(presence_token, now=now)
            _use_presence_code(claims)
            claimed = _claim_for_recipient(claims.recipient_id, item_code, provider_id, today, now)
            presence = "presence_code"
        elif voucher_token is not None:
            claimed = _claim_card(tokens.read_voucher_token(voucher_token), provider_id, today, now)
            presence = "voucher_card"
        else:
            raise ValidationFailed({"presence_token": "Give a presence_token with an item_code, or a voucher_token."})
    except DomainError:
        _require_approved(provider_id)  # a provider that may not redeem hears that first, whatever it scanned
        raise
    try:
        # No savepoint: a violation ends the whole transaction anyway (the caller rolls back). The
        # claim already made the voucher ours; the partial unique index stands behind it.
        redemption = redemption_sql.insert_redemption({
            "voucher_id": claimed.id, "programme_id": claimed.programme_id, "provider_id": provider_id,
            "recipient_id": claimed.recipient_id, "item_code": claimed.item_code, "scanned_by": actor.id,
            "presence": presence, "face_value_fen": claimed.face_value_fen, "copay_fen": claimed.copay_fen,
            "delivered_at": delivered_at, "duration_minutes": duration_minutes, "notes": notes,
            "status": "completed", "created_at": now})
    except IntegrityError as error:
        raise VoucherAlreadyRedeemed() from error
    ledger.post_entry(programme_id=claimed.programme_id, kind="redemption",
                      lines={"committed": -claimed.face_value_fen, "redeemed": claimed.face_value_fen}, now=now,
                      actor_id=actor.id, reference_type="redemption", reference_id=redemption.id)
    audit.record(action="voucher.redeemed", entity="voucher", entity_id=claimed.id, actor=actor, now=now,
                 region_code=claimed.region_code,
                 data={"redemption_id": redemption.id, "provider_id": provider_id, "presence": presence,
                       "face_value_fen": claimed.face_value_fen})
    return redemption


def _delivery_day(delivered_at: datetime, now: datetime) -> date:
    """The local day the service was delivered on. :raises ValidationFailed: in the future or too late."""
    if delivered_at > now + CLOCK_SKEW:
        raise ValidationFailed({"delivered_at": "A service cannot be delivered in the future."})
    if delivered_at < now - MAX_BACKDATING:
        raise ValidationFailed({"delivered_at": f"Record a service within {MAX_BACKDATING.days} days of delivery."})
    return local_date(delivered_at)


def _use_presence_code(claims: tokens.PresenceClaims) -> None:
    """Record the code's nonce. :raises TokenAlreadyUsed: it was recorded before (or by a racing scan)."""
    # ON CONFLICT DO NOTHING rather than a failing INSERT: the transaction stays usable for the checks
    # that follow, and a racing scan of the same code waits for the first to commit, then counts 0.
    # A refused scan rolls back, which leaves the code usable.
    used = UsedPresenceCode.__table__
    inserted = db.session.execute(insert_ignoring_conflicts(used, used.c.nonce),
                                  {"nonce": claims.nonce, "recipient_id": claims.recipient_id,
                                   "expires_at": claims.expires_at}).first()
    if inserted is None:
        raise TokenAlreadyUsed()


def _claim_card(voucher_id: int, provider_id: int, today: date, now: datetime):
    """Claim the voucher printed on a card. :raises: why it cannot be redeemed (see `redeem`)."""
    claimed = redemption_sql.claim_voucher(voucher_id=voucher_id, provider_id=provider_id, today=today, now=now)
    if claimed is not None:
        return claimed
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None:
        raise tokens.InvalidToken()
    if voucher.status == "redeemed":
        raise VoucherAlreadyRedeemed()
    if voucher.status == "expired" or (voucher.status == "issued" and voucher.valid_until < today):
        raise VoucherExpired()
    if voucher.status != "issued" or voucher.valid_from > today:
        raise NoValidVoucher(f"This voucher is {voucher.status} and valid from {voucher.valid_from}.")
    raise ProviderNotChosen()  # issued and valid today: the programme or the choice refused it


def _claim_for_recipient(recipient_id: int, item_code: str, provider_id: int, today: date, now: datetime):
    """Claim the recipient's earliest-expiring redeemable voucher of the item. :raises: why not (see `redeem`)."""
    candidates = redemption_sql.redeemable_candidates(recipient_id=recipient_id, item_code=item_code,
                                                      provider_id=provider_id, today=today)
    for voucher_id in candidates:
        claimed = redemption_sql.claim_voucher(voucher_id=voucher_id, provider_id=provider_id, today=today, now=now)
        if claimed is not None:
            return claimed
    if candidates:
        raise VoucherAlreadyRedeemed("Another scan redeemed the recipient's vouchers at the same moment; scan again.")
    base = (select(Voucher.id).join(Programme, Programme.id == Voucher.programme_id)
            .where(Voucher.recipient_id == recipient_id, Voucher.item_code == item_code, Voucher.status == "issued",
                   Programme.status == "active"))
    if db.session.scalar(base.where(Voucher.valid_from <= today, Voucher.valid_until >= today).limit(1)) is not None:
        raise ProviderNotChosen()
    if db.session.scalar(base.where(Voucher.valid_until < today).limit(1)) is not None:
        raise VoucherExpired()
    raise NoValidVoucher()


def _require_approved(provider_id: int) -> None:
    if redemption_sql.provider_status(provider_id=provider_id) != "approved":
        raise RedeemerNotApproved()


def purge_used_presence_codes(*, now: datetime) -> int:
    """Forget nonces of presence codes that have expired anyway (an expired code is refused before reuse)."""
    return db.session.execute(
        delete(UsedPresenceCode).where(UsedPresenceCode.expires_at < now - CLOCK_SKEW)).rowcount
