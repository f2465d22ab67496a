"""Calendar arithmetic for the tests: months as `YYYY-MM` periods, their first and last days.

Plain functions of dates, no clock and no time zone: the scenario builder (tests/support/scenario.py)
turns them into instants in LOCAL_TIMEZONE and anchors them at today's local date.
"""

from calendar import monthrange
from datetime import date


def first_of_month(day: date, offset: int = 0) -> date:
    """The first day of the month *offset* months after *day*'s month."""
    index = day.year * 12 + day.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def last_of_month(day: date) -> date:
    return day.replace(day=monthrange(day.year, day.month)[1])


def month_of(day: date) -> str:
    """*day*'s month as a period, `YYYY-MM`."""
    return f"{day:%Y-%m}"


def period_days(period: str) -> tuple[date, date]:
    """The first and last day of the period `YYYY-MM`."""
    first = date.fromisoformat(f"{period}-01")
    return first, last_of_month(first)


def years_before(day: date, years: int) -> date:
    """The same calendar day *years* earlier (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)
