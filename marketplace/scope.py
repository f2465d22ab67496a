"""Region scope: the one policy for what a region-limited admin may see and change.

An admin may carry a region code (GB/T 2260, see marketplace.regions). Such an admin sees and changes
only what lies inside that region; everything else is 403 `forbidden` when named, and left out of
lists. Nobody else is limited by region here: unscoped admins, auditors, the CLI (no actor) and the
public see every region, and what providers and recipients may see is decided by ownership, not by
region.

What "inside" means depends on where a thing is:
- a thing at one place (a programme, a recipient) is inside when the admin's region covers its code:
  a county admin (510131) does not see a city-wide programme (510100);
- a thing serving several places (a provider) is inside when one of its regions overlaps the admin's:
  a provider serving the whole city serves the county admin's county too;
- a thing of a programme (a voucher, a redemption, a settlement) is inside when its programme is.

Every getter, list and change in every domain asks this module; no domain compares prefixes itself.
"""

from collections.abc import Iterable

from sqlalchemy import ColumnElement, true

from marketplace.errors import Forbidden
from marketplace.regions import covers, inside, overlap, overlapping


def limit_of(actor) -> str | None:
    """The region code limiting *actor*, or None when the actor is not limited by region."""
    if actor is None or actor.role != "admin":
        return None
    return actor.region_code


def is_limited(actor) -> bool:
    return limit_of(actor) is not None


def may_act_on(actor, region_code: str) -> bool:
    """Whether *actor* may see and change a thing located at *region_code*."""
    return covers(limit_of(actor), region_code)


def may_act_on_any(actor, region_codes: Iterable[str]) -> bool:
    """Whether *actor* may see and change a thing serving *region_codes* (one overlapping is enough)."""
    limit = limit_of(actor)
    return limit is None or any(overlap(limit, code) for code in region_codes)


def require(actor, region_code: str, what: str = "This") -> None:
    """:raises Forbidden: *region_code* lies outside the actor's region."""
    if not may_act_on(actor, region_code):
        raise Forbidden(f"{what} is outside your region.")


def require_any(actor, region_codes: Iterable[str], what: str = "This") -> None:
    """:raises Forbidden: none of *region_codes* overlaps the actor's region."""
    if not may_act_on_any(actor, region_codes):
        raise Forbidden(f"{what} serves no region inside your scope.")


def require_unlimited(actor, message: str) -> None:
    """:raises Forbidden: the actor is limited to a region (for things shared by every region)."""
    if is_limited(actor):
        raise Forbidden(message)


def within(actor, region_column) -> ColumnElement[bool]:
    """SQL condition: the row's single region code (*region_column*) lies inside the actor's region."""
    limit = limit_of(actor)
    return true() if limit is None else inside(limit, region_column)


def overlaps_within(actor, prefix_column) -> ColumnElement[bool]:
    """SQL condition: a served region, stored as its prefix in *prefix_column*, overlaps the actor's region."""
    limit = limit_of(actor)
    return true() if limit is None else overlapping(limit, prefix_column)
