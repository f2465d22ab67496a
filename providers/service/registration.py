"""What a provider registering itself sees: the regions it may choose from, its standing while it waits
for the bureau's decision, and the news of a decision since its last login.

Registering is `registry.register_provider` (the same function as POST /api/v1/providers); deciding is
`qualification.change_status`. This module only reads.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from marketplace.auth.models import User
from marketplace.auth.service import normalise_username
from marketplace.db import db
from marketplace.programmes.models import Programme
from providers.creditcode import InvalidCreditCodeError, parse_credit_code
from providers.models import Provider, ProviderRegion, ProviderStatusChange
from providers.service.registry import find_own_provider


@dataclass(frozen=True)
class RegionChoice:
    """A region a provider may say it serves, with the programmes that buy services there."""

    code: str
    programmes: tuple[str, ...]


def region_choices() -> list[RegionChoice]:
    """The regions the system knows: those of programmes not closed, and those providers already serve."""
    named: dict[str, list[str]] = {}
    for code, name in db.session.execute(select(Programme.region_code, Programme.name)
                                         .where(Programme.status != "closed").order_by(Programme.id)):
        named.setdefault(code, []).append(name)
    for code in db.session.scalars(select(ProviderRegion.region_code).distinct()):
        named.setdefault(code, [])
    return [RegionChoice(code=code, programmes=tuple(names)) for code, names in sorted(named.items())]


@dataclass(frozen=True)
class Standing:
    """A provider as its own staff see it while waiting: the row and the latest decision about it."""

    provider: Provider
    latest: ProviderStatusChange | None

    @property
    def reason(self) -> str | None:
        """The reason of the latest decision (None while the registration awaits its first one)."""
        if self.latest is None or self.latest.from_status is None:
            return None
        return self.latest.reason


def standing(*, actor) -> Standing:
    """The provider of *actor* (a provider login) with its latest qualification decision.

    :raises NotFound: the login belongs to no provider.
    """
    provider = find_own_provider(actor.provider_id, actor=actor)
    return Standing(provider=provider, latest=_latest_change(provider.id))


def _latest_change(provider_id: int) -> ProviderStatusChange | None:
    return db.session.scalar(select(ProviderStatusChange).where(ProviderStatusChange.provider_id == provider_id)
                             .order_by(ProviderStatusChange.id.desc()).limit(1))


def decision_since(*, provider_id: int, since: datetime | None) -> ProviderStatusChange | None:
    """The provider's latest qualification decision (approve, revoke, suspend, reinstate) if it came after
    *since*, else None. The registration itself is no decision. *since* None: any decision."""
    latest = _latest_change(provider_id)
    if latest is None or latest.from_status is None:
        return None
    if since is not None and latest.at <= since:
        return None
    return latest


def is_own_registration(*, credit_code: str, username: str) -> bool:
    """Whether *username* is a login of the provider registered with *credit_code*: a registration form
    posted twice (a double tap, a reload) is the same registrant, not a duplicate."""
    try:
        code = parse_credit_code(credit_code).code
    except InvalidCreditCodeError:
        return False
    return db.session.scalar(
        select(User.id).join(Provider, Provider.id == User.provider_id)
        .where(Provider.credit_code == code, User.username == normalise_username(username), User.role == "provider")
    ) is not None
