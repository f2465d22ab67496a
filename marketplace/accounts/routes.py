from marketplace.accounts import service
from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.auth.schemas import UserCreateSchema, UserSchema
from marketplace.db import transaction, utcnow

blp = Blueprint("accounts", __name__, url_prefix="/api/v1", description="Creating logins")


@blp.post("/users")
@blp.arguments(UserCreateSchema())
@blp.response(201, UserSchema)
@role_required("admin")
def create_user(data):
    """Create a login. Region-scoped admins may only create admins inside their region and recipient logins."""
    with transaction():
        return service.create_login(**data, actor=require_actor(), now=utcnow())
