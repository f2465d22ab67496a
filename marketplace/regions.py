"""Administrative division codes (GB/T 2260): six digits, two per level (province, city, county).

A code whose trailing pairs are "00" stands for the whole higher-level area: 510100 (成都市) covers
every code starting 5101, 510000 (四川省) every code starting 51. That prefix is what programme regions
and admin scopes match against.
"""

import re

from sqlalchemy import ColumnElement, literal, or_

# Province-level codes in use (GB/T 2260): the first two digits of every valid region code.
PROVINCE_CODES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43",
    "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
})
REGION_CODE_RE = re.compile(r"^\d{6}$")


def is_region_code(code: str) -> bool:
    return bool(REGION_CODE_RE.match(code)) and code[:2] in PROVINCE_CODES


def region_prefix(code: str) -> str:
    """The prefix a code stands for: 510131 → 510131, 510100 → 5101, 510000 → 51."""
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


def covers(area_code: str | None, code: str) -> bool:
    """Whether *area_code* (a code or prefix; None = everywhere) includes *code*."""
    return area_code is None or region_prefix(code).startswith(region_prefix(area_code))


def overlap(first: str, second: str) -> bool:
    """Whether two regions share ground: one of them covers the other (510100 and 510131 do)."""
    return covers(first, second) or covers(second, first)


def common_region(codes) -> str | None:
    """The narrowest region covering every code: 510131 and 510132 → 510100; None when only the whole
    country covers them (or there are none)."""
    prefixes = [region_prefix(code) for code in codes]
    if not prefixes:
        return None
    common = prefixes[0]
    for prefix in prefixes[1:]:
        while not prefix.startswith(common):
            common = common[:-2]
    return common.ljust(6, "0") if len(common) >= 2 else None


def inside(region_code: str, region_column) -> ColumnElement[bool]:
    """SQL condition: *region_column* holds a code that *region_code* covers."""
    return region_column.startswith(region_prefix(region_code))


def overlapping(region_code: str, prefix_column) -> ColumnElement[bool]:
    """SQL condition: a region stored as its prefix in *prefix_column* overlaps *region_code*."""
    prefix = region_prefix(region_code)
    return or_(prefix_column.startswith(prefix), literal(prefix).startswith(prefix_column))
