"""Recipients: enrolment one by one or by CSV, look-up within scope, status changes, logins.

Privacy: the ID number is parsed, turned into a blind index and a masked form, and dropped. It is
never stored, logged, put in an audit event or returned; error messages name the part that is wrong,
never the number.
"""

import csv
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from flask import current_app
from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError

from marketplace import audit, scope, transitions
from marketplace.auth import service as auth_service
from marketplace.db import db, insert_ignoring_conflicts, local_date, paginate
from marketplace.errors import DomainError, Forbidden, NotFound, ValidationFailed
from marketplace.recipients.idnumber import IdNumber, InvalidIdNumberError, parse_id_number
from marketplace.recipients.models import TAGS, Recipient, RecipientTag
from marketplace.regions import inside, is_region_code
from marketplace.schemas import UNSTORABLE_MESSAGE, unstorable_text
from marketplace.signals import recipient_departed

CSV_HEADER = ("name", "id_number", "phone", "region_code", "address", "tags")
PHONE_RE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
# The last 4 characters of a masked ID number (`510131********123X`), what people read off a card.
ID_TAIL_RE = re.compile(r"^[0-9]{3}[0-9Xx]$")
IMPORT_BATCH = 1000
MAX_REPORTED_ERRORS = 1000
# CSV cells do not pass the request schemas, which refuse text no column can store (NUL, lone surrogates):
# the same rule, applied here. (Decoding a file as UTF-8 never yields a surrogate; the CLI's callers may.)
# The statuses each status may be reached from: a person may move back; death is final.
ALLOWED_FROM = {"active": {"moved"}, "moved": {"active"}, "deceased": {"active", "moved"}}
# The statuses that take effect on a date (recipient.status_effective_on).
DEPARTED = ("moved", "deceased")


class InvalidIdNumber(DomainError):
    status, code, message = 422, "invalid_id_number", "The ID number is not valid."


class DuplicateRecipient(DomainError):
    status, code, message = 409, "duplicate_recipient", "A recipient with this ID number is already enrolled."


def id_number_hash(number: str) -> str:
    """The blind index of a normalised ID number: HMAC-SHA256 under ID_HASH_KEY."""
    key = current_app.config["ID_HASH_KEY"].encode("utf-8")
    return hmac.new(key, number.encode("ascii"), hashlib.sha256).hexdigest()


def _clean_phone(phone: str | None) -> tuple[str | None, str | None]:
    phone = (phone or "").strip() or None
    if phone is not None and not PHONE_RE.match(phone):
        return phone, "A mobile number (11 digits starting 1) or a landline with its area code."
    return phone, None


def _clean_address(address: str | None) -> tuple[str | None, str | None]:
    address = (address or "").strip() or None
    if address is not None and len(address) > 200:
        return address, "At most 200 characters."
    if address is not None and unstorable_text(address):
        return address, UNSTORABLE_MESSAGE
    return address, None


def _clean_tags(tags: Iterable[str]) -> tuple[list[str], str | None]:
    tags = sorted({tag.strip() for tag in tags if tag.strip()})
    unknown = [tag for tag in tags if tag not in TAGS]
    if unknown:
        return tags, f"Unknown tags: {', '.join(unknown)}; allowed: {', '.join(TAGS)}."
    return tags, None


@dataclass
class CheckedRecipient:
    id_number: IdNumber | None
    values: dict
    problems: dict[str, str]
    id_part: str | None = None  # which part of the ID number is wrong


