"""Vouchers: issuance, choice, redemption (核销), reversal, revocation and expiry.

Money rules (DESIGN.md invariants):
- every voucher written commits its face value through the kernel's guarded `commit_budget`, in the
  same transaction, so no run can overspend however many run at once;
- a voucher changes status only by a guarded UPDATE (`... WHERE status = 'issued'`), and a partial
  unique index allows one completed redemption per voucher, so racing scans give exactly one winner;
- every status change moves its face value in the journal (committed → redeemed, committed →
  available, redeemed → committed) in the same transaction, with an audit event.
"""

from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Date, and_, bindparam, case, delete, exists, func, insert, literal, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached

from marketplace import audit
from marketplace.db import UTCDateTime, db, insert_ignoring_conflicts, local_date, paginate
from marketplace.errors import DomainError, Forbidden, InvalidTransition, NotFound, ValidationFailed
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme, ProgrammeItem
from marketplace.recipients.models import Recipient, RecipientTag
from marketplace.regions import covers, region_prefix
from providers import service as provider_service
from providers.models import Enrolment, Provider, ProviderItem
from vouchers import tokens
from vouchers.models import Choice, ChoiceEvent, Issuance, Redemption, UsedPresenceCode, Voucher

MAX_CANDIDATES = 5
PROVIDER = bindparam("provider_id")
TODAY = bindparam("today", type_=Date())
# A delivery may be recorded a little ahead of the server clock (phones drift), never further.
CLOCK_SKEW = timedelta(minutes=5)
# A service may be recorded late (no signal in the village), but not so late that a voucher past its
# validity could still be spent by backdating.
MAX_BACKDATING = timedelta(days=7)


class ProgrammeNotActive(DomainError):
    status, code, message = 409, "programme_not_active", "The programme is not active."


class BudgetExceeded(DomainError):
    status, code, message = 409, "budget_exceeded", "The available budget cannot cover this issue; nothing was issued."


class ProviderNotEligible(DomainError):
    status, code, message = 422, "provider_not_eligible", "This provider cannot be chosen for this service."


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


class AlreadySettled(DomainError):
    status, code, message = 409, "already_settled", "The redemption belongs to a settlement and cannot be reversed."


class ReversalWindowClosed(DomainError):
    status, code, message = 409, "reversal_window_closed", "The reversal window of this redemption has closed."


# --- money arithmetic -----------------------------------------------------------------------------

def copay_percent_for(programme: Programme, tags: list[str]) -> int:
    """The lowest co-payment percent among the recipient's tags that the programme prices, else the default."""
    percents = [programme.copay_percent[tag] for tag in tags if tag in programme.copay_percent and tag != "default"]
    return min(percents) if percents else programme.copay_percent["default"]


def copay_fen(unit_price_fen: int, percent: int) -> int:
    """The recipient's share, rounded up to the fen (the bureau never pays a fraction more)."""
    return (unit_price_fen * percent + 99) // 100


def period_bounds(period: str) -> tuple[date, date]:
    """First and last day of a `YYYY-MM` period. :raises ValidationFailed: not a month."""
    try:
        year, month = (int(part) for part in period.split("-"))
        first = date(year, month, 1)
    except ValueError as error:
        raise ValidationFailed({"period": "A month as YYYY-MM."}) from error
    return first, date(year, month, monthrange(year, month)[1])


def _validity(programme: Programme, period: str) -> tuple[date, date]:
    first, last = period_bounds(period)
    if last < programme.starts_on or first > programme.ends_on:
        raise ValidationFailed({"period": f"Outside the programme's dates ({programme.starts_on} to "
                                          f"{programme.ends_on})."})
    return max(first, programme.starts_on), min(last, programme.ends_on)


def _require_active(programme: Programme) -> None:
    if programme.status != "active":
        raise ProgrammeNotActive(status=programme.status)


def _commit(programme: Programme, issuance: Issuance, amount_fen: int, actor, now: datetime) -> None:
    try:
        issuance.entry_id = ledger.commit_budget(programme_id=programme.id, amount_fen=amount_fen, now=now,
                                                 actor_id=getattr(actor, "id", None), reference_type="issuance",
                                                 reference_id=issuance.id)
    except ledger.InsufficientBudget as shortage:
        raise BudgetExceeded(shortfall_fen=shortage.shortfall_fen, required_fen=shortage.requested_fen,
                             available_fen=shortage.available_fen) from shortage


