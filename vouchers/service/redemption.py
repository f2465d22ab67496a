"""Redemption (核销): proving presence and redeeming a voucher for a delivered service.

A recipient proves presence with a presence code (a signed token that lives about two minutes and
works once, or its 8-digit short code typed in) or a printed voucher card. The provider scans it (or
types the digits) and names the item; the recipient's
earliest-expiring valid voucher for that item, in a programme where this provider may serve them, is
redeemed in one transaction. This is the hot path (a scanner at every door): a successful scan is one
guarded `UPDATE voucher … RETURNING` (redemption_sql) that also checks the programme, the provider
and the choice, then the inserts of the redemption, its journal entry and its audit event. Why a scan
was refused is worked out only after nothing matched.
"""

from datetime import date, datetime, timedelta

from flask import current_app
from limits import RateLimitItemPerSecond
from sqlalchemy import delete, exists, or_, select
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.auth import service as auth_service
from marketplace.db import db, insert_ignoring_conflicts, local_date
from marketplace.errors import DomainError, NotFound, ValidationFailed
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme
from vouchers import tokens
from vouchers.models import PresenceShortCode, Redemption, UsedPresenceCode, Voucher
from vouchers.service import redemption_sql

# A delivery may be recorded a little ahead of the server clock (phones drift), never further.
CLOCK_SKEW = timedelta(minutes=5)
# A service may be recorded late (no signal in the village), but not so late that a voucher past its
# validity could still be spent by backdating.
MAX_BACKDATING = timedelta(days=7)
# Draws of a new short code before giving up. Each draw collides only with a live code: with a million
# live codes at once (10^8 possible) ten collisions in a row happen once in 10^20 requests.
SHORT_CODE_DRAWS = 10
_SHORT_CODE = PresenceShortCode.__table__
_USED = UsedPresenceCode.__table__


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
    """A presence code for the recipient to show: valid about two minutes, works once.

    It comes in two forms, a token (for the QR code) and 8 digits to type in (`short_code`); using
    either uses both. The digits are kept only as a keyed hash and are never logged or audited.
    """
    token, claims = tokens.issue_presence_token(recipient_id=recipient_id, now=now)
    short_code = _issue_short_code(claims, now=now)
    return {"token": token, "expires_at": claims.expires_at, "short_code": short_code,
            "short_code_display": tokens.display_short_code(short_code)}


def _issue_short_code(claims: tokens.PresenceClaims, *, now: datetime) -> str:
    """Draw 8 digits that no live code has, and keep their hash for the life of the presence code.

    Usually one INSERT: only when the digits' hash is taken is a dead holder (expired, or its presence code
    used) cleared away, and only while an older token key still verifies are its hashes looked at too.
    """
    values = {"nonce": claims.nonce, "recipient_id": claims.recipient_id, "expires_at": claims.expires_at}
    for _draw in range(SHORT_CODE_DRAWS):
        code = tokens.new_short_code()
        mine, *older = tokens.short_code_hashes(code)
        if older and db.session.execute(select(_SHORT_CODE.c.code_hash).where(
                _SHORT_CODE.c.code_hash.in_(older), ~_dead(now)).limit(1)).first() is not None:
            continue  # the same digits are live under a key being rotated out
        if _insert_short_code(mine, values):
            return code
        db.session.execute(delete(_SHORT_CODE).where(_SHORT_CODE.c.code_hash == mine, _dead(now)))
        if _insert_short_code(mine, values):
            return code
    raise RuntimeError(f"no free short code in {SHORT_CODE_DRAWS} draws")


def _insert_short_code(code_hash: str, values: dict) -> bool:
    # ON CONFLICT DO NOTHING: a taken hash (or a racing request that drew the same digits, once it commits)
    # inserts nothing, and the transaction stays usable.
    inserted = db.session.execute(insert_ignoring_conflicts(_SHORT_CODE, _SHORT_CODE.c.code_hash),
                                  {"code_hash": code_hash, **values}).first()
    return inserted is not None


def _dead(now: datetime):
    """SQL condition on a short code: it expired, or its presence code was used (by token or by code)."""
    return or_(_SHORT_CODE.c.expires_at <= now, exists().where(_USED.c.nonce == _SHORT_CODE.c.nonce))


