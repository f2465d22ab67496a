"""Receivers of the kernel's signals (marketplace.signals): the vouchers domain's part of closing a
programme, a recipient dying or moving, and reconciliation. They run inside the sender's transaction."""

from sqlalchemy import and_, func, select

from marketplace.db import db
from marketplace.programmes import ledger
from marketplace.signals import (
    programme_closed,
    provider_record,
    ranking_switching,
    recipient_departed,
    recipient_departure_preview,
    recipient_record,
    reconciliation_checks,
)
from vouchers.models import Redemption, Settlement, Voucher
from vouchers.service import recipient_record as record_view
from vouchers.service import switching
from vouchers.service.revocation import revoke_open_vouchers

PROVIDER_MONTHS = 6  # the staff's provider page shows its switching over the last six whole months


@programme_closed.connect
def revoke_vouchers_of_closed_programme(programme, *, actor, now, **_extra):
    revoke_open_vouchers(programme_id=programme.id, reason="programme closed", region_code=programme.region_code,
                         actor=actor, now=now)


@recipient_departed.connect
def revoke_vouchers_of_departed_recipient(recipient, *, actor, now, status, **_extra):
    revoke_open_vouchers(recipient_id=recipient.id, reason=f"recipient {status}",
                         region_code=recipient.region_code, actor=actor, now=now)


@recipient_record.connect
def recipient_record_sections(recipient, *, now, **_extra) -> dict:
    return {"record": record_view.recipient_record(recipient=recipient, now=now)}


@recipient_departure_preview.connect
def open_vouchers_of_recipient(recipient, **_extra) -> dict:
    count, total = record_view.departure_preview(recipient_id=recipient.id)
    return {"vouchers": count, "released_fen": total}


@ranking_switching.connect
def switch_away_rates(item_code, *, programme_id=None, **_extra) -> dict:
    return switching.switch_away_rates(item_code=item_code, programme_id=programme_id)


@provider_record.connect
def provider_switching(provider_id, *, now, **_extra) -> dict:
    return {"switching": switching.provider_history(provider_id=provider_id,
                                                    periods=switching.months_before(now, PROVIDER_MONTHS))}


@reconciliation_checks.connect
def voucher_checks(programme_id, **_extra) -> list[ledger.Check]:
    balances = ledger.balances(programme_id)
    issued = db.session.scalar(select(func.coalesce(func.sum(Voucher.face_value_fen), 0))
                               .where(Voucher.programme_id == programme_id, Voucher.status == "issued"))
    completed = db.session.scalar(select(func.coalesce(func.sum(Redemption.face_value_fen), 0))
                                  .where(Redemption.programme_id == programme_id, Redemption.status == "completed"))
    redeemed_twice = db.session.scalar(select(func.count()).select_from(
        select(Redemption.voucher_id).where(Redemption.programme_id == programme_id,
                                            Redemption.status == "completed")
        .group_by(Redemption.voucher_id).having(func.count() > 1).subquery()))
    completed_redemption = select(Redemption.id).where(Redemption.voucher_id == Voucher.id,
                                                       Redemption.status == "completed").exists()
    mismatched = db.session.scalar(select(func.count()).select_from(Voucher).where(
        Voucher.programme_id == programme_id,
        (and_(Voucher.status == "redeemed", ~completed_redemption))
        | (and_(Voucher.status != "redeemed", completed_redemption))))
    spent = balances.redeemed_fen + balances.settled_fen + balances.deducted_fen
    settled_net = db.session.scalar(select(func.coalesce(func.sum(Settlement.net_fen), 0)).where(
        Settlement.programme_id == programme_id, Settlement.status.in_(("approved", "paid"))))
    lines = (select(Redemption.settlement_id, func.count().label("n"), func.sum(Redemption.face_value_fen)
                    .label("gross")).where(Redemption.programme_id == programme_id,
                                           Redemption.settlement_id.is_not(None))
             .group_by(Redemption.settlement_id).subquery())
    settlements_astray = db.session.scalar(select(func.count()).select_from(Settlement).outerjoin(
        lines, lines.c.settlement_id == Settlement.id).where(
        Settlement.programme_id == programme_id,
        (func.coalesce(lines.c.n, 0) != Settlement.redemptions_count)
        | (func.coalesce(lines.c.gross, 0) != Settlement.gross_fen)))
    return [
        ledger.Check("committed_matches_issued_vouchers", int(issued) == balances.committed_fen, int(issued),
                     balances.committed_fen, "Face value of issued vouchers (expected) against committed"),
        ledger.Check("redeemed_settled_deducted_match_redemptions", int(completed) == spent, int(completed), spent,
                     "Face value of completed redemptions (expected) against redeemed + settled + deducted"),
        ledger.Check("settled_matches_approved_settlements", int(settled_net) == balances.settled_fen,
                     int(settled_net), balances.settled_fen,
                     "Net of approved and paid settlements (expected) against the journal's settled"),
        ledger.Check("settlements_match_their_redemptions", settlements_astray == 0, 0, settlements_astray,
                     "Settlements whose count or gross differ from the redemptions they hold"),
        ledger.Check("vouchers_redeemed_at_most_once", redeemed_twice == 0, 0, redeemed_twice,
                     "Vouchers with more than one completed redemption"),
        ledger.Check("voucher_status_matches_redemptions", mismatched == 0, 0, mismatched,
                     "Vouchers whose status disagrees with their redemptions"),
    ]
