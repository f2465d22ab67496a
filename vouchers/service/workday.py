"""A provider's work, for its pages: today's and this month's services, the list of its redemptions
(filtered by item and by local dates, paged), the same list for export, and what a reversal would do.

Every query filters one provider's redemptions by delivery time (`ix_redemption_provider_delivered`),
so the pages stay cheap in a county with millions of redemptions; a page of the list is read with
one row more than it shows (is there a next page?) instead of counting the whole range.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, select

from marketplace.catalogue.models import ServiceItem
from marketplace.db import db, local_date
from marketplace.errors import ValidationFailed
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from providers.models import Provider, ProviderItem
from vouchers.models import Redemption
from vouchers.serials import serial_for
from vouchers.service.reversal import reversible_until

PER_PAGE = 50
EXPORT_BATCH = 2000
LONGEST_RANGE_DAYS = 366  # one export, one page range: at most a year


def _local_midnight(day) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).astimezone(UTC)


def _totals(provider_id: int, since: datetime, until: datetime, item_code: str | None = None) -> dict:
    statement = (select(func.count(), func.coalesce(func.sum(Redemption.face_value_fen), 0),
                        func.coalesce(func.sum(Redemption.copay_fen), 0))
                 .where(Redemption.provider_id == provider_id, Redemption.status == "completed",
                        Redemption.delivered_at >= since, Redemption.delivered_at < until))
    if item_code is not None:
        statement = statement.where(Redemption.item_code == item_code)
    count, face, copay = db.session.execute(statement).one()
    return {"count": int(count), "face_value_fen": int(face), "copay_fen": int(copay)}


def _item_names(codes) -> dict[str, str]:
    if not codes:
        return {}
    return dict(db.session.execute(select(ServiceItem.code, ServiceItem.name).where(ServiceItem.code.in_(codes))).all())


def provider_workday(*, actor, now: datetime) -> dict:
    """{today, month}: {count, face_value_fen, copay_fen} of the provider's completed services, and
    provider_status (a provider that is not approved may look at its work, but not serve)."""
    today = local_date(now)
    tomorrow = _local_midnight(today + timedelta(days=1))
    return {
        "provider_status": db.session.scalar(select(Provider.status).where(Provider.id == actor.provider_id)),
        "today": _totals(actor.provider_id, _local_midnight(today), tomorrow),
        "month": _totals(actor.provider_id, _local_midnight(today.replace(day=1)), tomorrow),
    }


# --- the list of redemptions ------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkFilter:
    """Which redemptions: of one item (None: all), delivered on the local days from *first* to *last*."""

    item_code: str | None
    first: date
    last: date

    def as_args(self) -> dict:
        """The filter as the list's query string writes it (for links to pages and exports)."""
        args = {"from": self.first.isoformat(), "to": self.last.isoformat()}
        if self.item_code:
            args["item"] = self.item_code
        return args


def work_filter(*, now: datetime, item_code: str | None = None, first: date | None = None,
                last: date | None = None) -> WorkFilter:
    """The filter asked for; by default this month up to today.

    :raises ValidationFailed: the last day is before the first, or the range is longer than a year.
    """
    today = local_date(now)
    first = first or (last or today).replace(day=1)
    last = last or max(today, first)
    if last < first:
        raise ValidationFailed({"to": "The last day is before the first."})
    if (last - first).days >= LONGEST_RANGE_DAYS:
        raise ValidationFailed({"to": f"At most {LONGEST_RANGE_DAYS} days at a time."})
    return WorkFilter(item_code=item_code or None, first=first, last=last)


@dataclass(frozen=True)
class WorkRow:
    """One redemption as the provider's list shows it (no recipient)."""

    redemption: Redemption
    item_name: str
    serial: str
    reversible_until: datetime | None  # None: it can no longer be reversed (reversed, settled, or too late)