# --- issuance -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IssuanceResult:
    period: str
    recipients: int
    vouchers: int
    committed_fen: int
    already_issued: bool = False


def eligible_recipients(programme: Programme, first_day: date):
    """SQL condition on Recipient: active, inside the programme's region, old enough, tagged as required."""
    conditions = [Recipient.status == "active",
                  Recipient.region_code.startswith(region_prefix(programme.region_code))]
    min_age = programme.eligibility.get("min_age")
    if min_age:
        conditions.append(Recipient.birth_date <= date(first_day.year - min_age, first_day.month, 1))
    tags_any = programme.eligibility.get("tags_any") or []
    if tags_any:
        conditions.append(exists().where(RecipientTag.recipient_id == Recipient.id, RecipientTag.tag.in_(tags_any)))
    return and_(*conditions)


def _copay_percent_sql(programme: Programme):
    """SQL for copay_percent_for over the current Recipient row."""
    tag_percents = {tag: percent for tag, percent in programme.copay_percent.items() if tag != "default"}
    default = literal(programme.copay_percent["default"])
    if not tag_percents:
        return default
    lowest = (select(func.min(case(tag_percents, value=RecipientTag.tag)))
              .where(RecipientTag.recipient_id == Recipient.id, RecipientTag.tag.in_(list(tag_percents)))
              .scalar_subquery())
    return func.coalesce(lowest, default)


def issue_monthly(*, programme: Programme, period: str, actor, now: datetime) -> IssuanceResult:
    """Give every eligible recipient the monthly quota of every item, all or nothing, once per period.

    The vouchers are generated by one INSERT … SELECT; their total is then committed through the
    guarded budget function, and if it does not fit the whole transaction is refused.

    :raises ProgrammeNotActive: the programme is a draft or closed.
    :raises ValidationFailed: the period is not a month inside the programme's dates.
    :raises BudgetExceeded: the budget cannot cover the run (details.shortfall_fen); nothing is written.
    """
    _require_active(programme)
    valid_from, valid_until = _validity(programme, period)
    issuance = Issuance(programme_id=programme.id, kind="monthly", period=period, monthly_period=period,
                        created_at=now, created_by=getattr(actor, "id", None))
    try:
        with db.session.begin_nested():
            db.session.add(issuance)
    except IntegrityError:
        return IssuanceResult(period=period, recipients=0, vouchers=0, committed_fen=0, already_issued=True)

    max_quota = max(item.monthly_quota for item in programme.items)
    counter = select(literal(1).label("k")).cte("quota_counter", recursive=True)
    counter = counter.union_all(select((counter.c.k + 1).label("k")).where(counter.c.k < max_quota))
    copay = (ProgrammeItem.unit_price_fen * _copay_percent_sql(programme) + 99) // 100
    rows = (
        select(literal(programme.id), Recipient.id, ProgrammeItem.item_code, literal(issuance.id),
               ProgrammeItem.unit_price_fen - copay, copay, literal(valid_from), literal(valid_until),
               literal("issued"), literal(now), literal(now))
        .select_from(Recipient)
        .join(ProgrammeItem, and_(ProgrammeItem.programme_id == programme.id, true()))
        .join(counter, counter.c.k <= ProgrammeItem.monthly_quota)
        .where(eligible_recipients(programme, valid_from))
        # Free items (co-payment 100%) cost the bureau nothing and are not vouchers.
        .where(ProgrammeItem.unit_price_fen - copay > 0)
        .order_by(Recipient.id, ProgrammeItem.item_code, counter.c.k)
    )
    db.session.execute(insert(Voucher).from_select(
        ["programme_id", "recipient_id", "item_code", "issuance_id", "face_value_fen", "copay_fen", "valid_from",
         "valid_until", "status", "issued_at", "status_changed_at"], rows))
    return _finish_issuance(programme, issuance, actor, now)


