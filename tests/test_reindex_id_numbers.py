"""Rotating ID_HASH_KEY with `flask --app wsgi reindex-id-numbers PATH` (marketplace/recipients/reindex.py): with
the old key in OLD_ID_HASH_KEY and the new one configured, every recipient in the file is found by ID number again
under the new key; a file that leaves recipients out writes nothing (unless --allow-partial) and says how many;
a second run changes nothing; a wrong old key moves nobody. Both databases."""

import secrets

import pytest
from sqlalchemy import select

from marketplace.audit.models import AuditEvent
from marketplace.db import db, utcnow
from marketplace.recipients import service as recipients
from marketplace.recipients.models import Recipient


def _csv(tmp_path, numbers, name="register.csv"):
    path = tmp_path / name
    path.write_text("name,id_number\n" + "".join(f"某人,{number}\n" for number in numbers), encoding="utf-8-sig")
    return path


def _found(build, number) -> int | None:
    def look():
        try:
            return recipients.lookup_by_id_number(id_number=number, actor=None, now=utcnow()).id
        except Exception:  # noqa: BLE001 — not found under the current key
            return None
    return build.read(look)


def _hashes(build) -> dict[int, str]:
    return build.read(lambda: dict(db.session.execute(select(Recipient.id, Recipient.id_number_hash)).all()))


@pytest.fixture
def rotated(app, build, monkeypatch):
    """Three recipients enrolled under the old key, then ID_HASH_KEY changed to a new one."""
    people = [build.recipient() for _ in range(3)]
    old_key = app.config["ID_HASH_KEY"]
    monkeypatch.setitem(app.config, "ID_HASH_KEY", secrets.token_hex(32))
    monkeypatch.setenv("OLD_ID_HASH_KEY", old_key)
    return people


def test_every_recipient_in_the_file_is_found_again_under_the_new_key(build, runner, rotated, tmp_path):
    assert _found(build, rotated[0].id_number) is None  # the new key cannot find anyone yet
    result = runner.invoke(args=["reindex-id-numbers", str(_csv(tmp_path, [p.id_number for p in rotated]))])
    assert result.exit_code == 0, result.output
    assert "moved 3" in result.output
    assert "still under the old key 0" in result.output
    assert [_found(build, p.id_number) for p in rotated] == [p.id for p in rotated]
    events = build.read(lambda: db.session.scalars(select(AuditEvent.data).where(
        AuditEvent.action == "recipients.reindexed")).all())
    assert len(events) == 1

    before = _hashes(build)
    again = runner.invoke(args=["reindex-id-numbers", str(_csv(tmp_path, [p.id_number for p in rotated]))])
    assert again.exit_code == 0, again.output
    assert "moved 0, already re-indexed 3" in again.output
    assert _hashes(build) == before


def test_a_file_that_leaves_someone_out_writes_nothing_unless_allowed(build, runner, rotated, tmp_path):
    before = _hashes(build)
    partial = _csv(tmp_path, [p.id_number for p in rotated[:2]])
    refused = runner.invoke(args=["reindex-id-numbers", str(partial)])
    assert refused.exit_code != 0
    assert "1 recipients are not in the file" in refused.output
    assert _hashes(build) == before

    allowed = runner.invoke(args=["reindex-id-numbers", str(partial), "--allow-partial"])
    assert allowed.exit_code == 0, allowed.output
    assert "still under the old key 1" in allowed.output
    assert _found(build, rotated[0].id_number) == rotated[0].id
    assert _found(build, rotated[2].id_number) is None


def test_a_wrong_old_key_moves_nobody(build, runner, rotated, tmp_path, monkeypatch):
    monkeypatch.setenv("OLD_ID_HASH_KEY", secrets.token_hex(32))
    before = _hashes(build)
    result = runner.invoke(args=["reindex-id-numbers", str(_csv(tmp_path, [p.id_number for p in rotated]))])
    assert result.exit_code != 0
    assert "not enrolled 3" in result.output
    assert _hashes(build) == before


def test_invalid_numbers_and_a_missing_old_key_are_refused(build, runner, rotated, tmp_path, monkeypatch):
    bad = runner.invoke(args=["reindex-id-numbers", str(_csv(tmp_path, [*(p.id_number for p in rotated),
                                                                          "51013119300101001X"]))])
    assert bad.exit_code != 0
    assert "invalid 1" in bad.output
    assert "line 5" in bad.output
    monkeypatch.delenv("OLD_ID_HASH_KEY")
    missing = runner.invoke(args=["reindex-id-numbers", str(_csv(tmp_path, [rotated[0].id_number]))])
    assert missing.exit_code != 0
    assert "OLD_ID_HASH_KEY is not set" in missing.output