def _selected(actor, chosen: WorkFilter):
    statement = select(Redemption).where(Redemption.provider_id == actor.provider_id,
                                         Redemption.delivered_at >= _local_midnight(chosen.first),
                                         Redemption.delivered_at < _local_midnight(chosen.last + timedelta(days=1)))
    if chosen.item_code is not None:
        statement = statement.where(Redemption.item_code == chosen.item_code)
    return statement.order_by(Redemption.delivered_at.desc(), Redemption.id.desc())


def _rows(redemptions, *, now: datetime) -> list[WorkRow]:
    names = _item_names({r.item_code for r in redemptions})
    windows = dict(db.session.execute(
        select(Programme.id, Programme.reversal_window_hours)
        .where(Programme.id.in_({r.programme_id for r in redemptions}))).all()) if redemptions else {}
    rows = []
    for r in redemptions:
        until = None
        if r.status == "completed" and r.settlement_id is None:
            until = reversible_until(r, window_hours=windows[r.programme_id])
            until = until if now <= until else None
        rows.append(WorkRow(redemption=r, item_name=names.get(r.item_code, r.item_code),
                            serial=serial_for(r.voucher_id), reversible_until=until))
    return rows


def redemption_page(*, actor, chosen: WorkFilter, page: int, now: datetime, per_page: int | None = None) -> dict:
    """{rows: [WorkRow], page, has_next, totals} — one page (of PER_PAGE) of the provider's redemptions,
    newest first, and the totals of the completed ones in the whole filter."""
    per_page = per_page or PER_PAGE
    found = db.session.scalars(_selected(actor, chosen).offset((page - 1) * per_page).limit(per_page + 1)).all()
    return {
        "rows": _rows(found[:per_page], now=now),
        "page": page,
        "has_next": len(found) > per_page,
        "totals": _totals(actor.provider_id, _local_midnight(chosen.first),
                          _local_midnight(chosen.last + timedelta(days=1)), chosen.item_code),
    }


def export_rows(*, actor, chosen: WorkFilter) -> Iterator[tuple[Redemption, str, str]]:
    """Every redemption of the filter, newest first, as (redemption, item name, serial), read in batches."""
    names = _item_names(set(db.session.scalars(select(ProviderItem.item_code)
                                               .where(ProviderItem.provider_id == actor.provider_id))))
    for r in db.session.scalars(_selected(actor, chosen).execution_options(yield_per=EXPORT_BATCH)):
        if r.item_code not in names:
            names.update(_item_names({r.item_code}) or {r.item_code: r.item_code})
        yield r, names[r.item_code], serial_for(r.voucher_id)


def provider_items(*, actor) -> list[tuple[str, str]]:
    """The items the provider offers, as (code, name), for the list's filter."""
    return db.session.execute(
        select(ServiceItem.code, ServiceItem.name).join(ProviderItem, ProviderItem.item_code == ServiceItem.code)
        .where(ProviderItem.provider_id == actor.provider_id).order_by(ServiceItem.code)).all()


# --- a reversal, before it is done -------------------------------------------------------------------

@dataclass(frozen=True)
class ReversalPreview:
    """What reversing *redemption* would do, for the confirmation page."""

    row: WorkRow
    voucher_returns: bool  # the voucher goes back to the recipient (else: the programme closed, or the
    #                        recipient left it — the voucher is revoked and its value released)
    recipient_hint: str  # the surname and stars (王**): enough to know whom to give a co-payment back


def reversal_preview(*, redemption: Redemption, now: datetime) -> ReversalPreview:
    """What a reversal of *redemption* would do now (the reversal service decides, this only tells)."""
    programme = db.session.get(Programme, redemption.programme_id)
    recipient = db.session.get(Recipient, redemption.recipient_id)
    return ReversalPreview(row=_rows([redemption], now=now)[0],
                           voucher_returns=programme.status == "active" and recipient.status == "active",
                           recipient_hint=recipient.name[:1] + "*" * max(1, len(recipient.name) - 1))