def check_fields(*, name: str, id_number: str, phone: str | None, region_code: str, address: str | None,
                 tags: Iterable[str], actor, today: date) -> CheckedRecipient:
    """Apply every field rule; return the clean values and a message per bad field."""
    problems: dict[str, str] = {}
    parsed, id_part = None, None
    try:
        parsed = parse_id_number(id_number or "", today=today)
    except InvalidIdNumberError as error:
        problems["id_number"], id_part = error.message, error.part
    name = (name or "").strip()
    if not 1 <= len(name) <= 50:
        problems["name"] = "A name of 1 to 50 characters is required."
    elif unstorable_text(name):
        problems["name"] = UNSTORABLE_MESSAGE
    region_code = (region_code or "").strip()
    if not is_region_code(region_code):
        problems["region_code"] = "Not a GB/T 2260 region code (6 digits)."
    elif not scope.may_act_on(actor, region_code):
        problems["region_code"] = "Outside your region."
    phone, problems["phone"] = _clean_phone(phone)
    address, problems["address"] = _clean_address(address)
    tags, problems["tags"] = _clean_tags(tags)
    problems = {key: message for key, message in problems.items() if message}
    values = {"name": name, "phone": phone, "region_code": region_code, "address": address, "tags": tags}
    return CheckedRecipient(parsed, values, problems, id_part)


def create_recipient(*, name: str, id_number: str, phone: str | None, region_code: str, address: str | None,
                     tags: list[str], actor, now: datetime) -> Recipient:
    """Enrol one recipient.

    :raises InvalidIdNumber: the ID number fails GB 11643 (details.part names what is wrong).
    :raises ValidationFailed: another field is wrong.
    :raises Forbidden: the region is outside the admin's scope.
    :raises DuplicateRecipient: someone with this ID number is enrolled.
    """
    checked = check_fields(name=name, id_number=id_number, phone=phone, region_code=region_code, address=address,
                           tags=tags, actor=actor, today=now.date())
    problems = checked.problems
    if "id_number" in problems:
        raise InvalidIdNumber(problems["id_number"], part=checked.id_part,
                              fields={"id_number": [problems["id_number"]]})
    if problems.get("region_code") == "Outside your region.":
        raise Forbidden("This region is outside your scope.")
    if problems:
        raise ValidationFailed(problems)
    digest = id_number_hash(checked.id_number.number)
    existing = db.session.scalar(select(Recipient.id).where(Recipient.id_number_hash == digest))
    if existing is not None:
        raise DuplicateRecipient()
    values = checked.values
    recipient = Recipient(name=values["name"], id_number_hash=digest, id_number_masked=checked.id_number.masked,
                          birth_date=checked.id_number.birth_date, sex=checked.id_number.sex, phone=values["phone"],
                          region_code=values["region_code"], address=values["address"], status="active",
                          created_at=now, updated_at=now, tag_rows=[RecipientTag(tag=tag) for tag in values["tags"]])
    try:
        with db.session.begin_nested():
            db.session.add(recipient)
    except IntegrityError as error:
        raise DuplicateRecipient() from error
    audit.record(action="recipient.created", entity="recipient", entity_id=recipient.id, actor=actor, now=now,
                 region_code=recipient.region_code,
                 data={"id_number_masked": recipient.id_number_masked, "region_code": recipient.region_code,
                       "tags": values["tags"]})
    return recipient


def get_recipient(recipient_id: int, *, actor) -> Recipient:
    """The recipient, for an admin in scope or the recipient themself.

    :raises NotFound: no such recipient, or not the asking recipient's own record.
    :raises Forbidden: outside the admin's region.
    """
    recipient = db.session.get(Recipient, recipient_id)
    if actor.role == "recipient":
        if recipient is None or actor.recipient_id != recipient.id:
            raise NotFound("No such recipient.")
        return recipient
    if recipient is None:
        raise NotFound("No such recipient.")
    if actor.role != "admin":
        raise Forbidden()
    scope.require(actor, recipient.region_code, "This recipient")
    return recipient


