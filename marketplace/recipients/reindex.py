"""Rotating ID_HASH_KEY: the blind index of every recipient's ID number moved from the old key to the new one.

ID numbers are never stored (docs/domain.md), so the index can only be rebuilt from the numbers themselves: the
civil-affairs register the recipients were imported from (a CSV with an `id_number` column, like the import's).
For each number the old key's digest is looked up and replaced by the new key's, in one transaction; the masked
number must agree as well, so that a wrong old key or a wrong file changes nothing. Running it again with the
same file changes nothing more (those recipients are counted as already re-indexed). Recipients whose number is
not in the file stay under the old key, cannot be found by ID number any more and are counted, so that the
operator sees the rotation is incomplete (docs/deployment.md, "Key rotation").
"""

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, select, update

from marketplace import audit
from marketplace.db import db, local_date
from marketplace.recipients.idnumber import InvalidIdNumberError, parse_id_number
from marketplace.recipients.models import Recipient
from marketplace.recipients.service import id_number_hash

BATCH = 1000


@dataclass
class ReindexResult:
    numbers: int = 0  # valid ID numbers read
    moved: int = 0  # recipients moved from the old key to the new one now
    already: int = 0  # recipients already under the new key (a second run, or enrolled since)
    unknown: int = 0  # numbers of nobody enrolled
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, why) of numbers that are not valid
    recipients: int = 0  # every recipient enrolled
    not_in_file: int = 0  # recipients neither moved nor already under the new key: still under the old key

    @property
    def complete(self) -> bool:
        return self.not_in_file == 0 and not self.invalid


def _old_digest(old_key: str, number: str) -> str:
    return hmac.new(old_key.encode("utf-8"), number.encode("ascii"), hashlib.sha256).hexdigest()


def reindex_id_numbers(*, numbers: Iterable[tuple[int, str]], old_key: str, now: datetime) -> ReindexResult:
    """Move the blind index of every recipient whose ID number is in *numbers* ((line, number) pairs) from
    *old_key* to the configured ID_HASH_KEY; count what could not be moved. Flushes, never commits."""
    result = ReindexResult()
    today = local_date(now)
    batch: list[dict] = []
    for line, raw in numbers:
        try:
            parsed = parse_id_number(raw.strip(), today=today)
        except InvalidIdNumberError as error:
            result.invalid.append((line, error.message))
            continue
        result.numbers += 1
        batch.append({"old": _old_digest(old_key, parsed.number), "new": id_number_hash(parsed.number),
                      "masked": parsed.masked})
        if len(batch) == BATCH:
            _move(batch, result)
            batch = []
    if batch:
        _move(batch, result)
    result.recipients = db.session.scalar(select(func.count()).select_from(Recipient)) or 0
    result.not_in_file = result.recipients - result.moved - result.already
    audit.record(action="recipients.reindexed", entity="recipient_index", entity_id="id_number_hash",
                 region_code=None, now=now,
                 data={"numbers": result.numbers, "moved": result.moved, "already": result.already,
                       "unknown": result.unknown, "invalid": len(result.invalid), "not_in_file": result.not_in_file})
    return result


def _move(batch: list[dict], result: ReindexResult) -> None:
    olds = {row["old"] for row in batch}
    news = {row["new"] for row in batch}
    found = dict(db.session.execute(select(Recipient.id_number_hash, Recipient.id_number_masked).where(
        Recipient.id_number_hash.in_(olds | news))).all())
    movable = [row for row in batch if found.get(row["old"]) == row["masked"] and row["new"] not in found]
    result.already += sum(1 for row in batch if row["new"] in found)
    result.unknown += sum(1 for row in batch if row["new"] not in found and row["old"] not in found)
    if movable:
        db.session.execute(
            update(Recipient.__table__).where(Recipient.id_number_hash == bindparam("old"),
                                              Recipient.id_number_masked == bindparam("masked"))
            .values(id_number_hash=bindparam("new")),
            [{"old": row["old"], "masked": row["masked"], "new": row["new"]} for row in movable])
        result.moved += len(movable)
