"""The console's translations: the catalog template is current, English is complete, the compiled
catalog matches its source. zh_CN is the source language (the messages are written in Chinese)."""

import io
import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "marketplace" / "web" / "translations"
EN_PO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.po"
EN_MO = TRANSLATIONS / "en" / "LC_MESSAGES" / "messages.mo"
PLACEHOLDER = re.compile(r"%\(\w+\)s")
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "lazy_gettext": None, "_l": None}
METHODS = [("marketplace/**.py", "python"), ("providers/**.py", "python"), ("vouchers/**.py", "python"),
           ("**/templates/**.html", "jinja2")]


def _extracted() -> set[str]:
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), METHODS, keywords=KEYWORDS):
        if "/.venv/" in _file or _file.startswith(".venv") or _file.startswith("tests"):
            continue
        found.add(message if isinstance(message, str) else message[0])
    return found


def _english():
    with EN_PO.open("rb") as source:
        return read_po(source, locale="en")


def test_every_message_in_the_code_is_in_the_english_catalog():
    catalog_ids = {message.id for message in _english() if message.id}
    missing = sorted(_extracted() - catalog_ids)
    assert missing == [], "run `make translations` and translate the new messages"


def test_english_is_complete_not_fuzzy_and_keeps_the_placeholders():
    catalog = _english()
    assert not catalog.fuzzy, "the catalog header is marked fuzzy: pybabel compile would skip it"
    problems = []
    for message in catalog:
        if not message.id:
            continue
        if not message.string or message.fuzzy:
            problems.append(f"untranslated or fuzzy: {message.id}")
        elif sorted(PLACEHOLDER.findall(message.id)) != sorted(PLACEHOLDER.findall(message.string)):
            problems.append(f"placeholders differ: {message.id}")
    assert problems == []


def test_the_compiled_catalog_is_current():
    compiled = io.BytesIO()
    write_mo(compiled, _english())
    assert EN_MO.read_bytes() == compiled.getvalue(), "run `make translations` to recompile"