def _finish_issuance(programme: Programme, issuance: Issuance, actor, now: datetime) -> IssuanceResult:
    vouchers, total, recipients = db.session.execute(
        select(func.count(), func.coalesce(func.sum(Voucher.face_value_fen), 0),
               func.count(func.distinct(Voucher.recipient_id))).where(Voucher.issuance_id == issuance.id)
    ).one()
    issuance.vouchers, issuance.committed_fen, issuance.recipients = vouchers, int(total), recipients
    if total:
        _commit(programme, issuance, int(total), actor, now)
    db.session.flush()
    audit.record(action=f"vouchers.issued_{issuance.kind}", entity="programme", entity_id=programme.id, actor=actor,
                 now=now, data={"issuance_id": issuance.id, "period": issuance.period, "vouchers": vouchers,
                                "recipients": recipients, "committed_fen": int(total)})
    return IssuanceResult(period=issuance.period, recipients=recipients, vouchers=vouchers, committed_fen=int(total))


def issue_supplementary(*, programme: Programme, recipient: Recipient, item_code: str, count: int, actor,
                        now: datetime) -> list[Voucher]:
    """Issue extra vouchers of one item to one recipient for the current month (same budget rule).

    :raises ProgrammeNotActive, ValidationFailed, BudgetExceeded: as for monthly issuance.
    """
    _require_active(programme)
    item = next((item for item in programme.items if item.item_code == item_code), None)
    if item is None:
        raise ValidationFailed({"item_code": "The programme does not buy this item."})
    if recipient.status != "active" or not covers(programme.region_code, recipient.region_code):
        raise ValidationFailed({"recipient_id": "The recipient is not active inside the programme's region."})
    period = f"{local_date(now):%Y-%m}"
    valid_from, valid_until = _validity(programme, period)
    copay = copay_fen(item.unit_price_fen, copay_percent_for(programme, recipient.tags))
    if item.unit_price_fen - copay <= 0:
        raise ValidationFailed({"item_code": "The recipient pays the whole price: there is nothing to issue."})
    issuance = Issuance(programme_id=programme.id, kind="supplementary", period=period, monthly_period=None,
                        created_at=now, created_by=getattr(actor, "id", None))
    db.session.add(issuance)
    db.session.flush()
    db.session.execute(insert(Voucher), [
        {"programme_id": programme.id, "recipient_id": recipient.id, "item_code": item_code,
         "issuance_id": issuance.id, "face_value_fen": item.unit_price_fen - copay, "copay_fen": copay,
         "valid_from": valid_from, "valid_until": valid_until, "status": "issued", "issued_at": now,
         "status_changed_at": now} for _ in range(count)])
    _finish_issuance(programme, issuance, actor, now)
    return db.session.scalars(select(Voucher).where(Voucher.issuance_id == issuance.id).order_by(Voucher.id)).all()


# --- revocation and expiry ------------------------------------------------------------------------

def _release_by_programme(released: dict[int, int], *, kind_reason: str, actor, now: datetime) -> None:
    for programme_id, amount in released.items():
        if amount:
            ledger.release_commitment(programme_id=programme_id, amount_fen=amount, now=now,
                                      actor_id=getattr(actor, "id", None), memo=kind_reason)


def _end_open_vouchers(condition, *, status: str, reason: str, actor, now: datetime) -> tuple[int, dict[int, int]]:
    """Move every issued voucher matching *condition* to *status*; release their value. Set-based."""
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
    _release_by_programme(released, kind_reason=f"{status}: {reason}", actor=actor, now=now)
    return count, released


def revoke_voucher(*, voucher: Voucher, reason: str, actor, now: datetime) -> Voucher:
    """Revoke one issued voucher and release its value. :raises InvalidTransition: it is not issued."""
    count, _released = _end_open_vouchers(Voucher.id == voucher.id, status="revoked", reason=reason, actor=actor,
                                          now=now)
    if not count:
        raise InvalidTransition(f"Only an issued voucher can be revoked; this one is {voucher.status}.")
    db.session.refresh(voucher)
    audit.record(action="voucher.revoked", entity="voucher", entity_id=voucher.id, actor=actor, now=now,
                 data={"reason": reason, "face_value_fen": voucher.face_value_fen})
    return voucher