def lookup_by_id_number(*, id_number: str, actor, now: datetime) -> Recipient:
    """The recipient with this ID number, found through the blind index, for an admin whose region holds them.

    The number is parsed, hashed and dropped: never stored, logged, audited or echoed. A recipient outside
    the admin's region is not found either (404, not 403): a number must not tell a county admin whether
    someone is enrolled elsewhere. The look-up is audited (who looked up whom), without the number.

    :raises InvalidIdNumber: not a GB 11643 number (details.part names what is wrong).
    :raises NotFound: nobody with this number inside the admin's region.
    """
    try:
        parsed = parse_id_number(id_number or "", today=now.date())
    except InvalidIdNumberError as error:
        raise InvalidIdNumber(error.message, part=error.part, fields={"id_number": [error.message]}) from None
    recipient = db.session.scalar(select(Recipient).where(Recipient.id_number_hash == id_number_hash(parsed.number)))
    if recipient is None or not scope.may_act_on(actor, recipient.region_code):
        raise NotFound("No recipient with this ID number in your region.")
    audit.record(action="recipient.looked_up", entity="recipient", entity_id=recipient.id, actor=actor, now=now,
                 region_code=recipient.region_code, data={"by": "id_number"})
    return recipient


def list_recipients(*, actor, page: int, per_page: int, region_code: str | None = None, status: str | None = None,
                    tag: str | None = None, q: str | None = None) -> dict:
    """Recipients inside the admin's region (a recipient: themself), filtered.

    *q* matches a part of the name or of the phone number, or exactly the last 4 characters of the masked ID
    number (`123X`, any case).
    """
    statement = recipients_query(actor=actor, region_code=region_code, status=status, tag=tag, q=q)
    return paginate(statement, page=page, per_page=per_page)


def recipients_query(*, actor, region_code: str | None = None, status: str | None = None, tag: str | None = None,
                     q: str | None = None):
    """The statement behind `list_recipients`, every page of it (the console's exports stream it)."""
    statement = select(Recipient).where(scope.within(actor, Recipient.region_code)).order_by(Recipient.id)
    if actor.role == "recipient":
        statement = statement.where(Recipient.id == actor.recipient_id)
    if region_code is not None:
        statement = statement.where(inside(region_code, Recipient.region_code))
    if status is not None:
        statement = statement.where(Recipient.status == status)
    if tag is not None:
        statement = statement.where(Recipient.tag_rows.any(RecipientTag.tag == tag))
    q = (q or "").strip()
    if q:
        matches = [Recipient.name.icontains(q, autoescape=True), Recipient.phone.contains(q, autoescape=True)]
        if ID_TAIL_RE.match(q):
            matches.append(Recipient.id_number_masked.endswith(q.upper(), autoescape=True))
        statement = statement.where(or_(*matches))
    return statement


