from flask import Response, send_file, stream_with_context

from marketplace import metrics
from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.db import transaction, utcnow, whole_page, writes
from marketplace.idempotency import idempotent
from marketplace.programmes.service import get_programme
from marketplace.recipients.service import get_recipient
from marketplace.schemas import ReasonSchema, list_of, page_of
from providers.schemas import ComplaintInputSchema, ComplaintSchema, RatingInputSchema, RatingSchema
from vouchers import cards, statements
from vouchers.schemas import (
    ChoiceInputSchema,
    ChoiceSchema,
    ChoicesSchema,
    ExpiryResultSchema,
    IssuanceInputSchema,
    IssuanceResultSchema,
    PaymentSchema,
    PresenceCodeSchema,
    PresenceImageQuerySchema,
    RedemptionInputSchema,
    RedemptionQuerySchema,
    RedemptionSchema,
    SettlementDetailSchema,
    SettlementInputSchema,
    SettlementQuerySchema,
    SettlementSchema,
    SupplementaryIssueSchema,
    SwitchingQuerySchema,
    SwitchingReportSchema,
    VoucherQuerySchema,
    VoucherSchema,
)
from vouchers.service import (
    choice,
    feedback,
    issuance,
    lookup,
    redemption,
    reversal,
    revocation,
    settlement,
    switching,
)

blp = Blueprint("vouchers", __name__, url_prefix="/api/v1",
                description="Vouchers: issuance, choice, presence codes and cards, redemption (核销), expiry")

BINARY = {"type": "string", "format": "binary"}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@blp.post("/programmes/<int:programme_id>/issuance")
@idempotent
@blp.arguments(IssuanceInputSchema())
@blp.response(200, IssuanceResultSchema)
@role_required("admin")
def issue_monthly(data, programme_id):
    """Issue the period's quota to every eligible recipient: all or nothing (409 `budget_exceeded`), once a period."""
    actor = require_actor()
    with metrics.timed_run("issuance"), transaction():
        programme = get_programme(programme_id, actor=actor)
        return issuance.issue_monthly(programme=programme, period=data["period"], actor=actor, now=utcnow())


@blp.post("/vouchers")
@idempotent
@blp.arguments(SupplementaryIssueSchema())
@blp.response(201, page_of(VoucherSchema))
@role_required("admin")
def issue_supplementary(data):
    """Issue extra vouchers of one item to one recipient for the current month (same budget rule)."""
    actor = require_actor()
    with transaction():
        programme = get_programme(data["programme_id"], actor=actor)
        recipient = get_recipient(data["recipient_id"], actor=actor)
        vouchers = issuance.issue_supplementary(programme=programme, recipient=recipient, item_code=data["item_code"],
                                                count=data["count"], actor=actor, now=utcnow())
    return whole_page(vouchers)


@blp.get("/vouchers")
@blp.arguments(VoucherQuerySchema(), location="query")
@blp.response(200, page_of(VoucherSchema))
@role_required("admin", "recipient")
def list_vouchers(query):
    """Vouchers: a recipient sees their own, a region-scoped admin those of programmes in the region."""
    return lookup.list_vouchers(actor=require_actor(), **query)


@blp.get("/vouchers/<int:voucher_id>")
@blp.response(200, VoucherSchema)
@role_required("admin", "recipient")
def get_voucher(voucher_id):
    """One voucher (admins in scope, or its recipient)."""
    return lookup.get_voucher(voucher_id, actor=require_actor())


@blp.get("/vouchers/<int:voucher_id>/card.png")
@blp.response(200, BINARY, content_type="image/png")
@role_required("admin", "recipient")
@writes
def voucher_card_png(voucher_id):
    """A printable A6 card (300 dpi): QR of the signed voucher token, serial, item, value, validity.

    Only an issued voucher has a card: 409 `voucher_not_issued` once it is redeemed, expired or revoked. A card an
    admin prints is audited (`voucher.card_printed`, on behalf of the recipient).
    """
    with transaction():
        token, lines = lookup.voucher_card(voucher_id, actor=require_actor(), now=utcnow())
    return Response(cards.card_png(token, lines), mimetype="image/png")


@blp.get("/vouchers/<int:voucher_id>/card.svg")
@blp.response(200, BINARY, content_type="image/svg+xml")
@role_required("admin", "recipient")
@writes
def voucher_card_svg(voucher_id):
    """The same card as SVG (A6, vector); 409 `voucher_not_issued` and the audit as for the PNG."""
    with transaction():
        token, lines = lookup.voucher_card(voucher_id, actor=require_actor(), now=utcnow())
    return Response(cards.card_svg(token, lines), mimetype="image/svg+xml")


@blp.post("/vouchers/<int:voucher_id>/revoke")
@idempotent
@blp.arguments(ReasonSchema())
@blp.response(200, VoucherSchema)
@role_required("admin")
def revoke_voucher(data, voucher_id):
    """Revoke an issued voucher; its value returns to the available budget."""
    actor = require_actor()
    with transaction():
        voucher = lookup.get_voucher(voucher_id, actor=actor)
        return revocation.revoke_voucher(voucher=voucher, reason=data["reason"], actor=actor, now=utcnow())


