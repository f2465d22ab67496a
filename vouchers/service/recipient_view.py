"""What a recipient's own pages show (the recipient's, or an admin's acting for them, 代办): read models
over their vouchers, choices, providers and past services, built from the same rules the API applies.

- `month_overview`: this month's vouchers per service, the provider chosen for each, and the one
  next step to take;
- `provider_options`: the providers the recipient may choose for a service, best first;
- `past_services`: services delivered to the recipient, with what can still be rated, and their complaints;
- `printable_cards`: the cards of the recipient's vouchers that can still be used.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select

from marketplace.catalogue.service import items_by_code
from marketplace.db import db, local_date
from marketplace.errors import NotFound
from marketplace.programmes.models import Programme
from marketplace.recipients.models import Recipient
from marketplace.regions import covers
from providers.models import Complaint, Provider, Rating
from providers.service.ranking import rankings
from vouchers.models import Choice, Redemption, Voucher
from vouchers.service import lookup

PAST_SERVICES_SHOWN = 60
COMPLAINTS_SHOWN = 20


@dataclass
class ServiceMonth:
    """One service (programme × item) of the recipient this month."""

    programme: Programme
    item_code: str
    item_name: str
    unit: str
    issued: int = 0  # this month's vouchers of the service, revoked ones left out
    left: int = 0  # of which still usable
    face_value_fen: int | None = None  # what the programme pays for one service
    copay_fen: int | None = None  # what the recipient pays the provider for one
    valid_until: date | None = None  # the last day the first of the vouchers left can be used
    provider: Provider | None = None  # the provider the recipient chose for it

    @property
    def used(self) -> int:
        return self.issued - self.left

    @property
    def needs_choice(self) -> bool:
        """The recipient must choose a provider before anyone may redeem these vouchers."""
        return self.programme.choice_required and self.provider is None and self.left > 0


@dataclass(frozen=True)
class NextStep:
    """The one thing to do next: `choose` a provider (for `service`), `show_code` when served, `rate` a service,
    wait for next month (`used_up`), or nothing to do (`no_vouchers`)."""

    kind: str
    service: ServiceMonth | None = None


@dataclass
class MonthOverview:
    today: date
    services: list[ServiceMonth]
    next_step: NextStep
    to_rate: int  # delivered services that can still be rated


def month_overview(*, recipient: Recipient, now: datetime) -> MonthOverview:
    """This month's vouchers of *recipient* per service, the chosen providers and the next step.

    A voucher belongs to this month when today lies in its validity; revoked ones are left out. A service
    with a chosen provider in an active programme is listed even when it has no voucher this month.
    """
    today = local_date(now)
    services: dict[tuple[int, str], ServiceMonth] = {}
    vouchers = db.session.scalars(
        select(Voucher).where(Voucher.recipient_id == recipient.id, Voucher.valid_from <= today,
                              Voucher.valid_until >= today, Voucher.status != "revoked")
        .order_by(Voucher.valid_until, Voucher.id)).all()
    choices = db.session.scalars(select(Choice).where(Choice.recipient_id == recipient.id)).all()
    programme_ids = {voucher.programme_id for voucher in vouchers} | {choice.programme_id for choice in choices}
    programmes = {programme.id: programme for programme in db.session.scalars(
        select(Programme).where(Programme.id.in_(programme_ids)))} if programme_ids else {}
    items = items_by_code(sorted({v.item_code for v in vouchers} | {c.item_code for c in choices}))

    def service(programme_id: int, item_code: str) -> ServiceMonth:
        key = (programme_id, item_code)
        if key not in services:
            item = items.get(item_code)
            services[key] = ServiceMonth(programme=programmes[programme_id], item_code=item_code,
                                         item_name=item.name if item else item_code, unit=item.unit if item else "")
        return services[key]

    for voucher in vouchers:
        row = service(voucher.programme_id, voucher.item_code)
        row.issued += 1
        if voucher.status == "issued":
            row.left += 1
            if row.face_value_fen is None:  # the earliest-expiring voucher left: the one used next
                row.face_value_fen, row.copay_fen, row.valid_until = (voucher.face_value_fen, voucher.copay_fen,
                                                                      voucher.valid_until)
    for voucher in vouchers:  # a service with nothing left shows what its vouchers were worth
        row = services[(voucher.programme_id, voucher.item_code)]
        if row.face_value_fen is None:
            row.face_value_fen, row.copay_fen, row.valid_until = (voucher.face_value_fen, voucher.copay_fen,
                                                                  voucher.valid_until)
    chosen = {choice.provider_id for choice in choices}
    providers = {provider.id: provider for provider in db.session.scalars(
        select(Provider).where(Provider.id.in_(chosen)))} if chosen else {}
    for choice in choices:
        listed = (choice.programme_id, choice.item_code) in services
        if programmes[choice.programme_id].status != "active" and not listed:
            continue  # a closed programme's choice with no voucher this month: nothing to do about it
        service(choice.programme_id, choice.item_code).provider = providers.get(choice.provider_id)
    listed = sorted(services.values(), key=lambda row: (row.programme.id, row.item_code))
    to_rate = len([row for row in past_services(recipient=recipient, now=now).services if row.can_rate])
    return MonthOverview(today=today, services=listed, next_step=_next_step(listed, to_rate), to_rate=to_rate)


def _next_step(services: list[ServiceMonth], to_rate: int) -> NextStep:
    """Choosing comes first (nobody may serve before it), then showing the code, then rating."""
    for row in services:
        if row.needs_choice:
            return NextStep("choose", row)
    if any(row.left for row in services):
        return NextStep("show_code")
    if to_rate:
        return NextStep("rate")
    return NextStep("used_up" if services else "no_vouchers")


@dataclass
class ProviderOption:
    """A provider the recipient may choose for the service, with what the ranking knows of it."""

    provider_id: int
    name: str
    kind: str
    rank: int
    ratings_count: int
    mean_score: float | None
    satisfaction_rate: float | None
    complaints_count: int  # upheld ones (the ranking's)
    switch_away_rate: float | None = None  # the ranking's: None under 5 recipients
    item_names: list[str] = field(default_factory=list)
    region_codes: list[str] = field(default_factory=list)


@dataclass
class ProviderOptions:
    programme: Programme
    item_code: str
    item_name: str
    current: Provider | None  # the provider chosen now (it may no longer be among the options)
    options: list[ProviderOption]

    def option(self, provider_id: int) -> ProviderOption | None:
        return next((option for option in self.options if option.provider_id == provider_id), None)


def provider_options(*, recipient: Recipient, item_code: str, programme_id: int | None = None,
                     now: datetime) -> ProviderOptions:
    """The providers *recipient* may choose for *item_code*, ranked (`providers.service.ranking`).

    The programme is the active one buying the item where the recipient lives (*programme_id* picks one
    when several do; by default the one the recipient has vouchers of this month, else the oldest). The
    options are exactly those `choice.set_choice` accepts: approved, enrolled, offering the item and
    serving the recipient's region.

    :raises NotFound: no active programme buys this item for the recipient (or not *programme_id*).
    """
    programme = _programme_for(recipient, item_code, programme_id, local_date(now))
    ranked = rankings(item_code=item_code, region_code=recipient.region_code, programme_id=programme.id)
    providers = {provider.id: provider for provider in db.session.scalars(
        select(Provider).where(Provider.id.in_([row["provider_id"] for row in ranked])))} if ranked else {}
    offered = sorted({code for provider in providers.values() for code in provider.item_codes} | {item_code})
    names = {code: item.name for code, item in items_by_code(offered).items()}
    options = [ProviderOption(
        provider_id=row["provider_id"], name=row["name"], kind=row["kind"], rank=row["rank"],
        ratings_count=row["ratings_count"], mean_score=row["mean_score"], satisfaction_rate=row["satisfaction_rate"],
        complaints_count=row["complaints_count"], switch_away_rate=row["switch_away_rate"],
        item_names=[names.get(code, code) for code in providers[row["provider_id"]].item_codes],
        region_codes=providers[row["provider_id"]].region_codes) for row in ranked]
    current_id = db.session.scalar(select(Choice.provider_id).where(
        Choice.recipient_id == recipient.id, Choice.programme_id == programme.id, Choice.item_code == item_code))
    current = db.session.get(Provider, current_id) if current_id is not None else None
    return ProviderOptions(programme=programme, item_code=item_code, item_name=names.get(item_code, item_code),
                           current=current, options=options)


def _programme_for(recipient: Recipient, item_code: str, programme_id: int | None, today: date) -> Programme:
    candidates = [programme for programme in db.session.scalars(
        select(Programme).where(Programme.status == "active").order_by(Programme.id))
        if covers(programme.region_code, recipient.region_code)
        and any(item.item_code == item_code for item in programme.items)]
    if programme_id is not None:
        candidates = [programme for programme in candidates if programme.id == programme_id]
    if not candidates:
        raise NotFound("No active programme buys this service where the recipient lives.")
    with_vouchers = set(db.session.scalars(select(Voucher.programme_id).where(
        Voucher.recipient_id == recipient.id, Voucher.item_code == item_code, Voucher.valid_from <= today,
        Voucher.valid_until >= today, Voucher.programme_id.in_([p.id for p in candidates]))))
    return next((programme for programme in candidates if programme.id in with_vouchers), candidates[0])


@dataclass
class PastService:
    """A service delivered to the recipient (a completed redemption) and where its rating stands."""

    redemption_id: int
    delivered_at: datetime
    item_code: str
    item_name: str
    provider_id: int
    provider_name: str
    rating_score: int | None
    rating_source: str | None
    rate_until: datetime  # the end of the programme's rating window
    can_rate: bool = False  # not rated yet, and inside the rating window

    @property
    def rated(self) -> bool:
        return self.rating_score is not None


@dataclass
class PastServices:
    services: list[PastService]
    providers: list[Provider]  # the providers the recipient may complain about: those who served or were chosen
    complaints: list[Complaint]
    provider_names: dict[int, str]  # of every provider above, and of those complained about


def past_services(*, recipient: Recipient, now: datetime) -> PastServices:
    """The services delivered to *recipient*, newest first, each with its rating or whether it can still be
    rated (no rating yet, inside the programme's rating window); the providers they may complain about and
    their latest complaints."""
    # Through the recipient's vouchers (indexed by recipient), then each voucher's redemptions (indexed by
    # voucher): a county's year of redemptions is never scanned for one person's services.
    rows = db.session.execute(
        select(Redemption, Rating.score, Rating.source, Programme.rating_window_days, Provider.name)
        .join(Voucher, Voucher.id == Redemption.voucher_id)
        .join(Programme, Programme.id == Redemption.programme_id)
        .join(Provider, Provider.id == Redemption.provider_id)
        .outerjoin(Rating, Rating.redemption_id == Redemption.id)
        .where(Voucher.recipient_id == recipient.id, Redemption.status == "completed")
        .order_by(Redemption.delivered_at.desc(), Redemption.id.desc()).limit(PAST_SERVICES_SHOWN)).all()
    items = items_by_code(sorted({row[0].item_code for row in rows}))
    services = []
    for redemption, score, source, window_days, provider_name in rows:
        item = items.get(redemption.item_code)
        service = PastService(
            redemption_id=redemption.id, delivered_at=redemption.delivered_at, item_code=redemption.item_code,
            item_name=item.name if item else redemption.item_code, provider_id=redemption.provider_id,
            provider_name=provider_name, rating_score=score, rating_source=source,
            rate_until=redemption.delivered_at + timedelta(days=window_days))
        service.can_rate = score is None and now <= service.rate_until
        services.append(service)
    provider_ids = {service.provider_id for service in services} | set(db.session.scalars(
        select(Choice.provider_id).where(Choice.recipient_id == recipient.id)))
    providers = db.session.scalars(select(Provider).where(Provider.id.in_(provider_ids)).order_by(Provider.name,
                                                                                                 Provider.id)).all()
    complaints = db.session.scalars(select(Complaint).where(Complaint.recipient_id == recipient.id)
                                    .order_by(Complaint.id.desc()).limit(COMPLAINTS_SHOWN)).all()
    names = {provider.id: provider.name for provider in providers}
    missing = {complaint.provider_id for complaint in complaints} - set(names)
    if missing:
        names.update(db.session.execute(select(Provider.id, Provider.name).where(Provider.id.in_(missing))).tuples())
    return PastServices(services=services, providers=list(providers), complaints=list(complaints),
                        provider_names=names)


@dataclass(frozen=True)
class PrintableCard:
    voucher: Voucher
    item_name: str
    token: str  # what the card's QR code carries
    lines: list[tuple[str, str, str]]  # vouchers.cards.card_lines: (label, text, plain text)


def printable_cards(*, recipient: Recipient, actor, now: datetime) -> list[PrintableCard]:
    """The cards of *recipient*'s vouchers that can still be used (issued, not past their validity), earliest
    expiring first, through the card endpoint's own logic (`lookup.voucher_card`: its checks, and its audit
    of a card an admin prints for the recipient)."""
    today = local_date(now)
    vouchers = db.session.scalars(
        select(Voucher).where(Voucher.recipient_id == recipient.id, Voucher.status == "issued",
                              Voucher.valid_until >= today)
        .order_by(Voucher.valid_until, Voucher.item_code, Voucher.id)).all()
    items = items_by_code(sorted({voucher.item_code for voucher in vouchers}))
    cards = []
    for voucher in vouchers:
        token, lines = lookup.voucher_card(voucher.id, actor=actor)
        item = items.get(voucher.item_code)
        cards.append(PrintableCard(voucher=voucher, item_name=item.name if item else voucher.item_code, token=token,
                                   lines=lines))
    return cards
