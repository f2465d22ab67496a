"""The reference of benchmark 1: a minimal Flask app that redeems a voucher card in raw SQL.

    DATABASE_URL=… TOKEN_KEYS=… gunicorn --config gunicorn.conf.py bench.reference_app:app

It answers `POST /api/v1/redemptions {"voucher_token": …}` with the same database work as the real
app, and nothing else: no ORM, no schemas, no blueprints, no idempotency wrapper. Per request, in one
transaction (on SQLite begun with BEGIN IMMEDIATE, as the app does for writing requests):

1. the bearer token → its active provider login (one SELECT joining auth_token and user_account);
2. the voucher token's HMAC checked under TOKEN_KEYS (same format as vouchers/tokens.py);
3. the guarded claim `UPDATE voucher SET status='redeemed' … WHERE id=… AND status='issued'` within
   its validity, the programme active, the provider approved and chosen by the recipient for the item
   (or enrolled and offering it when the programme needs no choice), RETURNING the voucher's values;
4. INSERT the redemption, the journal entry and its two lines (committed → redeemed);
5. append the audit event to the hash chain (UPDATE audit_head … RETURNING, INSERT audit_event,
   UPDATE audit_head), hashed exactly as marketplace/audit/service.py does, so the chain still verifies;
6. COMMIT and answer 201 with the redemption as JSON.

A voucher that cannot be claimed gets 409. Each gunicorn thread keeps one database connection.
"""

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sqlite3
import struct
import threading
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Flask, jsonify, request

from vouchers.serials import serial_for

DATABASE_URL = os.environ["DATABASE_URL"]
IS_SQLITE = DATABASE_URL.startswith("sqlite")
LOCAL = ZoneInfo(os.environ.get("LOCAL_TIMEZONE") or "Asia/Shanghai")
KEYS = {int(kid): secret.encode() for kid, _, secret in
        (part.strip().partition(":") for part in os.environ["TOKEN_KEYS"].split(","))}
MAC_BYTES = 12
VOUCHER_KIND = 2

AUTH = """
SELECT u.id, u.username, u.provider_id FROM auth_token t JOIN user_account u ON u.id = t.user_id
WHERE t.token_hash = :digest AND t.kind = 'bearer' AND t.revoked_at IS NULL AND t.expires_at > :now
  AND u.active AND u.role = 'provider'
"""
CLAIM = """
UPDATE voucher SET status = 'redeemed', status_changed_at = :now
FROM programme p
WHERE voucher.id = :voucher AND voucher.status = 'issued' AND voucher.valid_from <= :today
  AND voucher.valid_until >= :today AND p.id = voucher.programme_id AND p.status = 'active'
  AND EXISTS (SELECT 1 FROM provider pr WHERE pr.id = :provider AND pr.status = 'approved')
  AND CASE WHEN p.choice_required THEN EXISTS (
        SELECT 1 FROM choice c WHERE c.recipient_id = voucher.recipient_id AND c.programme_id = voucher.programme_id
          AND c.item_code = voucher.item_code AND c.provider_id = :provider)
      ELSE EXISTS (SELECT 1 FROM enrolment e WHERE e.programme_id = voucher.programme_id
                   AND e.provider_id = :provider)
       AND EXISTS (SELECT 1 FROM provider_item i WHERE i.provider_id = :provider
                   AND i.item_code = voucher.item_code) END
RETURNING voucher.programme_id, voucher.recipient_id, voucher.item_code, voucher.face_value_fen, voucher.copay_fen
"""
INSERT_REDEMPTION = """
INSERT INTO redemption (voucher_id, programme_id, provider_id, recipient_id, item_code, scanned_by, presence,
                        face_value_fen, copay_fen, delivered_at, status, created_at)
VALUES (:voucher, :programme, :provider, :recipient, :item, :actor, 'voucher_card', :face, :copay, :now,
        'completed', :now)
RETURNING id
"""
INSERT_ENTRY = """
INSERT INTO journal_entry (programme_id, kind, reference_type, reference_id, created_at, actor_id)
VALUES (:programme, 'redemption', 'redemption', :reference, :now, :actor) RETURNING id
"""
INSERT_LINES = """
INSERT INTO journal_line (entry_id, programme_id, kind, account, amount_fen)
VALUES (:entry, :programme, 'redemption', 'committed', :minus), (:entry, :programme, 'redemption', 'redeemed', :face)
"""
HEAD_NEXT = "UPDATE audit_head SET last_id = last_id + 1 WHERE id = 1 RETURNING last_id, last_hash"
INSERT_EVENT = """
INSERT INTO audit_event (id, at, actor_id, actor, action, entity, entity_id, data, prev_hash, hash)
VALUES (:id, :at, :actor_id, :actor, 'voucher.redeemed', 'voucher', :entity_id, :data, :prev, :hash)
"""
HEAD_HASH = "UPDATE audit_head SET last_hash = :hash WHERE id = 1"


def _pg_style(statement: str) -> str:
    return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", statement)


if not IS_SQLITE:
    AUTH, CLAIM, INSERT_REDEMPTION, INSERT_ENTRY, INSERT_LINES, INSERT_EVENT, HEAD_HASH = (
        _pg_style(s) for s in (AUTH, CLAIM, INSERT_REDEMPTION, INSERT_ENTRY, INSERT_LINES, INSERT_EVENT, HEAD_HASH))

