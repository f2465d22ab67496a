"""The redemption hot path's statements, in one place, each with the parameters it takes.

They are built once, on table columns rather than ORM attributes, and run on the session's
connection: SQLAlchemy reuses their compiled form and skips the ORM layer (docs/performance.md, R1–R8).
Every statement is wrapped by a function whose keyword arguments are exactly its bind parameters, so
no caller has to know their names.
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, and_, bindparam, case, exists, insert, select, update
from sqlalchemy.orm import make_transient_to_detached

from marketplace.db import UTCDateTime, db
from marketplace.programmes.models import Programme
from providers.models import Enrolment, Provider, ProviderItem
from vouchers.models import Choice, Redemption, Voucher

MAX_CANDIDATES = 5

_VOUCHER = Voucher.__table__.c
_REDEMPTION = Redemption.__table__
# The voucher's programme's region, returned with the claim for the audit event (no second query).
_PROGRAMME_REGION = (select(Programme.__table__.c.region_code).where(Programme.__table__.c.id == _VOUCHER.programme_id)
                     .scalar_subquery().label("region_code"))


def redeemable(provider_id, today):
    """SQL condition on a voucher: issued, valid on *today*, in an active programme, and the approved
    provider *provider_id* may serve its recipient.

    Where the programme requires a choice, the recipient must have chosen this provider for the item;
    otherwise any enrolled provider offering the item may serve them.
    """
    programme, provider = Programme.__table__.c, Provider.__table__.c
    choice, enrolment, offered = Choice.__table__.c, Enrolment.__table__.c, ProviderItem.__table__.c
    # correlate(voucher): these sit inside the EXISTS on programme, two levels below the voucher.
    chosen = exists().where(choice.recipient_id == _VOUCHER.recipient_id, choice.programme_id == _VOUCHER.programme_id,
                            choice.item_code == _VOUCHER.item_code, choice.provider_id == provider_id)
    enrolled_offering = and_(
        exists().where(enrolment.programme_id == _VOUCHER.programme_id, enrolment.provider_id == provider_id)
        .correlate(Voucher.__table__),
        exists().where(offered.provider_id == provider_id, offered.item_code == _VOUCHER.item_code)
        .correlate(Voucher.__table__))
    may_serve = case((programme.choice_required, chosen.correlate(Voucher.__table__)), else_=enrolled_offering)
    return and_(
        _VOUCHER.status == "issued", _VOUCHER.valid_from <= today, _VOUCHER.valid_until >= today,
        exists().where(programme.id == _VOUCHER.programme_id, programme.status == "active", may_serve),
        exists().where(provider.id == provider_id, provider.status == "approved"))


@dataclass(frozen=True)
class _Statements:
    provider_status: object
    candidates: object
    claim: object
    insert_redemption: object


def _build() -> _Statements:
    provider_id = bindparam("provider_id")
    today = bindparam("today", type_=Date())
    provider = Provider.__table__.c
    return _Statements(
        provider_status=select(provider.status).where(provider.id == provider_id),
        candidates=(select(_VOUCHER.id)
                    .where(_VOUCHER.recipient_id == bindparam("recipient_id"),
                           _VOUCHER.item_code == bindparam("item_code"), redeemable(provider_id, today))
                    .order_by(_VOUCHER.valid_until, _VOUCHER.id).limit(MAX_CANDIDATES)),
        # The guarded state change issued → redeemed, only if nobody got there first and the scan is allowed.
        claim=(update(Voucher.__table__)
               .where(_VOUCHER.id == bindparam("voucher_id"), redeemable(provider_id, today))
               .values(status="redeemed", status_changed_at=bindparam("now", type_=UTCDateTime()))
               .returning(_VOUCHER.id, _VOUCHER.programme_id, _VOUCHER.recipient_id, _VOUCHER.item_code,
                          _VOUCHER.face_value_fen, _VOUCHER.copay_fen, _PROGRAMME_REGION)),
        insert_redemption=insert(_REDEMPTION).returning(*_REDEMPTION.c),
    )


_SQL = _build()


def provider_status(*, provider_id: int) -> str | None:
    return db.session.connection().execute(_SQL.provider_status, {"provider_id": provider_id}).scalar()


def redeemable_candidates(*, recipient_id: int, item_code: str, provider_id: int, today: date) -> list[int]:
    """Ids of the recipient's vouchers of the item that the provider may redeem today, earliest-expiring first."""
    return db.session.connection().execute(_SQL.candidates, {
        "recipient_id": recipient_id, "item_code": item_code, "provider_id": provider_id, "today": today,
    }).scalars().all()


def claim_voucher(*, voucher_id: int, provider_id: int, today: date, now: datetime):
    """Mark the voucher redeemed if the provider may redeem it today and nobody got there first.

    Returns the claimed voucher's (id, programme_id, recipient_id, item_code, face_value_fen,
    copay_fen, region_code — its programme's), or None when it was not claimable.
    """
    return db.session.connection().execute(_SQL.claim, {
        "voucher_id": voucher_id, "provider_id": provider_id, "today": today, "now": now,
    }).one_or_none()


def insert_redemption(values: dict) -> Redemption:
    """Insert the redemption row and return it as an ORM object attached to the session, built from
    the row the database returned (nothing is read back)."""
    row = db.session.connection().execute(_SQL.insert_redemption, values).one()
    redemption = Redemption(**row._mapping)
    make_transient_to_detached(redemption)
    db.session.add(redemption)
    return redemption
