"""What civil-affairs staff read about the monthly cycle (`/staff/settlements`, `/staff/programmes/<id>/issue`,
`/expire`): settlements with their programme, provider and the people who drafted, approved and paid them;
the programme's monthly issues with who ran them. Reads only, scoped as the API's lists are
(`of_programmes_in_scope`); the previews of a run are the services' own (issuance.preview_monthly,
revocation.preview_expiry).
"""

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import aliased

from marketplace.auth.models import User
from marketplace.db import db
from marketplace.errors import NotFound
from marketplace.programmes.models import Programme
from marketplace.programmes.service import list_programmes, of_programmes_in_scope
from providers.models import Provider
from vouchers.models import Issuance, Settlement

SETTLEMENTS_PER_PAGE = 50
ISSUANCES_SHOWN = 24
PROGRAMMES_LISTED = 200


@dataclass(frozen=True)
class SettlementFilter:
    """The list's filter: every field optional."""

    programme_id: int | None = None
    period: str | None = None
    status: str | None = None

    def as_args(self) -> dict:
        return {name: value for name, value in (("programme_id", self.programme_id), ("period", self.period),
                                                ("status", self.status)) if value is not None}


@dataclass(frozen=True)
class SettlementRow:
    settlement: Settlement
    programme_name: str
    provider_name: str
    drafted_by: str | None
    approved_by: str | None
    paid_by: str | None


def _rows(actor, chosen: SettlementFilter):
    drafter, approver, payer = aliased(User), aliased(User), aliased(User)
    statement = (select(Settlement, Programme.name, Provider.name, drafter.username, approver.username,
                        payer.username)
                 .join(Programme, Programme.id == Settlement.programme_id)
                 .join(Provider, Provider.id == Settlement.provider_id)
                 .outerjoin(drafter, drafter.id == Settlement.created_by)
                 .outerjoin(approver, approver.id == Settlement.approved_by)
                 .outerjoin(payer, payer.id == Settlement.paid_by)
                 .where(of_programmes_in_scope(actor, Settlement.programme_id)))
    for column, value in ((Settlement.programme_id, chosen.programme_id), (Settlement.period, chosen.period),
                          (Settlement.status, chosen.status)):
        if value is not None:
            statement = statement.where(column == value)
    return statement.order_by(Settlement.period.desc(), Programme.id, Provider.name, Settlement.id)


def _row(found) -> SettlementRow:
    settlement, programme_name, provider_name, drafted, approved, paid = found
    return SettlementRow(settlement=settlement, programme_name=programme_name, provider_name=provider_name,
                         drafted_by=drafted, approved_by=approved, paid_by=paid)


def settlement_list(*, actor, chosen: SettlementFilter, page: int) -> dict:
    """A page of the settlements in the actor's scope, newest period first, in the list envelope with "pages".

    :raises NotFound: a page past the last.
    """
    statement = _rows(actor, chosen)
    total = db.session.scalar(select(db.func.count()).select_from(statement.order_by(None).subquery()))
    pages = max(1, -(-total // SETTLEMENTS_PER_PAGE))
    if page > pages:
        raise NotFound("No such page.")
    found = db.session.execute(statement.limit(SETTLEMENTS_PER_PAGE).offset((page - 1) * SETTLEMENTS_PER_PAGE))
    return {"items": [_row(row) for row in found], "page": page, "per_page": SETTLEMENTS_PER_PAGE, "total": total,
            "pages": pages}


def settlement_export(*, actor, chosen: SettlementFilter):
    """Every settlement the list shows (all its pages), streamed in batches."""
    for row in db.session.execute(_rows(actor, chosen).execution_options(yield_per=500)):
        yield _row(row)


def settlement_people(settlement: Settlement) -> dict[str, str | None]:
    """The usernames of who drafted, approved and paid *settlement* (None where nobody has)."""
    ids = {settlement.created_by, settlement.approved_by, settlement.paid_by} - {None}
    names = dict(db.session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    return {"drafted": names.get(settlement.created_by), "approved": names.get(settlement.approved_by),
            "paid": names.get(settlement.paid_by)}


def provider_name(provider_id: int) -> str:
    return db.session.scalar(select(Provider.name).where(Provider.id == provider_id)) or ""


def programmes_in_scope(*, actor) -> list[Programme]:
    """The programmes the actor may see, for the filters and the drafting form (newest first)."""
    listed = list_programmes(actor=actor, page=1, per_page=PROGRAMMES_LISTED)["items"]
    return sorted(listed, key=lambda programme: programme.id, reverse=True)


@dataclass(frozen=True)
class IssuanceRow:
    issuance: Issuance
    run_by: str | None


def monthly_issuances(*, programme: Programme) -> list[IssuanceRow]:
    """The programme's monthly runs, newest period first, with who ran each."""
    found = db.session.execute(
        select(Issuance, User.username).outerjoin(User, User.id == Issuance.created_by)
        .where(Issuance.programme_id == programme.id, Issuance.kind == "monthly")
        .order_by(Issuance.period.desc()).limit(ISSUANCES_SHOWN))
    return [IssuanceRow(issuance=issuance, run_by=username) for issuance, username in found]