def update_recipient(*, recipient: Recipient, actor, now: datetime, status: str | None = None,
                     effective_on: date | None = None, tags: list[str] | None = None, phone: str | None = None,
                     address: str | None = None) -> Recipient:
    """Change status, tags, phone or address; moving away or dying revokes open vouchers.

    A move or a death took effect on a local date, *effective_on* (today's when not given), kept in
    `status_effective_on`: services delivered after it are flagged (`served_after_exit`). It is cleared when
    the recipient comes back; given alone for a recipient who moved or died, it corrects the date.

    The status moves by a guarded UPDATE (marketplace.transitions), before anything else is written:
    of two racing changes (deceased ∥ moved) one wins and the other is refused.

    :raises InvalidTransition: a change the status cannot make (death is final: a deceased recipient's
        record accepts no status at all), or a racing change won.
    :raises ValidationFailed: a bad phone, address or tag; an effective date in the future, before the
        recipient was born, or for a recipient who is (or becomes) active.
    """
    problems: dict[str, str] = {}
    changes: dict = {}
    if phone is not None:
        phone, problems["phone"] = _clean_phone(phone)
        if phone != recipient.phone:
            changes["phone"] = "changed"  # the number itself is personal data: not in the audit trail
    if address is not None:
        address, problems["address"] = _clean_address(address)
        if address != recipient.address:
            changes["address"] = "changed"
    if tags is not None:
        tags, problems["tags"] = _clean_tags(tags)
        if tags != recipient.tags:
            changes["tags"] = {"from": recipient.tags, "to": tags}
    moving = status is not None and (status != recipient.status or recipient.status == "deceased")
    becomes = status if moving else recipient.status
    if effective_on is not None:
        problems["effective_on"] = _effective_on_problem(effective_on, recipient=recipient, status=becomes, now=now)
    problems = {key: message for key, message in problems.items() if message}
    if problems:
        raise ValidationFailed(problems)
    departed = False
    previous_date = recipient.status_effective_on
    if moving:
        effective = (effective_on or local_date(now)) if status in DEPARTED else None
        previous = transitions.move(recipient, to=status, allowed_from=ALLOWED_FROM[status], what="The recipient",
                                    values={"updated_at": now, "status_effective_on": effective})
        changes["status"] = {"from": previous, "to": status}
        departed = status in DEPARTED
    elif effective_on is not None and effective_on != previous_date:
        # A correction of the date alone, guarded like a status change: refused if the status moved meanwhile.
        transitions.move(recipient, to=recipient.status, allowed_from=DEPARTED, what="The recipient",
                         values={"updated_at": now, "status_effective_on": effective_on})
    if recipient.status_effective_on != previous_date:
        changes["status_effective_on"] = {"from": _iso(previous_date), "to": _iso(recipient.status_effective_on)}
    if "phone" in changes:
        recipient.phone = phone
    if "address" in changes:
        recipient.address = address
    if "tags" in changes:
        # Keep the rows of tags that stay: deleting and re-inserting one primary key in a single flush
        # would collide.
        current = set(recipient.tags)
        recipient.tag_rows = [row for row in recipient.tag_rows if row.tag in tags] + [
            RecipientTag(tag=tag) for tag in tags if tag not in current]
    if not changes:
        return recipient
    recipient.updated_at = now
    db.session.flush()
    if departed:
        recipient_departed.send(recipient, actor=actor, now=now, status=status)
    audit.record(action="recipient.updated", entity="recipient", entity_id=recipient.id, actor=actor, now=now,
                 region_code=recipient.region_code,
                 data=changes)
    return recipient


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def _effective_on_problem(effective_on: date, *, recipient: Recipient, status: str, now: datetime) -> str | None:
    """What is wrong with the date a move or a death took effect (None when it may be recorded).

    It may lie before the record was made (a death the bureau hears of late, someone enrolled from an old
    list): the date is what happened, and services after it are what the rule looks for.
    """
    if status not in DEPARTED:
        return "Only a move or a death takes effect on a date: leave it out for an active recipient."
    if effective_on > local_date(now):
        return "The date it took effect cannot be in the future."
    if effective_on < recipient.birth_date:
        return "The date it took effect cannot be before the recipient was born."
    return None


def create_account(*, recipient: Recipient, username: str, password: str, actor, now: datetime):
    """Give a recipient a login of their own (role `recipient`).

    :raises Forbidden: the recipient lives outside a region-limited admin's region.
    """
    scope.require(actor, recipient.region_code, "This recipient")
    return auth_service.create_user(username=username, password=password, role="recipient",
                                    recipient_id=recipient.id, actor=actor, now=now, scope_checked=True)


# --- CSV import -----------------------------------------------------------------------------------

@dataclass
class ImportResult:
    created: int = 0
    duplicates: int = 0
    rows: int = 0
    error_rows: int = 0
    errors: list[dict] = field(default_factory=list)