@blp.post("/programmes/<int:programme_id>/expire")
@idempotent
@blp.response(200, ExpiryResultSchema)
@role_required("admin")
def expire_vouchers(programme_id):
    """Expire issued vouchers whose validity has passed and release their value."""
    actor = require_actor()
    with transaction():
        return revocation.expire_vouchers(programme=get_programme(programme_id, actor=actor), actor=actor,
                                          now=utcnow())


@blp.put("/recipients/<int:recipient_id>/choices")
@blp.arguments(ChoiceInputSchema())
@blp.response(200, ChoiceSchema)
@role_required("recipient", "admin")
def set_choice(data, recipient_id):
    """Choose (or switch) the provider for one item of a programme; 422 `provider_not_eligible`.

    A switch from another provider may say why (`switch_reason`, and `switch_note`, which `other` needs); a first
    choice has no reason (422). An admin choosing for the recipient is audited as acting on their behalf.
    """
    actor = require_actor()
    with transaction():
        recipient = get_recipient(recipient_id, actor=actor)
        programme = get_programme(data["programme_id"], actor=actor)
        return choice.set_choice(recipient=recipient, programme=programme, item_code=data["item_code"],
                                 provider_id=data["provider_id"], switch_reason=data.get("switch_reason"),
                                 switch_note=data.get("switch_note"), actor=actor, now=utcnow())


@blp.get("/recipients/<int:recipient_id>/choices")
@blp.response(200, ChoicesSchema)
@role_required("recipient", "admin")
def get_choices(recipient_id):
    """Current choices and every switch."""
    return choice.choices_of(get_recipient(recipient_id, actor=require_actor()))


@blp.post("/me/presence-code")
@blp.response(201, PresenceCodeSchema)
@role_required("recipient")
def create_presence_code():
    """A presence code to show the provider: valid about two minutes, works once.

    Its `token` goes into the QR code; `short_code` is the same code as 8 digits (shown `1234 5678`) to type in
    where the QR code cannot be scanned. Using either uses both.
    """
    with transaction():
        return redemption.create_presence_code(recipient_id=require_actor().recipient_id, now=utcnow())


@blp.get("/me/presence-code.png")
@blp.arguments(PresenceImageQuerySchema(), location="query")
@blp.response(200, BINARY, content_type="image/png")
@role_required("recipient")
def presence_code_png(query):
    """The presence code as a QR image (only the recipient's own, unexpired code)."""
    token = redemption.own_presence_token(query["token"], actor=require_actor(), now=utcnow())
    return Response(cards.qr_png(token), mimetype="image/png")


@blp.post("/redemptions")
@idempotent
@blp.arguments(RedemptionInputSchema())
@blp.response(201, RedemptionSchema)
@role_required("provider")
def redeem(data):
    """Redeem (核销) a delivered service: scan the presence code (or type its `short_code`) and name the item, or
    scan a voucher card.

    A wrong `short_code` is 422 `invalid_token`; more than SHORT_CODE_FAILURES_PER_LOGIN (10) wrong ones from one
    login within SHORT_CODE_FAILURE_WINDOW_SECONDS (10 minutes) are 429 `too_many_attempts`.
    """
    with metrics.redemption_result(), transaction():
        return redemption.redeem(actor=require_actor(), now=utcnow(), **data)


@blp.post("/redemptions/<int:redemption_id>/reverse")
@idempotent
@blp.arguments(ReasonSchema())
@blp.response(200, RedemptionSchema)
@role_required("provider", "admin")
def reverse_redemption(data, redemption_id):
    """Undo a redemption within the reversal window; 409 `already_settled` / `reversal_window_closed`."""
    actor = require_actor()
    with transaction():
        found = lookup.get_redemption(redemption_id, actor=actor)
        return reversal.reverse_redemption(redemption=found, reason=data["reason"], actor=actor, now=utcnow())


@blp.get("/redemptions")
@blp.arguments(RedemptionQuerySchema(), location="query")
@blp.response(200, page_of(RedemptionSchema))
@role_required("admin", "auditor", "provider")
def list_redemptions(query):
    """Redemptions (a provider sees its own), filtered by provider, programme and delivery time [from, to)."""
    return lookup.list_redemptions(actor=require_actor(), **query)


@blp.get("/redemptions/<int:redemption_id>")
@blp.response(200, RedemptionSchema)
@role_required("admin", "auditor", "provider")
def get_redemption(redemption_id):
    """One redemption."""
    return lookup.get_redemption(redemption_id, actor=require_actor())


@blp.post("/redemptions/<int:redemption_id>/rating")
@blp.arguments(RatingInputSchema())
@blp.response(201, RatingSchema)
@role_required("recipient", "admin")
def rate_redemption(data, redemption_id):
    """Rate a delivered service 1–5 (its recipient; an admin with `source: "phone_followup"`).

    409 `already_rated`, 410 `rating_window_closed`, 403 when it is not yours.
    """
    with transaction():
        return feedback.rate_redemption(redemption_id=redemption_id, **data, actor=require_actor(), now=utcnow())