def revoke_open_vouchers(*, reason: str, actor, now: datetime, programme_id: int | None = None,
                         recipient_id: int | None = None) -> int:
    """Revoke every issued voucher of a programme or of a recipient (closing, death, moving away)."""
    condition = Voucher.programme_id == programme_id if programme_id is not None else (
        Voucher.recipient_id == recipient_id)
    count, released = _end_open_vouchers(condition, status="revoked", reason=reason, actor=actor, now=now)
    if count:
        audit.record(action="vouchers.revoked", entity="programme" if programme_id else "recipient",
                     entity_id=programme_id or recipient_id, actor=actor, now=now,
                     data={"reason": reason, "vouchers": count, "released_fen": sum(released.values())})
    return count


def expire_vouchers(*, programme: Programme, actor, now: datetime) -> dict:
    """Expire the programme's issued vouchers whose validity has passed; release their value."""
    count, released = _end_open_vouchers(
        and_(Voucher.programme_id == programme.id, Voucher.valid_until < local_date(now)), status="expired",
        reason="validity ended", actor=actor, now=now)
    released_fen = sum(released.values())
    if count:
        audit.record(action="vouchers.expired", entity="programme", entity_id=programme.id, actor=actor, now=now,
                     data={"vouchers": count, "released_fen": released_fen})
    return {"expired": count, "released_fen": released_fen}


# --- reading --------------------------------------------------------------------------------------

def get_voucher(voucher_id: int, *, actor) -> Voucher:
    """:raises NotFound: no such voucher, or not the asking recipient's. :raises Forbidden: out of region."""
    voucher = db.session.get(Voucher, voucher_id)
    if voucher is None or (actor.role == "recipient" and voucher.recipient_id != actor.recipient_id):
        raise NotFound("No such voucher.")
    if actor.role == "admin" and actor.region_code is not None:
        programme = db.session.get(Programme, voucher.programme_id)
        if not covers(actor.region_code, programme.region_code):
            raise Forbidden("This voucher is outside your region.")
    return voucher


def list_vouchers(*, actor, page: int, per_page: int, recipient_id: int | None = None, status: str | None = None,
                  programme_id: int | None = None) -> dict:
    statement = select(Voucher).order_by(Voucher.id)
    if actor.role == "recipient":
        statement = statement.where(Voucher.recipient_id == actor.recipient_id)
    elif actor.region_code is not None:
        statement = statement.join(Programme, Programme.id == Voucher.programme_id).where(
            Programme.region_code.startswith(region_prefix(actor.region_code)))
    if recipient_id is not None:
        statement = statement.where(Voucher.recipient_id == recipient_id)
    if status is not None:
        statement = statement.where(Voucher.status == status)
    if programme_id is not None:
        statement = statement.where(Voucher.programme_id == programme_id)
    return paginate(statement, page=page, per_page=per_page)


# --- choice ---------------------------------------------------------------------------------------

def set_choice(*, recipient: Recipient, programme: Programme, item_code: str, provider_id: int, actor,
               now: datetime) -> Choice:
    """Record the recipient's free choice of provider for an item (rule 4); switches are kept.

    :raises ProviderNotEligible: not approved, not enrolled, not offering the item, or not serving the
        recipient's region.
    """
    if item_code not in {item.item_code for item in programme.items}:
        raise ValidationFailed({"item_code": "The programme does not buy this item."})
    if not covers(programme.region_code, recipient.region_code):
        raise ValidationFailed({"programme_id": "The recipient lives outside this programme's region."})
    provider = db.session.get(Provider, provider_id)
    reason = _ineligibility(provider, programme, item_code, recipient.region_code)
    if reason:
        raise ProviderNotEligible(reason, reason=reason)
    key = (recipient.id, programme.id, item_code)
    chosen_by = getattr(actor, "id", None)
    choice = _locked_choice(key)
    previous = choice.provider_id if choice else None
    if choice is None:
        choice = Choice(recipient_id=recipient.id, programme_id=programme.id, item_code=item_code,
                        provider_id=provider.id, chosen_at=now, chosen_by=chosen_by)
        try:
            with db.session.begin_nested():
                db.session.add(choice)
        except IntegrityError:  # a concurrent first choice of this service got in first: this one replaces it
            choice = _locked_choice(key)
            previous = choice.provider_id
    choice.provider_id, choice.chosen_at, choice.chosen_by = provider.id, now, chosen_by
    db.session.add(ChoiceEvent(recipient_id=recipient.id, programme_id=programme.id, item_code=item_code,
                               from_provider_id=previous, to_provider_id=provider.id, chosen_at=now,
                               chosen_by=chosen_by, acted_as=actor.role))
    db.session.flush()
    audit.record(action="choice.made", entity="recipient", entity_id=recipient.id, actor=actor, now=now,
                 data={"programme_id": programme.id, "item_code": item_code, "from_provider_id": previous,
                       "to_provider_id": provider.id, "acted_as": actor.role})
    return choice