def import_recipients(*, text: Iterable[str], actor, now: datetime,
                      on_batch: Callable[[int], None] | None = None) -> ImportResult:
    """Import recipients from CSV text (header as in docs/domain.md#api-conventions), streaming, in the caller's
    transaction.

    Bad rows are reported as {row, field, message} with spreadsheet row numbers (the header is row 1)
    and skipped; rows whose ID number is already enrolled, or repeated in the file, are counted as
    duplicates and never created. Importing the same file again creates nothing.

    :raises ValidationFailed: the header is wrong or the file is not UTF-8 (nothing is imported).
    """
    result = ImportResult()
    reader = csv.reader(text)
    try:
        header = next(reader, None)
        if header is None or tuple(column.strip().lower() for column in header) != CSV_HEADER:
            raise ValidationFailed({"file": f"The first row must be the header {','.join(CSV_HEADER)}."})
        seen: set[str] = set()
        batch: list[tuple[str, IdNumber, dict]] = []
        for index, row in enumerate(reader):
            row_number = index + 2
            if not any(cell.strip() for cell in row):
                continue
            result.rows += 1
            if len(row) != len(CSV_HEADER):
                _report(result, row_number, "row", f"Expected {len(CSV_HEADER)} columns, found {len(row)}.")
                continue
            cells = dict(zip(CSV_HEADER, row, strict=True))
            checked = check_fields(name=cells["name"], id_number=cells["id_number"], phone=cells["phone"],
                                   region_code=cells["region_code"], address=cells["address"],
                                   tags=cells["tags"].split(";"), actor=actor, today=now.date())
            if checked.problems:
                result.error_rows += 1
                for field_name, message in checked.problems.items():
                    _report(result, row_number, field_name, message, count=False)
                continue
            digest = id_number_hash(checked.id_number.number)
            if digest in seen:
                result.duplicates += 1
                continue
            seen.add(digest)
            batch.append((digest, checked.id_number, checked.values))
            if len(batch) >= IMPORT_BATCH:
                _insert_batch(batch, result, now)
                batch = []
                if on_batch:
                    on_batch(result.rows)
        _insert_batch(batch, result, now)
    except UnicodeDecodeError as error:
        raise ValidationFailed({"file": "The file is not UTF-8 text."}) from error
    except csv.Error as error:
        raise ValidationFailed({"file": f"Not readable as CSV: {error}."}) from error
    if on_batch:
        on_batch(result.rows)
    audit.record(action="recipients.imported", entity="recipient", entity_id="import", actor=actor, now=now,
                 region_code=scope.limit_of(actor),
                 data={"rows": result.rows, "created": result.created, "duplicates": result.duplicates,
                       "error_rows": result.error_rows})
    return result


def _report(result: ImportResult, row: int, field_name: str, message: str, *, count: bool = True) -> None:
    if count:
        result.error_rows += 1
    if len(result.errors) < MAX_REPORTED_ERRORS:
        result.errors.append({"row": row, "field": field_name, "message": message})


def _insert_batch(batch: list[tuple[str, IdNumber, dict]], result: ImportResult, now: datetime) -> None:
    if not batch:
        return
    existing = set(db.session.scalars(
        select(Recipient.id_number_hash).where(Recipient.id_number_hash.in_([digest for digest, _, _ in batch]))
    ))
    fresh = [entry for entry in batch if entry[0] not in existing]
    result.duplicates += len(batch) - len(fresh)
    if not fresh:
        return
    rows = [{"name": values["name"], "id_number_hash": digest, "id_number_masked": parsed.masked,
             "birth_date": parsed.birth_date, "sex": parsed.sex, "phone": values["phone"],
             "region_code": values["region_code"], "address": values["address"], "status": "active",
             "created_at": now, "updated_at": now} for digest, parsed, values in fresh]
    # A concurrent import may have inserted some of these since the check above (on PostgreSQL it is
    # not yet visible to us): ON CONFLICT DO NOTHING waits for it and skips them, so they count as
    # duplicates instead of failing the whole import on the unique index.
    statement = insert_ignoring_conflicts(Recipient.__table__, Recipient.id_number_hash, Recipient.id)
    ids = dict(db.session.execute(statement, rows).all())
    result.duplicates += len(fresh) - len(ids)
    tag_rows = [{"recipient_id": ids[digest], "tag": tag}
                for digest, _, values in fresh if digest in ids for tag in values["tags"]]
    if tag_rows:
        db.session.execute(insert(RecipientTag), tag_rows)
    result.created += len(ids)
