"""How the console writes money, days and instants: `¥1,234.50`, `2026年12月1日`, local time."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from flask import current_app
from flask_babel import get_locale


def money(fen: int | None) -> str:
    """Integer fen as yuan: 123450 → ¥1,234.50 (the sign before the ¥ when negative)."""
    if fen is None:
        return "—"
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def _chinese() -> bool:
    locale = get_locale()
    return locale is None or locale.language == "zh"


def _local(value: datetime) -> datetime:
    return value.astimezone(ZoneInfo(current_app.config["LOCAL_TIMEZONE"]))


def day(value: date | datetime | None) -> str:
    """A calendar day: 2026年12月1日 (zh), 1 December 2026 (en). An instant is first put in local time."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        value = _local(value).date()
    if _chinese():
        return f"{value.year}年{value.month}月{value.day}日"
    return format_date(value, "d MMMM y", locale="en")


def moment(value: datetime | None) -> str:
    """An instant in LOCAL_TIMEZONE: 2026年12月1日 14:05 (zh), 1 December 2026, 14:05 (en)."""
    if value is None:
        return "—"
    local = _local(value)
    if _chinese():
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
    return format_datetime(local, "d MMMM y, HH:mm", locale="en")


def period(value: str | None) -> str:
    """A settlement period "2026-12": 2026年12月 (zh), December 2026 (en)."""
    if not value:
        return "—"
    year, month = (int(part) for part in value.split("-"))
    if _chinese():
        return f"{year}年{month}月"
    return format_date(date(year, month, 1), "MMMM y", locale="en")


def percent(value: float | None, digits: int = 0) -> str:
    """0.853 → 85%."""
    if value is None:
        return "—"
    return f"{value * 100:.{digits}f}%"


FILTERS = {"money": money, "day": day, "moment": moment, "period": period, "percent": percent}