def _locked_choice(key: tuple[int, int, str]) -> Choice | None:
    """The current choice of (recipient, programme, item), read only once it is ours to change.

    The no-op UPDATE takes the row's lock on PostgreSQL and the write lock on SQLite, so concurrent
    switches of one service queue and each one's history names the provider it really replaced. When
    it finds no row there is nothing to read: a row committed a moment later is not locked, so the
    caller inserts, and a concurrent first choice makes that insert fail instead.
    """
    recipient_id, programme_id, item_code = key
    locked = db.session.execute(
        update(Choice).where(Choice.recipient_id == recipient_id, Choice.programme_id == programme_id,
                             Choice.item_code == item_code)
        .values(provider_id=Choice.provider_id).execution_options(synchronize_session=False)).rowcount
    return db.session.get(Choice, key, populate_existing=True) if locked else None


def _ineligibility(provider: Provider | None, programme: Programme, item_code: str, region_code: str) -> str | None:
    if provider is None or provider.status != "approved":
        return "The provider is not approved."
    enrolled = db.session.scalar(select(Enrolment.id).where(Enrolment.programme_id == programme.id,
                                                            Enrolment.provider_id == provider.id))
    if enrolled is None:
        return "The provider is not enrolled in this programme."
    if item_code not in provider.item_codes:
        return "The provider does not offer this service."
    if not any(covers(code, region_code) for code in provider.region_codes):
        return "The provider does not serve the recipient's region."
    return None


def choices_of(recipient: Recipient) -> dict:
    current = db.session.scalars(select(Choice).where(Choice.recipient_id == recipient.id)
                                 .order_by(Choice.programme_id, Choice.item_code)).all()
    history = db.session.scalars(select(ChoiceEvent).where(ChoiceEvent.recipient_id == recipient.id)
                                 .order_by(ChoiceEvent.id)).all()
    return {"current": current, "history": history}


# --- presence codes and redemption ----------------------------------------------------------------

def create_presence_code(*, recipient_id: int, now: datetime) -> dict:
    token, expires_at = tokens.presence_token(recipient_id=recipient_id, now=now)
    return {"token": token, "expires_at": expires_at}


