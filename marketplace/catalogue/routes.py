from marketplace.api import Blueprint
from marketplace.auth.access import require_actor, role_required
from marketplace.catalogue import service
from marketplace.catalogue.schemas import (
    CategorySchema,
    ItemCreateSchema,
    ItemQuerySchema,
    ItemSchema,
    ItemUpdateSchema,
    NegativeListRuleSchema,
)
from marketplace.db import transaction, utcnow

blp = Blueprint("catalogue", __name__, url_prefix="/api/v1/catalogue",
                description="The guidance catalogue (指导目录) and the negative list (负面清单)")


@blp.get("/categories")
@blp.response(200, CategorySchema(many=True))
def list_categories():
    """The six categories of the guidance catalogue."""
    return service.list_categories()


@blp.get("/negative-list")
@blp.response(200, NegativeListRuleSchema(many=True))
def list_negative_list():
    """What may never be bought with service money, and why."""
    return service.list_negative_list()


@blp.get("/items")
@blp.arguments(ItemQuerySchema(), location="query")
@blp.response(200, ItemSchema(many=True))
def list_items(query):
    """Catalogue service items with their standard prices."""
    return service.list_items(**query)


@blp.post("/items")
@blp.arguments(ItemCreateSchema())
@blp.response(201, ItemSchema)
@role_required("admin")
def create_item(data):
    """Add a service item; any nature but `service` is refused with 422 `negative_list`."""
    with transaction():
        return service.create_item(**data, actor=require_actor(), now=utcnow())


@blp.patch("/items/<string:code>")
@blp.arguments(ItemUpdateSchema())
@blp.response(200, ItemSchema)
@role_required("admin")
def update_item(data, code):
    """Set how long one service of the item usually takes (`default_duration_minutes`, null clears it)."""
    with transaction():
        return service.update_item(code=code, **data, actor=require_actor(), now=utcnow())