@blp.post("/complaints")
@blp.arguments(ComplaintInputSchema())
@blp.response(201, ComplaintSchema)
@role_required("recipient", "admin")
def file_complaint(data):
    """Complain about a provider, optionally about one of your redemptions (held from settlement until resolved)."""
    with transaction():
        return feedback.complain(**data, actor=require_actor(), now=utcnow())


@blp.get("/programmes/<int:programme_id>/switching")
@blp.arguments(SwitchingQuerySchema(), location="query")
@blp.response(200, SwitchingReportSchema)
@role_required("admin", "auditor")
def programme_switching(query, programme_id):
    """Per provider in the month: recipients at its start, gained and lost by switching, churn, reasons.

    `recipients_start` counts the distinct recipients whose chosen provider for some item was this one at the
    month's first local midnight; `gained` and `lost` the distinct recipients who switched to it from another
    provider, or from it to another, during the month; `churn_rate = lost / recipients_start` (null when 0);
    `reasons` counts the switches away by the reason given. Every enrolled provider is listed.
    """
    actor = require_actor()
    return switching.switching_report(get_programme(programme_id, actor=actor), period=query.get("period"),
                                      now=utcnow())


@blp.post("/programmes/<int:programme_id>/settlements")
@idempotent
@blp.arguments(SettlementInputSchema())
@blp.response(201, list_of(SettlementSchema))
@role_required("admin")
def create_settlements(data, programme_id):
    """Draft one settlement per provider with unsettled redemptions delivered up to the end of the period.

    Redemptions on hold behind an open complaint wait; a second call for the period creates none twice.
    """
    actor = require_actor()
    evaluations = {evaluation["provider_id"]: evaluation["score"] for evaluation in data["evaluations"]}
    with metrics.timed_run("settlement"), transaction():
        programme = get_programme(programme_id, actor=actor)
        return settlement.create_settlements(programme=programme, period=data["period"], evaluations=evaluations,
                                             actor=actor, now=utcnow())


@blp.get("/settlements")
@blp.arguments(SettlementQuerySchema(), location="query")
@blp.response(200, page_of(SettlementSchema))
@role_required("admin", "auditor", "provider")
def list_settlements(query):
    """Settlements (a provider sees its own)."""
    return settlement.list_settlements(actor=require_actor(), **query)


@blp.get("/settlements/<int:settlement_id>")
@blp.response(200, SettlementDetailSchema)
@role_required("admin", "auditor", "provider")
def get_settlement(settlement_id):
    """One settlement with its lines (the redemptions it pays)."""
    return settlement.settlement_detail(settlement_id, actor=require_actor())


@blp.get("/settlements/<int:settlement_id>/statement.csv")
@blp.response(200, BINARY, content_type="text/csv")
@role_required("admin", "auditor", "provider")
def settlement_statement_csv(settlement_id):
    """The statement as CSV (UTF-8 with BOM, Chinese headers), streamed."""
    found = settlement.get_settlement(settlement_id, actor=require_actor())
    return Response(stream_with_context(statements.csv_chunks(found)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="settlement-{found.id}.csv"'})


@blp.get("/settlements/<int:settlement_id>/statement.xlsx")
@blp.response(200, BINARY, content_type=XLSX)
@role_required("admin", "auditor", "provider")
def settlement_statement_xlsx(settlement_id):
    """The statement as an Excel workbook (written row by row)."""
    found = settlement.get_settlement(settlement_id, actor=require_actor())
    return send_file(statements.xlsx_file(found), mimetype=XLSX, as_attachment=True,
                     download_name=f"settlement-{found.id}.xlsx")


@blp.delete("/settlements/<int:settlement_id>")
@blp.response(204)
@role_required("admin")
def delete_settlement(settlement_id):
    """Delete a draft; its redemptions become unsettled again."""
    actor = require_actor()
    with transaction():
        settlement.discard(settlement=settlement.get_settlement(settlement_id, actor=actor), actor=actor, now=utcnow())


@blp.post("/settlements/<int:settlement_id>/approve")
@idempotent
@blp.response(200, SettlementSchema)
@role_required("admin")
def approve_settlement(settlement_id):
    """Approve a draft (by an admin other than its creator: 403 `four_eyes_required`); money moves to settled."""
    actor = require_actor()
    with transaction():
        return settlement.approve(settlement=settlement.get_settlement(settlement_id, actor=actor), actor=actor,
                                  now=utcnow())


@blp.post("/settlements/<int:settlement_id>/pay")
@idempotent
@blp.arguments(PaymentSchema())
@blp.response(200, SettlementSchema)
@role_required("admin")
def pay_settlement(data, settlement_id):
    """Record the payment of an approved settlement (409 `not_approved` otherwise)."""
    actor = require_actor()
    with transaction():
        return settlement.pay(settlement=settlement.get_settlement(settlement_id, actor=actor), **data, actor=actor,
                              now=utcnow())
