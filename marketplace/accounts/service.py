"""Creating logins for POST /users: who may create which login.

An admin without a region scope (or the CLI) creates logins of every role. A region-limited admin
creates only provider logins for providers serving part of their region and recipient logins for
people living in it — never admin or auditor logins, so that nobody can make themselves a second
admin to approve their own settlements (four eyes, vouchers.service.settlement). This looks at
recipients and providers, which auth (below them) cannot: it is composition, like reports.
"""

from datetime import datetime

from marketplace import scope
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.db import db
from marketplace.errors import Forbidden
from marketplace.recipients.models import Recipient
from providers.models import Provider


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
