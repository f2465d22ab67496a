"""Accounts: who may create which login (POST /users), a provider's staff logins, deactivating a login."""
from marketplace.accounts import service
from marketplace.accounts.schemas import ProviderLoginSchema, StaffLoginCreateSchema
from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.auth.schemas import UserCreateSchema, UserSchema
from marketplace.db import transaction, utcnow
from marketplace.schemas import ReasonSchema, list_of

blp = Blueprint("accounts", __name__, url_prefix="/api/v1",
                description="Creating logins; a provider's staff logins; deactivating and reactivating logins")


@blp.post("/users")
@blp.arguments(UserCreateSchema())
@blp.response(201, UserSchema)
@role_required("admin")
def create_user(data):
    """Create a login. Region-scoped admins may only create admins inside their region and recipient logins."""
    with transaction():
        return service.create_login(**data, actor=require_actor(), now=utcnow())


@blp.get("/providers/<int:provider_id>/logins")
@blp.response(200, list_of(ProviderLoginSchema))
@role_required("admin", "auditor", "provider")
def list_provider_logins(provider_id):
    """The provider's logins: its manager (its first login) and its scanning staff.

    For the provider's manager (another provider's staff get 404, its own other staff 403), admins whose
    region the provider serves, and auditors.
    """
    return service.provider_logins(provider_id=provider_id, actor=require_actor())


@blp.post("/providers/<int:provider_id>/logins")
@blp.arguments(StaffLoginCreateSchema())
@blp.response(201, ProviderLoginSchema)
@role_required("admin", "provider")
def add_provider_login(data, provider_id):
    """Add a scanning staff login for this provider (its manager, or an admin in scope).

    Staff logins scan and see the work; only the manager manages logins. The password policy and
    409 `duplicate_username` are those of POST /users.
    """
    with transaction():
        return service.add_staff_login(provider_id=provider_id, **data, actor=require_actor(), now=utcnow())


@blp.post("/users/<int:user_id>/deactivate")
@blp.arguments(ReasonSchema())
@blp.response(200, UserSchema)
@role_required("admin", "provider")
def deactivate_user(data, user_id):
    """Deactivate a login: every bearer token and session of it is revoked at once (its next request is 401).

    A provider's manager deactivates its own provider's staff logins (any other login is 404 to it);
    admins in scope provider and recipient logins (admin and auditor logins: unscoped admins only).
    Nobody deactivates their own login (409 `cannot_deactivate_self`); a login already deactivated is
    409 `invalid_transition`. Audited as `user.deactivated` with the reason.
    """
    with transaction():
        return service.set_login_active(user_id=user_id, active=False, **data, actor=require_actor(), now=utcnow())


@blp.post("/users/<int:user_id>/reactivate")
@blp.arguments(ReasonSchema())
@blp.response(200, UserSchema)
@role_required("admin", "provider")
def reactivate_user(data, user_id):
    """Reactivate a deactivated login (who may: as for deactivate); its owner logs in again with the same
    password. An active login is 409 `invalid_transition`. Audited as `user.reactivated` with the reason."""
    with transaction():
        return service.set_login_active(user_id=user_id, active=True, **data, actor=require_actor(), now=utcnow())