def redeem(*, actor, now: datetime, presence_token: str | None = None, item_code: str | None = None,
           voucher_token: str | None = None, delivered_at: datetime | None = None,
           duration_minutes: int | None = None, notes: str | None = None) -> Redemption:
    """Redeem a voucher for a service the actor's provider has delivered, in one transaction.

    With a presence code and an item: the recipient's earliest-expiring valid voucher of that item in a
    programme where this provider may serve them. With a voucher card: that voucher.

    This is the hot path (a scanner at every door): a successful scan is one guarded
    `UPDATE voucher … RETURNING` that also checks the programme, the provider and the choice, then the
    inserts of the redemption, its journal entry and its audit event. Why a scan was refused is worked
    out only after nothing matched.

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
    values = {"voucher_id": claimed.id, "programme_id": claimed.programme_id, "provider_id": provider_id,
              "recipient_id": claimed.recipient_id, "item_code": claimed.item_code, "scanned_by": actor.id,
              "presence": presence, "face_value_fen": claimed.face_value_fen, "copay_fen": claimed.copay_fen,
              "delivered_at": delivered_at, "duration_minutes": duration_minutes, "notes": notes,
              "status": "completed", "created_at": now}
    try:
        # No savepoint: a violation ends the whole transaction anyway (the caller rolls back). The
        # claim already made the voucher ours; the partial unique index stands behind it.
        redemption_id = db.session.connection().execute(_INSERT_REDEMPTION, values).scalar_one()
    except IntegrityError as error:
        raise VoucherAlreadyRedeemed() from error
    ledger.post_entry(programme_id=claimed.programme_id, kind="redemption",
                      lines={"committed": -claimed.face_value_fen, "redeemed": claimed.face_value_fen}, now=now,
                      actor_id=actor.id, reference_type="redemption", reference_id=redemption_id)
    audit.record(action="voucher.redeemed", entity="voucher", entity_id=claimed.id, actor=actor, now=now,
                 data={"redemption_id": redemption_id, "provider_id": provider_id, "presence": presence,
                       "face_value_fen": claimed.face_value_fen})
    # The row is exactly what was just written: attach it to the session without reading it back.
    redemption = Redemption(id=redemption_id, reversed_at=None, reversed_by=None, reversal_reason=None,
                            settlement_id=None, **values)
    make_transient_to_detached(redemption)
    db.session.add(redemption)
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


def _may_serve():
    """SQL condition on a voucher and its programme: the provider bound as :provider_id may redeem it.

    Where the programme requires a choice, the recipient must have chosen this provider for the item;
    otherwise any enrolled provider offering the item may serve them.
    """
    voucher, choice, enrolment, offered = (Voucher.__table__.c, Choice.__table__.c, Enrolment.__table__.c,
                                           ProviderItem.__table__.c)
    # correlate(voucher): these sit inside the EXISTS on programme, two levels below the voucher.
    chosen = exists().where(choice.recipient_id == voucher.recipient_id, choice.programme_id == voucher.programme_id,
                            choice.item_code == voucher.item_code, choice.provider_id == PROVIDER)
    enrolled_offering = and_(
        exists().where(enrolment.programme_id == voucher.programme_id, enrolment.provider_id == PROVIDER)
        .correlate(Voucher.__table__),
        exists().where(offered.provider_id == PROVIDER, offered.item_code == voucher.item_code)
        .correlate(Voucher.__table__))
    return case((Programme.__table__.c.choice_required, chosen.correlate(Voucher.__table__)),
                else_=enrolled_offering)


def _redeemable():
    """SQL condition on a voucher: issued, valid on :today, in an active programme, and the approved
    provider bound as :provider_id may serve its recipient."""
    voucher, programme, provider = Voucher.__table__.c, Programme.__table__.c, Provider.__table__.c
    return and_(
        voucher.status == "issued", voucher.valid_from <= TODAY, voucher.valid_until >= TODAY,
        exists().where(programme.id == voucher.programme_id, programme.status == "active", _may_serve()),
        exists().where(provider.id == PROVIDER, provider.status == "approved"))


# The statements of the hot path are built once, on table columns rather than ORM attributes, and run
# on the session's connection: SQLAlchemy reuses their compiled form and skips the ORM layer.
_VOUCHER, _REDEMPTION = Voucher.__table__, Redemption.__table__
_PROVIDER_STATUS = select(Provider.__table__.c.status).where(Provider.__table__.c.id == PROVIDER)
# The guarded state change issued → redeemed, only if nobody got there first and the scan is allowed.
_CLAIM = (update(_VOUCHER)
          .where(_VOUCHER.c.id == bindparam("voucher_id"), _redeemable())
          .values(status="redeemed", status_changed_at=bindparam("now", type_=UTCDateTime()))
          .returning(_VOUCHER.c.id, _VOUCHER.c.programme_id, _VOUCHER.c.recipient_id, _VOUCHER.c.item_code,
                     _VOUCHER.c.face_value_fen, _VOUCHER.c.copay_fen))
_CANDIDATES = (select(_VOUCHER.c.id)
               .where(_VOUCHER.c.recipient_id == bindparam("recipient_id"),
                      _VOUCHER.c.item_code == bindparam("item_code"), _redeemable())
               .order_by(_VOUCHER.c.valid_until, _VOUCHER.c.id).limit(MAX_CANDIDATES))
_INSERT_REDEMPTION = insert(_REDEMPTION).returning(_REDEMPTION.c.id)


def _claim(voucher_id: int, provider_id: int, today: date, now: datetime):
    """Run the guarded claim; the voucher's row (id, programme, recipient, item, values) or None."""
    return db.session.connection().execute(
        _CLAIM, {"voucher_id": voucher_id, "provider_id": provider_id, "today": today, "now": now}).one_or_none()


