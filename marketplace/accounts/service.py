"""Creating logins (POST /users), a provider's staff logins, deactivating logins: who may do which.

An admin without a region scope (or the CLI) creates logins of every role. A region-limited admin
creates only provider logins for providers serving part of their region and recipient logins for
people living in it — never admin or auditor logins, so that nobody can make themselves a second
admin to approve their own settlements (four eyes, vouchers.service.settlement). This looks at
recipients and providers, which auth (below them) cannot: it is composition, like reports.
"""

from datetime import datetime

from sqlalchemy import select

from marketplace import scope
from marketplace.auth import service as auth_service
from marketplace.auth.access import require_provider_manager
from marketplace.auth.models import User
from marketplace.db import db
from marketplace.errors import Forbidden, NotFound
from marketplace.recipients.models import Recipient
from marketplace.regions import common_region
from providers.models import Provider
from providers.service import registry


def create_login(*, username: str, password: str, role: str, region_code: str | None = None,
                 provider_id: int | None = None, recipient_id: int | None = None, actor: User,
                 now: datetime) -> User:
    """Create a login with one role.

    :raises Forbidden: a region-limited admin creating an admin or auditor login, or a login of a
        recipient or provider outside their region.
    :raises ValidationFailed, DuplicateUsername: see marketplace.auth.service.create_user.
    """
    _require_may_create(actor, role=role, provider_id=provider_id, recipient_id=recipient_id)
    return auth_service.create_user(username=username, password=password, role=role, region_code=region_code,
                                    provider_id=provider_id, recipient_id=recipient_id, actor=actor, now=now,
                                    scope_checked=True)


def _require_may_create(actor: User, *, role: str, provider_id: int | None, recipient_id: int | None) -> None:
    if not scope.is_limited(actor):
        return
    if role in ("admin", "auditor"):
        raise Forbidden("Only an admin without a region scope creates admin and auditor logins.")
    # A missing link is left to create_user, which refuses it with 422 naming the field.
    if role == "recipient" and recipient_id is not None:
        recipient = db.session.get(Recipient, recipient_id)
        if recipient is not None:
            scope.require(actor, recipient.region_code, "This recipient")
    if role == "provider" and provider_id is not None:
        provider = db.session.get(Provider, provider_id)
        if provider is not None:
            scope.require_any(actor, provider.region_codes, "The provider")


# --- a provider's logins: its manager adds and deactivates its scanning staff ---------------------

def _provider_in_reach(provider_id: int, *, actor: User, manage: bool) -> Provider:
    """The provider whose logins *actor* reads (*manage*: changes).

    Its manager reads and changes them; its other staff neither (they scan and see the work); admins in
    scope read and change them, auditors read them.

    :raises NotFound: no such provider, or another provider's login asking.
    :raises Forbidden: a staff login that is not the manager; an admin out of region; an auditor changing.
    """
    provider = registry.find_own_provider(provider_id, actor=actor)
    if actor.role == "provider":
        require_provider_manager(actor, provider.id)
    elif actor.role not in (("admin",) if manage else ("admin", "auditor")):
        raise Forbidden()
    return provider


def provider_logins(*, provider_id: int, actor: User) -> list[User]:
    """Every login of the provider, its manager first, then oldest first.

    :raises NotFound, Forbidden: as `_provider_in_reach`.
    """
    provider = _provider_in_reach(provider_id, actor=actor, manage=False)
    return list(db.session.scalars(select(User).where(User.role == "provider", User.provider_id == provider.id)
                                   .order_by(User.provider_manager.desc(), User.id)))


def add_staff_login(*, provider_id: int, username: str, password: str, actor: User, now: datetime) -> User:
    """Add a scanning staff login for the provider (its manager, or an admin in scope).

    :raises NotFound, Forbidden: as `_provider_in_reach`.
    :raises ValidationFailed, DuplicateUsername: see marketplace.auth.service.create_user.
    """
    provider = _provider_in_reach(provider_id, actor=actor, manage=True)
    return auth_service.create_user(username=username, password=password, role="provider", provider_id=provider.id,
                                    actor=actor, now=now, scope_checked=True,
                                    home_region=common_region(provider.region_codes))


def login_in_reach(user_id: int, *, actor: User) -> tuple[User, str | None]:
    """The login *actor* may deactivate or reactivate, and the region its events belong to.

    A provider's manager: its own provider's logins (another provider's, or any other login, is 404, as
    if it did not exist). An admin: provider logins of providers overlapping its region, recipient
    logins of people inside it; admin and auditor logins only without a region scope.

    :raises NotFound: no such login, or not the manager's provider's.
    :raises Forbidden: a staff login that is not the manager; an admin out of region.
    """
    user = db.session.get(User, user_id)
    if actor.role == "provider":
        if user is None or user.role != "provider" or user.provider_id != actor.provider_id:
            raise NotFound("No such login.")
        require_provider_manager(actor, user.provider_id)
    elif actor.role != "admin":
        raise Forbidden()
    elif user is None:
        raise NotFound("No such login.")
    if user.role == "provider":
        regions = db.session.get(Provider, user.provider_id).region_codes
        scope.require_any(actor, regions, "The provider")
        return user, common_region(regions)
    if user.role == "recipient":
        region = db.session.get(Recipient, user.recipient_id).region_code
        scope.require(actor, region, "This recipient")
        return user, region
    scope.require_unlimited(actor, "Only an admin without a region scope deactivates admin and auditor logins.")
    return user, user.region_code


def set_login_active(*, user_id: int, active: bool, reason: str, actor: User, now: datetime) -> User:
    """Deactivate a login (every token and session of it dies at once) or reactivate it.

    :raises NotFound, Forbidden: as `login_in_reach`.
    :raises CannotDeactivateSelf, InvalidTransition: see marketplace.auth.service.set_active.
    """
    user, region = login_in_reach(user_id, actor=actor)
    return auth_service.set_active(user=user, active=active, reason=reason, actor=actor, now=now, region_code=region)
