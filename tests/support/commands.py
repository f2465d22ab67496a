"""Reading what a `flask` command said: Click's test runner mixes its stderr — where the command's own log
lines go (marketplace.logs) — into `result.output`, so tests that read the command's words drop those."""

import re

LOG_LINE = re.compile(r"^(\{|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) )")


def said(text: str) -> list[str]:
    """The non-blank lines of a command's output that are not log lines."""
    return [line for line in text.splitlines() if line.strip() and not LOG_LINE.match(line)]
