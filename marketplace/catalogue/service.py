"""Rules 2 and 3 of docs/domain.md: only catalogue services are bought; the negative list is refused."""

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from marketplace import audit, scope
from marketplace.catalogue.models import ITEM_CODE_PATTERN, NegativeListRule, ServiceCategory, ServiceItem
from marketplace.db import db
from marketplace.errors import DomainError, NotFound, ValidationFailed

# Every code an item may have (ItemCreateSchema): anything else names no item.
ITEM_CODE_RE = re.compile(ITEM_CODE_PATTERN)


class NegativeList(DomainError):
    status, code = 422, "negative_list"
    message = "This item is on the negative list and may never be bought as a service."


class DuplicateItem(DomainError):
    status, code, message = 409, "duplicate_item", "An item with this code exists."


def list_categories() -> list[ServiceCategory]:
    return db.session.scalars(select(ServiceCategory).order_by(ServiceCategory.position)).all()


def list_negative_list() -> list[NegativeListRule]:
    return db.session.scalars(select(NegativeListRule).order_by(NegativeListRule.code)).all()


def list_items(*, category_code: str | None = None) -> list[ServiceItem]:
    statement = select(ServiceItem).order_by(ServiceItem.code)
    if category_code is not None:
        statement = statement.where(ServiceItem.category_code == category_code)
    return db.session.scalars(statement).all()


def get_item(code: str) -> ServiceItem:
    """:raises NotFound: no item has this code."""
    item = db.session.scalar(select(ServiceItem).where(ServiceItem.code == code))
    if item is None:
        raise NotFound(f"No catalogue item {code!r}.")
    return item


def items_by_code(codes: list[str]) -> dict[str, ServiceItem]:
    """Return the catalogue items with these codes, keyed by code (missing codes are simply absent)."""
    if not codes:
        return {}
    return {item.code: item for item in db.session.scalars(select(ServiceItem).where(ServiceItem.code.in_(codes)))}


def create_item(*, code: str, name: str, category_code: str, unit: str, standard_price_fen: int, nature: str,
                description: str | None = None, default_duration_minutes: int | None = None, actor,
                now: datetime) -> ServiceItem:
    """Add a service item to the catalogue.

    :raises NegativeList: the nature is anything but `service` (details name the rule).
    :raises ValidationFailed: unknown category.
    :raises DuplicateItem: the code is taken.
    :raises Forbidden: a region-scoped admin (the catalogue is shared by every region).
    """
    scope.require_unlimited(
        actor, "The catalogue is shared by every region: only an admin without a region scope may change it.")
    if nature != "service":
        rule = db.session.get(NegativeListRule, nature)
        raise NegativeList(
            f"{rule.name}: {rule.reason}" if rule else "Only services may be bought.",
            rule={"code": rule.code, "name": rule.name, "reason": rule.reason} if rule else {"code": nature},
        )
    if db.session.get(ServiceCategory, category_code) is None:
        raise ValidationFailed({"category_code": "Not one of the six catalogue categories."})
    item = ServiceItem(code=code, name=name, category_code=category_code, unit=unit,
                       standard_price_fen=standard_price_fen, nature=nature, description=description,
                       default_duration_minutes=default_duration_minutes, created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(item)
    except IntegrityError as error:
        raise DuplicateItem() from error
    audit.record(action="catalogue.item_created", entity="service_item", entity_id=item.id, actor=actor, now=now,
                 region_code=None,
                 data={"code": code, "name": name, "category_code": category_code, "unit": unit,
                       "standard_price_fen": standard_price_fen, "default_duration_minutes": default_duration_minutes})
    return item


def update_item(*, code: str, default_duration_minutes: int | None, actor, now: datetime) -> ServiceItem:
    """Set (or clear, with None) how long one service of the item usually takes.

    :raises NotFound: no item has this code.
    :raises Forbidden: a region-scoped admin (the catalogue is shared by every region).
    """
    scope.require_unlimited(
        actor, "The catalogue is shared by every region: only an admin without a region scope may change it.")
    if not ITEM_CODE_RE.match(code):
        raise NotFound("No such catalogue item.")
    item = get_item(code)
    if item.default_duration_minutes == default_duration_minutes:
        return item
    previous = item.default_duration_minutes
    item.default_duration_minutes = default_duration_minutes
    db.session.flush()
    audit.record(action="catalogue.item_updated", entity="service_item", entity_id=item.id, actor=actor, now=now,
                 region_code=None,
                 data={"code": code, "default_duration_minutes": {"from": previous, "to": default_duration_minutes}})
    return item


def catalogue_overview() -> dict:
    """The whole catalogue for the public: each of the six categories with its items (empty ones too), and
    the negative list."""
    items = list_items()
    return {"categories": [{"category": category, "items": [item for item in items
                                                             if item.category_code == category.code]}
                           for category in list_categories()],
            "negative_list": list_negative_list()}
