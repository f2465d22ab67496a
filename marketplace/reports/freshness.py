"""Figures worth recomputing only every few minutes, remembered per worker process.

Some read models sum hundreds of thousands of rows (a county's month of redemptions, a year of vouchers)
for a number that moves slowly and that the page says is "as of" a time. They are kept here, per app
and worker, with the instant they were computed; each worker recomputes on its own after *seconds*.
"""

from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import TypeVar

from flask import current_app

T = TypeVar("T")


def remembered(name: str, key: Hashable, *, now: datetime, seconds: int,
               compute: Callable[[], T]) -> tuple[T, datetime]:
    """(value, computed_at): *compute()*'s value as of at most *seconds* before *now*."""
    cache = current_app.extensions.setdefault(f"remembered:{name}", {})
    found = cache.get(key)
    if found is not None and found[1] <= now < found[1] + timedelta(seconds=seconds):
        return found
    fresh = (compute(), now)
    cache[key] = fresh
    return fresh
