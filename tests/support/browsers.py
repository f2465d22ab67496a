"""The browser of the console's tests: Debian's Chromium, driven by Playwright (pytest-playwright).

`playwright install` is never run (it downloads a browser of its own, which these machines cannot):
the tests launch the system's Chromium through `executable_path`. When it is missing, the browser
tests are skipped with the reason shown in the pytest header and summary — unless REQUIRE_BROWSER=1
(CI), where that is a failure, as REQUIRE_POSTGRES is for PostgreSQL.
"""

import os
import subprocess
from pathlib import Path

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))


def chromium_unavailable_reason() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium is there and starts."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium fonts-noto-cjk)"
    try:
        import playwright.sync_api  # noqa: F401 - only whether it imports
    except ImportError as error:
        return f"Playwright is not installed ({error}); pip install -e '.[test]'"
    return None


def chromium_version() -> str:
    """`Chromium 156.0…` as the binary reports it (for the pytest header), or what went wrong."""
    try:
        completed = subprocess.run([str(CHROMIUM), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return completed.stdout.strip().split(" built on ")[0] or "unknown"