def _claim_card(voucher_id: int, provider_id: int, today: date, now: datetime):
    """Claim the voucher printed on a card. :raises: why it cannot be redeemed (see `redeem`)."""
    claimed = _claim(voucher_id, provider_id, today, now)
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
    params = {"recipient_id": recipient_id, "item_code": item_code, "provider_id": provider_id, "today": today}
    candidates = db.session.execute(_CANDIDATES, params).scalars().all()
    for voucher_id in candidates:
        claimed = _claim(voucher_id, provider_id, today, now)
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
    if db.session.execute(_PROVIDER_STATUS, {"provider_id": provider_id}).scalar() != "approved":
        raise RedeemerNotApproved()


def reverse_redemption(*, redemption: Redemption, reason: str, actor, now: datetime) -> Redemption:
    """Undo a redemption within the programme's reversal window: the voucher is issued again (or, in a
    closed programme or for a recipient who died or moved, revoked and its value released).

    :raises AlreadySettled: it is part of a settlement.
    :raises ReversalWindowClosed: the window has passed.
    :raises InvalidTransition: it was reversed already.
    """
    if redemption.status != "completed":
        raise InvalidTransition("This redemption was already reversed.")
    if redemption.settlement_id is not None:
        raise AlreadySettled()
    programme = db.session.get(Programme, redemption.programme_id)
    if now > redemption.created_at + timedelta(hours=programme.reversal_window_hours):
        raise ReversalWindowClosed(window_hours=programme.reversal_window_hours)
    reversed_rows = db.session.execute(
        update(Redemption).where(Redemption.id == redemption.id, Redemption.status == "completed",
                                 Redemption.settlement_id.is_(None))
        .values(status="reversed", reversed_at=now, reversed_by=actor.id, reversal_reason=reason)
        .execution_options(synchronize_session=False)).rowcount
    if reversed_rows != 1:
        raise InvalidTransition("The redemption changed meanwhile; reload it.")
    db.session.execute(update(Voucher).where(Voucher.id == redemption.voucher_id, Voucher.status == "redeemed")
                       .values(status="issued", status_changed_at=now, status_reason=f"reversed: {reason}")
                       .execution_options(synchronize_session=False))
    ledger.post_entry(programme_id=redemption.programme_id, kind="reversal",
                      lines={"redeemed": -redemption.face_value_fen, "committed": redemption.face_value_fen},
                      now=now, actor_id=actor.id, reference_type="redemption", reference_id=redemption.id)
    db.session.refresh(redemption)
    audit.record(action="redemption.reversed", entity="redemption", entity_id=redemption.id, actor=actor, now=now,
                 data={"voucher_id": redemption.voucher_id, "reason": reason,
                       "face_value_fen": redemption.face_value_fen})
    # A closed programme or a recipient who died or moved keeps no open voucher (their receivers revoked
    # them): the voucher given back here could never be used, so its value is released, not re-committed.
    recipient = db.session.get(Recipient, redemption.recipient_id)
    if programme.status != "active" or recipient.status != "active":
        why = "programme closed" if programme.status != "active" else f"recipient {recipient.status}"
        revoked, _released = _end_open_vouchers(Voucher.id == redemption.voucher_id, status="revoked",
                                                reason=f"reversed after {why}", actor=actor, now=now)
        if revoked:
            audit.record(action="voucher.revoked", entity="voucher", entity_id=redemption.voucher_id, actor=actor,
                         now=now, data={"reason": f"reversed after {why}",
                                        "face_value_fen": redemption.face_value_fen})
    return redemption