_local = threading.local()


def _connect():
    if IS_SQLITE:
        connection = sqlite3.connect(DATABASE_URL.removeprefix("sqlite:///"), isolation_level=None,
                                     check_same_thread=False)
        # The same durability as the app (SQLITE_SYNCHRONOUS, FULL unless a deployment opts out).
        synchronous = "NORMAL" if os.environ.get("SQLITE_SYNCHRONOUS") == "NORMAL" else "FULL"
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", f"synchronous={synchronous}"):
            connection.execute(f"PRAGMA {pragma}")
        return connection
    import psycopg
    from sqlalchemy import make_url
    return psycopg.connect(make_url(DATABASE_URL).set(drivername="postgresql").render_as_string(hide_password=False))


def connection():
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = _connect()
    return conn


def _instant(value: datetime):
    """How the app's UTCDateTime stores an instant: aware on PostgreSQL, naive UTC text on SQLite."""
    return value.replace(tzinfo=None).isoformat(" ", timespec="microseconds") if IS_SQLITE else value


def _day(value: date):
    return value.isoformat() if IS_SQLITE else value


def read_voucher_token(token: str) -> int | None:
    cleaned = token.strip().upper()
    if not cleaned or len(cleaned) > 80:
        return None
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 2 + 8 + MAC_BYTES or raw[0] != VOUCHER_KIND:
        return None
    key = KEYS.get(raw[1])
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if key is None or not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES], mac):
        return None
    return struct.unpack(">Q", body[2:])[0]


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(prev_hash: str, event: dict) -> str:
    body = canonical_json({**event, "at": event["at"].astimezone(UTC).isoformat(timespec="microseconds")})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


app = Flask(__name__)


@app.get("/api/v1/health")
def health():
    return {"status": "ok"}


def _error(status: int, code: str):
    return jsonify({"error": {"code": code, "message": code, "details": {}}}), status


@app.post("/api/v1/redemptions")
def redeem():
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    data = request.get_json(silent=True) or {}
    voucher_id = read_voucher_token(str(data.get("voucher_token", "")))
    if scheme.lower() != "bearer" or not raw:
        return _error(401, "unauthenticated")
    now = datetime.now(UTC)
    conn = connection()
    cursor = conn.cursor()
    try:
        if IS_SQLITE:
            cursor.execute("BEGIN IMMEDIATE")
        cursor.execute(AUTH, {"digest": hashlib.sha256(raw.strip().encode()).hexdigest(), "now": _instant(now)})
        user = cursor.fetchone()
        if user is None:
            conn.rollback()
            return _error(401, "unauthenticated")
        actor_id, username, provider_id = user
        if voucher_id is None:
            conn.rollback()
            return _error(422, "invalid_token")
        cursor.execute(CLAIM, {"voucher": voucher_id, "now": _instant(now), "today": _day(now.astimezone(LOCAL).date()),
                               "provider": provider_id})
        claimed = cursor.fetchone()
        if claimed is None:
            conn.rollback()
            return _error(409, "voucher_not_redeemable")
        programme_id, recipient_id, item_code, face, copay = claimed
        cursor.execute(INSERT_REDEMPTION, {"voucher": voucher_id, "programme": programme_id, "provider": provider_id,
                                           "recipient": recipient_id, "item": item_code, "actor": actor_id,
                                           "face": face, "copay": copay, "now": _instant(now)})
        redemption_id = cursor.fetchone()[0]
        cursor.execute(INSERT_ENTRY, {"programme": programme_id, "reference": str(redemption_id),
                                      "now": _instant(now), "actor": actor_id})
        entry_id = cursor.fetchone()[0]
        cursor.execute(INSERT_LINES, {"entry": entry_id, "programme": programme_id, "minus": -face, "face": face})
        event = {"actor_id": actor_id, "actor": username, "action": "voucher.redeemed", "entity": "voucher",
                 "entity_id": str(voucher_id), "at": now,
                 "data": canonical_json({"redemption_id": redemption_id, "provider_id": provider_id,
                                         "presence": "voucher_card", "face_value_fen": face})}
        cursor.execute(HEAD_NEXT)
        event_id, prev_hash = cursor.fetchone()
        digest = event_hash(prev_hash, {"id": event_id, **event})
        cursor.execute(INSERT_EVENT, {"id": event_id, "at": _instant(now), "actor_id": actor_id, "actor": username,
                                      "entity_id": event["entity_id"], "data": event["data"], "prev": prev_hash,
                                      "hash": digest})
        cursor.execute(HEAD_HASH, {"hash": digest})
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        cursor.close()
    return jsonify({"id": redemption_id, "voucher_id": voucher_id, "voucher_serial": serial_for(voucher_id),
                    "programme_id": programme_id, "provider_id": provider_id, "recipient_id": recipient_id,
                    "item_code": item_code, "presence": "voucher_card", "face_value_fen": face, "copay_fen": copay,
                    "delivered_at": now.isoformat(), "duration_minutes": None, "notes": None, "status": "completed",
                    "reversed_at": None, "reversal_reason": None, "settlement_id": None}), 201
