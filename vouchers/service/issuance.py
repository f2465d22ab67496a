"""Issuance: every eligible recipient's monthly quota in one set-based run, or extra vouchers for one.

Rule 1 (docs/domain.md): an issue commits its whole face value through the kernel's guarded
`commit_budget` in the same transaction, so it is all or nothing and never overspends, however many
runs race. The co-payment arithmetic lives here too, because issuance is where it is fixed: a
voucher's face value (what the bureau pays) and co-payment (what the recipient pays) never change
after issue.
"""

from calendar import monthrange
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import and_, case, exists, func, insert, literal, select, true
from sqlalchemy.exc import IntegrityError

from marketplace import audit
from marketplace.db import db, insert_from_select, local_date
from marketplace.errors import DomainError, ValidationFailed
from marketplace.programmes import ledger
from marketplace.programmes.models import Programme, ProgrammeItem
from marketplace.programmes.service import hold_active
from marketplace.recipients.models import Recipient, RecipientTag
from marketplace.regions import covers, inside
from marketplace.schemas import parse_period
from vouchers.models import Issuance, Voucher


class BudgetExceeded(DomainError):
    status, code, message = 409, "budget_exceeded", "The available budget cannot cover this issue; nothing was issued."


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
        year, month = parse_period(period)
    except ValueError as error:
        raise ValidationFailed({"period": "A month as YYYY-MM, from 1970-01 to 2199-12."}) from error
    return date(year, month, 1), date(year, month, monthrange(year, month)[1])


def voucher_validity(programme: Programme, period: str) -> tuple[date, date]:
    """The validity of a period's vouchers: the month, clipped to the programme's dates.

    :raises ValidationFailed: the period is not a month, or lies outside the programme.
    """
    first, last = period_bounds(period)
    if last < programme.starts_on or first > programme.ends_on:
        raise ValidationFailed({"period": f"Outside the programme's dates ({programme.starts_on} to "
                                          f"{programme.ends_on})."})
    return max(first, programme.starts_on), min(last, programme.ends_on)


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
    conditions = [Recipient.status == "active", inside(programme.region_code, Recipient.region_code)]
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


@dataclass(frozen=True)
class QuotaLines:
    """Every (eligible recipient, item) pair a monthly run pays for, as SQL: `select(*columns)` starts a
    statement over Recipient joined to the programme's items, already filtered; `face` and `copay` are
    each pair's voucher amounts. Issuance and its preview both read it, so they cannot disagree."""

    programme: Programme
    first_day: date

    @property
    def copay(self):
        return (ProgrammeItem.unit_price_fen * _copay_percent_sql(self.programme) + 99) // 100

    @property
    def face(self):
        return ProgrammeItem.unit_price_fen - self.copay

    def select(self, *columns):
        return (select(*columns).select_from(Recipient)
                .join(ProgrammeItem, and_(ProgrammeItem.programme_id == self.programme.id, true()))
                .where(eligible_recipients(self.programme, self.first_day))
                # Free items (co-payment 100%) cost the bureau nothing and are not vouchers.
                .where(self.face > 0))


@dataclass(frozen=True)
class IssuancePreview:
    """What a monthly run for *period* would do now, and what it would cost against what is available."""

    period: str
    recipients: int
    vouchers: int
    cost_fen: int
    available_fen: int
    done: Issuance | None  # the period's run, when there was one: a new run issues nothing

    @property
    def shortfall_fen(self) -> int:
        return max(0, self.cost_fen - self.available_fen)


def preview_monthly(*, programme: Programme, period: str) -> IssuancePreview:
    """Count what issue_monthly would issue for *period*, writing nothing (the same selection, summed).

    :raises ValidationFailed: the period is not a month inside the programme's dates.
    """
    valid_from, _valid_until = voucher_validity(programme, period)
    done = db.session.scalar(select(Issuance).where(Issuance.programme_id == programme.id,
                                                    Issuance.monthly_period == period))
    lines = QuotaLines(programme, valid_from)
    recipients, vouchers, cost = db.session.execute(lines.select(
        func.count(func.distinct(Recipient.id)), func.coalesce(func.sum(ProgrammeItem.monthly_quota), 0),
        func.coalesce(func.sum(lines.face * ProgrammeItem.monthly_quota), 0))).one()
    return IssuancePreview(period=period, recipients=int(recipients), vouchers=int(vouchers), cost_fen=int(cost),
                           available_fen=ledger.guarded_available(programme.id) or 0, done=done)


def issue_monthly(*, programme: Programme, period: str, actor, now: datetime) -> IssuanceResult:
    """Give every eligible recipient the monthly quota of every item, all or nothing, once per period.

    The vouchers are generated by one INSERT … SELECT; their total is then committed through the
    guarded budget function, and if it does not fit the whole transaction is refused.

    :raises ProgrammeNotActive: the programme is a draft or closed.
    :raises ValidationFailed: the period is not a month inside the programme's dates.
    :raises BudgetExceeded: the budget cannot cover the run (details.shortfall_fen); nothing is written.
    """
    hold_active(programme)
    valid_from, valid_until = voucher_validity(programme, period)
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
    lines = QuotaLines(programme, valid_from)
    rows = (
        lines.select(literal(programme.id).label("programme_id"), Recipient.id.label("recipient_id"),
                     ProgrammeItem.item_code.label("item_code"), literal(issuance.id).label("issuance_id"),
                     lines.face.label("face_value_fen"), lines.copay.label("copay_fen"),
                     literal(valid_from).label("valid_from"), literal(valid_until).label("valid_until"),
                     literal("issued").label("status"), literal(now).label("issued_at"),
                     literal(now).label("status_changed_at"))
        .join(counter, counter.c.k <= ProgrammeItem.monthly_quota)
        .order_by(Recipient.id, ProgrammeItem.item_code, counter.c.k)
    )
    db.session.execute(insert_from_select(insert(Voucher), rows))
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
                 region_code=programme.region_code,
                 now=now, data={"issuance_id": issuance.id, "period": issuance.period, "vouchers": vouchers,
                                "recipients": recipients, "committed_fen": int(total)})
    return IssuanceResult(period=issuance.period, recipients=recipients, vouchers=vouchers, committed_fen=int(total))


def issue_supplementary(*, programme: Programme, recipient: Recipient, item_code: str, count: int, actor,
                        now: datetime) -> list[Voucher]:
    """Issue extra vouchers of one item to one recipient for the current month (same budget rule).

    The admin's discretion: eligibility's `min_age` and `tags_any` are not applied, only that the
    recipient is active and lives inside the programme's region.

    :raises ProgrammeNotActive, ValidationFailed, BudgetExceeded: as for monthly issuance.
    """
    hold_active(programme)
    item = next((item for item in programme.items if item.item_code == item_code), None)
    if item is None:
        raise ValidationFailed({"item_code": "The programme does not buy this item."})
    if recipient.status != "active" or not covers(programme.region_code, recipient.region_code):
        raise ValidationFailed({"recipient_id": "The recipient is not active inside the programme's region."})
    period = f"{local_date(now):%Y-%m}"
    valid_from, valid_until = voucher_validity(programme, period)
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
