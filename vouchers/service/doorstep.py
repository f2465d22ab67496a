"""At the door: what a provider may deliver to the person whose code it just read, and the receipt after.

Reading a code here uses nothing up: the presence code stays valid (the redemption, `redemption.redeem`,
uses it), so the staff can pick the service and then confirm. The offer is worked out with the very
condition the redemption claims a voucher with (`redemption_sql.redeemable`): it never offers a
service the confirmation would refuse for that reason. A typed short code is looked up through the
redemption's own look-up, so every wrong code counts against the login here too (guessing digits on
this page is no cheaper than on the API).
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import exists, select, tuple_

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from vouchers import tokens
from vouchers.models import Choice, Redemption, UsedPresenceCode, Voucher
from vouchers.serials import serial_for
from vouchers.service import lookup, redemption, redemption_sql
from vouchers.service.redemption import (
    NoValidVoucher,
    ProviderNotChosen,
    RedeemerNotApproved,
    TokenAlreadyUsed,
    VoucherAlreadyRedeemed,
    VoucherExpired,
)

PRESENCE, TYPED, CARD = "presence_code", "typed_code", "voucher_card"


@dataclass(frozen=True)
class OfferedItem:
    """A service the provider may deliver now, with the voucher the redemption would take first."""

    item_code: str
    item_name: str
    unit: str
    programme_name: str
    face_value_fen: int
    copay_fen: int
    vouchers_left: int
    valid_until: date


@dataclass(frozen=True)
class Doorstep:
    """What was read at the door: how (*kind*), whose code (masked name), and what may be delivered.

    *code* is what the confirmation sends back to the redemption: `{"presence_token": …}`,
    `{"short_code": …}` or `{"voucher_token": …}`. *expires_at*: when a presence code stops working.
    """

    kind: str
    code: dict
    recipient_name: str
    items: list[OfferedItem]
    expires_at: datetime | None

    @property
    def card(self) -> bool:
        return self.kind == CARD


@dataclass(frozen=True)
class Receipt:
    """A redemption as the provider's receipt shows it: no full name, no ID number."""

    redemption: Redemption
    voucher_serial: str
    item_name: str
    unit: str
    programme_name: str
    recipient_name: str


def masked_name(name: str) -> str:
    """The family name and a star for every other character: 李桂英 → 李**."""
    return name[:1] + "*" * max(1, len(name) - 1) if name else ""


def read_code(*, actor, now: datetime, scanned: str | None = None, short_code: str | None = None) -> Doorstep:
    """What the provider of *actor* may deliver to the holder of a scanned QR code (a presence code or a
    voucher card) or of a typed short code, without using the code up.

    :raises RedeemerNotApproved: the provider may not redeem (suspended, revoked, pending), whatever was read.
    :raises InvalidToken, TokenExpired, TokenAlreadyUsed: the code is not one of ours, too old, or used.
    :raises TooManyAttempts: this login typed too many wrong short codes lately.
    :raises ProviderNotChosen, NoValidVoucher, VoucherExpired, VoucherAlreadyRedeemed: nothing to deliver here.
    """
    if redemption_sql.provider_status(provider_id=actor.provider_id) != "approved":
        raise RedeemerNotApproved()
    today = local_date(now)
    if short_code is not None:
        claims = redemption.claims_of_short_code(short_code, actor=actor, now=now)  # counts wrong codes
        return _presence(claims, TYPED, {"short_code": short_code}, actor.provider_id, today)
    text = (scanned or "").strip()
    try:
        claims = tokens.read_presence_token(text, now=now)
    except tokens.TokenExpired:
        raise
    except tokens.InvalidToken:
        voucher_id = tokens.read_voucher_token(text)  # not a presence code: a card, or InvalidToken
        return _card(voucher_id, text, actor.provider_id, today)
    return _presence(claims, PRESENCE, {"presence_token": text}, actor.provider_id, today)


def _presence(claims: tokens.PresenceClaims, kind: str, code: dict, provider_id: int, today: date) -> Doorstep:
    used = db.session.scalar(select(exists().where(UsedPresenceCode.nonce == claims.nonce)))
    if used:
        raise TokenAlreadyUsed()
    items = _offered(Voucher.recipient_id == claims.recipient_id, provider_id, today)
    if not items:
        _why_nothing_for(claims.recipient_id, provider_id, today)
    return Doorstep(kind=kind, code=code, recipient_name=_recipient_name(claims.recipient_id), items=items,
                    expires_at=claims.expires_at)


