"""Vouchers and redemptions as each actor may see them.

A recipient sees their own, a provider its own redemptions, a region-limited admin those of
programmes inside the region (marketplace.scope); anything else is 404, or 403 out of region.
"""

from datetime import datetime

from sqlalchemy import select

from marketplace import audit
from marketplace.catalogue.service import get_item
from marketplace.db import db, paginate
from marketplace.errors import DomainError, NotFound
from marketplace.programmes.models import Programme
from marketplace.programmes.service import of_programmes_in_scope, require_programme_in_scope
from vouchers import cards, tokens
from vouchers.models import Redemption, Voucher


class VoucherNotIssued(DomainError):
    status, code = 409, "voucher_not_issued"
    message = "Only an issued voucher has a card: this one is redeemed, expired or revoked."


def get_voucher(voucher_id: int, *, actor) -> Voucher:
    """:raises NotFound: no such voucher, or not the asking recipient's. :raises Forbidden: out of region."""
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None or (actor.role == "recipient" and voucher.recipient_id != actor.recipient_id):
        raise NotFound("No such voucher.")
    require_programme_in_scope(actor, voucher.programme_id, "This voucher")
    return voucher


def voucher_card(voucher_id: int, *, actor, now: datetime | None = None) -> tuple[str, list[tuple[str, str, str]]]:
    """What a printed card of the voucher carries: its signed token (for the QR code) and its lines.

    A card an admin prints for the recipient (代办) is audited as done on their behalf: it is money in the hand.

    :raises NotFound, Forbidden: as get_voucher. :raises VoucherNotIssued: the voucher is redeemed, expired or
        revoked: a card would look valid and be refused at the door.
    """
    voucher = get_voucher(voucher_id, actor=actor)
    if voucher.status != "issued":
        raise VoucherNotIssued(status=voucher.status)
    item = get_item(voucher.item_code)
    programme = db.session.get(Programme, voucher.programme_id)
    lines = cards.card_lines(serial=voucher.serial, item_code=item.code, item_name=item.name, unit=item.unit,
                             face_value_fen=voucher.face_value_fen, copay_fen=voucher.copay_fen,
                             valid_from=voucher.valid_from, valid_until=voucher.valid_until,
                             programme_id=programme.id, programme_name=programme.name)
    if actor.role == "admin":
        audit.record(action="voucher.card_printed", entity="voucher", entity_id=voucher.id, actor=actor, now=now,
                     region_code=programme.region_code, on_behalf_of=audit.acting_for(actor, voucher.recipient_id),
                     data={"programme_id": programme.id, "item_code": voucher.item_code})
    return tokens.voucher_token(voucher.id), lines


def list_vouchers(*, actor, page: int, per_page: int, recipient_id: int | None = None, status: str | None = None,
                  programme_id: int | None = None) -> dict:
    """Vouchers: a recipient's own, or those of programmes in the admin's region, filtered."""
    statement = select(Voucher).where(of_programmes_in_scope(actor, Voucher.programme_id)).order_by(Voucher.id)
    if actor.role == "recipient":
        statement = statement.where(Voucher.recipient_id == actor.recipient_id)
    for column, value in ((Voucher.recipient_id, recipient_id), (Voucher.status, status),
                          (Voucher.programme_id, programme_id)):
        if value is not None:
            statement = statement.where(column == value)
    return paginate(statement, page=page, per_page=per_page)


def get_redemption(redemption_id: int, *, actor) -> Redemption:
    """:raises NotFound: no such redemption, or another provider's / recipient's.
    :raises Forbidden: its programme is outside the admin's region.
    """
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None or (actor.role == "provider" and redemption.provider_id != actor.provider_id) or (
            actor.role == "recipient" and redemption.recipient_id != actor.recipient_id):
        raise NotFound("No such redemption.")
    require_programme_in_scope(actor, redemption.programme_id, "This redemption")
    return redemption


def list_redemptions(*, actor, page: int, per_page: int, provider_id: int | None = None,
                     programme_id: int | None = None, from_: datetime | None = None,
                     to: datetime | None = None) -> dict:
    """Redemptions (a provider's own), filtered by provider, programme and delivery time [from, to)."""
    statement = (select(Redemption).where(of_programmes_in_scope(actor, Redemption.programme_id))
                 .order_by(Redemption.id))
    if actor.role == "provider":
        statement = statement.where(Redemption.provider_id == actor.provider_id)
    if provider_id is not None:
        statement = statement.where(Redemption.provider_id == provider_id)
    if programme_id is not None:
        statement = statement.where(Redemption.programme_id == programme_id)
    if from_ is not None:
        statement = statement.where(Redemption.delivered_at >= from_)
    if to is not None:
        statement = statement.where(Redemption.delivered_at < to)
    return paginate(statement, page=page, per_page=per_page)