def own_presence_token(token: str, *, actor, now: datetime) -> str:
    """The recipient's own unexpired presence code, to be drawn as a QR code.

    :raises InvalidToken, TokenExpired: the code is bad or old. :raises NotFound: someone else's code.
    """
    if tokens.read_presence_token(token, now=now).recipient_id != actor.recipient_id:
        raise NotFound("No such presence code.")
    return token


def redeem(*, actor, now: datetime, presence_token: str | None = None, item_code: str | None = None,
           voucher_token: str | None = None, short_code: str | None = None, delivered_at: datetime | None = None,
           duration_minutes: int | None = None, notes: str | None = None) -> Redemption:
    """Redeem a voucher for a service the actor's provider has delivered, in one transaction.

    With a presence code (its token, or its 8-digit *short_code*) and an item: the recipient's
    earliest-expiring valid voucher of that item in a programme where this provider may serve them.
    With a voucher card: that voucher.

    :raises RedeemerNotApproved: the provider is not approved (whatever it scanned).
    :raises InvalidToken, TokenExpired, TokenAlreadyUsed: the code is bad, old or used.
    :raises TooManyAttempts: this login typed too many wrong short codes lately.
    :raises ProviderNotChosen: the recipient chose someone else (or the provider is not enrolled).
    :raises VoucherExpired, NoValidVoucher, VoucherAlreadyRedeemed: nothing left to redeem.
    """
    provider_id = actor.provider_id
    delivered_at = delivered_at or now
    try:
        today = _delivery_day(delivered_at, now)
        if presence_token is not None and short_code is None:
            if not item_code:
                raise ValidationFailed({"item_code": "Name the service delivered."})
            claims = tokens.read_presence_token(presence_token, now=now)
            _use_presence_code(claims)
            claimed = _claim_for_recipient(claims.recipient_id, item_code, provider_id, today, now)
            presence = "presence_code"
        elif short_code is not None:
            if presence_token is not None or voucher_token is not None:
                raise ValidationFailed({"short_code": "Give the short code alone, without a presence_token or a "
                                                      "voucher_token."})
            if not item_code:
                raise ValidationFailed({"item_code": "Name the service delivered."})
            claims = claims_of_short_code(short_code, actor=actor, now=now)
            _use_presence_code(claims)
            claimed = _claim_for_recipient(claims.recipient_id, item_code, provider_id, today, now)
            presence = "typed_code"
        elif voucher_token is not None:
            claimed = _claim_card(tokens.read_voucher_token(voucher_token), provider_id, today, now)
            presence = "voucher_card"
        else:
            raise ValidationFailed({"presence_token": "Give a presence_token (or its short_code) with an item_code, "
                                                      "or a voucher_token."})
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


def claims_of_short_code(short_code: str, *, actor, now: datetime) -> tokens.PresenceClaims:
    """What the presence code whose 8 digits were typed claims.

    Every look-up first takes a place in the login's counter of wrong codes; only a code that exists
    keeps none (used and expired ones are real codes, not guesses).

    :raises TooManyAttempts: more than SHORT_CODE_FAILURES_PER_LOGIN wrong codes within the window.
    :raises InvalidToken: no such code (wrong, or forgotten after its expiry). :raises TokenExpired: too old.
    """
    config = current_app.config
    counter = RateLimitItemPerSecond(config["SHORT_CODE_FAILURES_PER_LOGIN"],
                                     config["SHORT_CODE_FAILURE_WINDOW_SECONDS"])
    identifiers = ("short-code-login", str(actor.id))
    auth_service.take_attempt(counter, *identifiers,
                              message="Too many wrong codes from this login; wait, or scan the QR code instead.")
    found = db.session.execute(
        select(_SHORT_CODE.c.nonce, _SHORT_CODE.c.recipient_id, _SHORT_CODE.c.expires_at)
        .where(_SHORT_CODE.c.code_hash.in_(tokens.short_code_hashes(short_code)))).first()
    if found is None:
        raise tokens.InvalidToken("No presence code has these digits; check them, or ask for a new code.")
    auth_service.give_back_attempt(counter, *identifiers)
    if now >= found.expires_at:
        raise tokens.TokenExpired()
    return tokens.PresenceClaims(recipient_id=found.recipient_id, expires_at=found.expires_at, nonce=found.nonce)


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


def purge_short_codes(*, now: datetime) -> int:
    """Forget the short codes that are used (by code or by token) or expired: a forgotten code is unknown (422)."""
    return db.session.execute(delete(_SHORT_CODE).where(_dead(now))).rowcount