def _card(voucher_id: int, token: str, provider_id: int, today: date) -> Doorstep:
    items = _offered(Voucher.id == voucher_id, provider_id, today)
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None:
        raise tokens.InvalidToken()
    if not items:
        _why_not_card(voucher, today)
    return Doorstep(kind=CARD, code={"voucher_token": token}, recipient_name=_recipient_name(voucher.recipient_id),
                    items=items, expires_at=None)


def _offered(which, provider_id: int, today: date) -> list[OfferedItem]:
    """One line per item: the voucher the redemption would take first (earliest-expiring), and how many are left."""
    # The redemption's own condition (issued, valid today, active programme, this provider may serve them). The
    # voucher is the query's only table: the condition's subqueries on programme and choice correlate to it alone.
    redeemable = redemption_sql.redeemable(provider_id, today)
    rows = db.session.execute(
        select(Voucher.item_code, Voucher.programme_id, Voucher.face_value_fen, Voucher.copay_fen, Voucher.valid_until)
        .where(which, redeemable).order_by(Voucher.item_code, Voucher.valid_until, Voucher.id)).all()
    if not rows:
        return []
    items = {code: (name, unit) for code, name, unit in db.session.execute(
        select(ServiceItem.code, ServiceItem.name, ServiceItem.unit)
        .where(ServiceItem.code.in_({row.item_code for row in rows})))}
    programmes = dict(db.session.execute(select(Programme.id, Programme.name)
                                         .where(Programme.id.in_({row.programme_id for row in rows}))).all())
    first: dict[str, tuple] = {}
    left: dict[str, int] = {}
    for row in rows:
        left[row.item_code] = left.get(row.item_code, 0) + 1
        first.setdefault(row.item_code, row)
    return [OfferedItem(item_code=code, item_name=items[code][0], unit=items[code][1],
                        programme_name=programmes[row.programme_id], face_value_fen=row.face_value_fen,
                        copay_fen=row.copay_fen, vouchers_left=left[code], valid_until=row.valid_until)
            for code, row in first.items()]


def _why_nothing_for(recipient_id: int, provider_id: int, today: date) -> None:
    """Why a presence code offers nothing: the services the recipient chose this provider for are used up or
    expired, or (choosing it for nothing) they chose someone else; else, as the redemption says it."""
    base = (select(Voucher.id).join(Programme, Programme.id == Voucher.programme_id)
            .where(Voucher.recipient_id == recipient_id, Voucher.status == "issued", Programme.status == "active"))
    chosen_here = select(Choice.programme_id, Choice.item_code).where(Choice.recipient_id == recipient_id,
                                                                      Choice.provider_id == provider_id)
    if db.session.scalar(select(exists(chosen_here))):
        here = base.where(tuple_(Voucher.programme_id, Voucher.item_code).in_(chosen_here))
        if db.session.scalar(here.where(Voucher.valid_until < today).limit(1)) is not None:
            raise VoucherExpired()
        raise NoValidVoucher()
    if db.session.scalar(base.where(Voucher.valid_from <= today, Voucher.valid_until >= today).limit(1)) is not None:
        raise ProviderNotChosen()
    if db.session.scalar(base.where(Voucher.valid_until < today).limit(1)) is not None:
        raise VoucherExpired()
    raise NoValidVoucher()


def _why_not_card(voucher: Voucher, today: date) -> None:
    """Why a card's voucher cannot be redeemed here (as the redemption says it)."""
    if voucher.status == "redeemed":
        raise VoucherAlreadyRedeemed()
    if voucher.status == "expired" or (voucher.status == "issued" and voucher.valid_until < today):
        raise VoucherExpired()
    if voucher.status != "issued" or voucher.valid_from > today:
        raise NoValidVoucher()
    raise ProviderNotChosen()


def _recipient_name(recipient_id: int) -> str:
    return masked_name(db.session.scalar(select(Recipient.name).where(Recipient.id == recipient_id)) or "")


def receipt(redemption_id: int, *, actor) -> Receipt:
    """The receipt of one of the actor's provider's redemptions.

    :raises NotFound: no such redemption, or another provider's.
    """
    found = lookup.get_redemption(redemption_id, actor=actor)
    name, unit = db.session.execute(select(ServiceItem.name, ServiceItem.unit)
                                    .where(ServiceItem.code == found.item_code)).one()
    programme = db.session.scalar(select(Programme.name).where(Programme.id == found.programme_id))
    return Receipt(redemption=found, voucher_serial=serial_for(found.voucher_id), item_name=name, unit=unit,
                   programme_name=programme, recipient_name=_recipient_name(found.recipient_id))