def get_redemption(redemption_id: int, *, actor) -> Redemption:
    """:raises NotFound: no such redemption, or another provider's / recipient's."""
    redemption = db.session.get(Redemption, redemption_id)
    if redemption is None or (actor.role == "provider" and redemption.provider_id != actor.provider_id) or (
            actor.role == "recipient" and redemption.recipient_id != actor.recipient_id):
        raise NotFound("No such redemption.")
    if actor.role == "admin" and actor.region_code is not None:
        programme = db.session.get(Programme, redemption.programme_id)
        if not covers(actor.region_code, programme.region_code):
            raise Forbidden("This redemption is outside your region.")
    return redemption


def list_redemptions(*, actor, page: int, per_page: int, provider_id: int | None = None,
                     programme_id: int | None = None, from_: datetime | None = None,
                     to: datetime | None = None) -> dict:
    statement = select(Redemption).order_by(Redemption.id)
    if actor.role == "provider":
        statement = statement.where(Redemption.provider_id == actor.provider_id)
    elif actor.role == "admin" and actor.region_code is not None:
        statement = statement.join(Programme, Programme.id == Redemption.programme_id).where(
            Programme.region_code.startswith(region_prefix(actor.region_code)))
    if provider_id is not None:
        statement = statement.where(Redemption.provider_id == provider_id)
    if programme_id is not None:
        statement = statement.where(Redemption.programme_id == programme_id)
    if from_ is not None:
        statement = statement.where(Redemption.delivered_at >= from_)
    if to is not None:
        statement = statement.where(Redemption.delivered_at < to)
    return paginate(statement, page=page, per_page=per_page)


def purge_used_presence_codes(*, now: datetime) -> int:
    """Forget nonces of presence codes that have expired anyway (an expired code is refused before reuse)."""
    return db.session.execute(
        delete(UsedPresenceCode).where(UsedPresenceCode.expires_at < now - CLOCK_SKEW)).rowcount


# --- ratings and complaints about redemptions (stored by the providers domain) -----------------------

def rate_redemption(*, redemption: Redemption, score: int, comment: str | None, source: str, actor,
                    now: datetime):
    """Rate a delivered service: by its recipient, or by an admin from a phone follow-up (回访).

    :raises Forbidden: not the recipient's own service, or an admin not marking a phone follow-up.
    :raises InvalidTransition: the redemption was reversed.
    :raises RatingWindowClosed, AlreadyRated: see providers.service.record_rating.
    """
    if actor.role == "recipient":
        if redemption.recipient_id != actor.recipient_id:
            raise Forbidden("Only the person who received the service may rate it.")
        if source != "recipient":
            raise ValidationFailed({"source": "Recipients rate as `recipient`."})
    elif actor.role == "admin":
        if source != "phone_followup":
            raise Forbidden("Admins record ratings only from a phone follow-up: send source `phone_followup`.")
    else:
        raise Forbidden()
    if redemption.status != "completed":
        raise InvalidTransition("A reversed redemption cannot be rated.")
    programme = db.session.get(Programme, redemption.programme_id)
    return provider_service.record_rating(
        redemption_id=redemption.id, provider_id=redemption.provider_id, programme_id=redemption.programme_id,
        item_code=redemption.item_code, recipient_id=redemption.recipient_id, delivered_at=redemption.delivered_at,
        rating_window_days=programme.rating_window_days, score=score, comment=comment, source=source, actor=actor,
        now=now)


def complain(*, provider_id: int, text: str, redemption_id: int | None, recipient_id: int | None, actor,
             now: datetime):
    """File a complaint against a provider, optionally about one redemption (recipients: their own only).

    :raises NotFound: unknown provider, or a redemption that is not the recipient's or not by that provider.
    """
    provider = db.session.get(Provider, provider_id)
    if provider is None:
        raise NotFound("No such provider.")
    if actor.role == "recipient":
        recipient_id = actor.recipient_id
    if redemption_id is not None:
        redemption = db.session.get(Redemption, redemption_id)
        if redemption is None or redemption.provider_id != provider.id or (
                recipient_id is not None and redemption.recipient_id != recipient_id):
            raise NotFound("No such redemption of yours by this provider.")
        recipient_id = redemption.recipient_id
    if recipient_id is not None and db.session.get(Recipient, recipient_id) is None:
        raise NotFound("No such recipient.")
    return provider_service.file_complaint(provider=provider, text=text, recipient_id=recipient_id,
                                           redemption_id=redemption_id, actor=actor, now=now)
