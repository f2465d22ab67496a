"""Creating logins for POST /users: the region-scope part of the decision, which needs to know where
the person a login belongs to lives (auth itself sits below recipients and cannot look)."""

from datetime import datetime

from marketplace.auth import scope
from marketplace.auth import service as auth_service
from marketplace.auth.models import User
from marketplace.db import db
from marketplace.errors import Forbidden
from marketplace.recipients.models import Recipient


def create_login(*, username: str, password: str, role: str, region_code: str | None = None,
                 provider_id: int | None = None, recipient_id: int | None = None, actor: User,
                 now: datetime) -> User:
    """Create a login with one role. A region-scoped admin creates only admins inside their region and
    logins of recipients who live there.

    :raises Forbidden: a region-scoped admin creating a login outside or above their region.
    :raises ValidationFailed, DuplicateUsername: see marketplace.auth.service.create_user.
    """
    _require_may_create(actor, role=role, region_code=region_code, recipient_id=recipient_id)
    return auth_service.create_user(username=username, password=password, role=role, region_code=region_code,
                                    provider_id=provider_id, recipient_id=recipient_id, actor=actor, now=now,
                                    scope_checked=True)


def _require_may_create(actor: User, *, role: str, region_code: str | None, recipient_id: int | None) -> None:
    if not scope.is_limited(actor):
        return
    if role == "admin" and region_code is not None and scope.may_act_on(actor, region_code):
        return
    if role == "recipient":
        recipient = db.session.get(Recipient, recipient_id) if recipient_id is not None else None
        if recipient is None:
            return  # create_user refuses the missing link with 422
        if scope.may_act_on(actor, recipient.region_code):
            return
    raise Forbidden("A region-scoped admin may only create admins and recipient logins inside their own region.")
