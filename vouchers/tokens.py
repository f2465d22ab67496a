"""Signed tokens for redemption: presence codes (a recipient shows them) and voucher cards (printed).

Compact binary, then base32, so a token fits a small QR code (alphanumeric mode, version ≤ 3 at
error correction M) and carries no personal data:

    presence: kind 1 | key id | recipient id (4) | expires (4, unix seconds) | nonce (8) | mac (12)
    voucher:  kind 2 | key id | voucher id (8)                                           | mac (12)

The mac is HMAC-SHA256 truncated to 96 bits under the key named by the key id (TOKEN_KEYS: the first
key signs, every listed key verifies, so keys rotate without invalidating printed cards; read by
marketplace.config.parse_token_keys, which the app also runs when it starts). A presence code lives
PRESENCE_CODE_TTL_SECONDS and works once: its nonce is recorded when it is used.

A token has one spelling (read in any case, around any whitespace): base32 without padding, the
unused low bits of its last character zero. A voucher token's 22 bytes take 36 characters, 4 bits
more than they need, so 16 different last characters would otherwise decode to the same card; a
presence code's 30 bytes fill its 48 characters exactly. Any other spelling is `InvalidToken`.

A presence code also has a short form to type in where a QR code cannot be scanned: 8 random digits
(shown `1234 5678`). They carry nothing, so they are looked up: the database keeps only their keyed
hash, HMAC-SHA256 under a key derived from each TOKEN_KEYS secret (`short_code_hashes`). TOKEN_KEYS,
not ID_HASH_KEY: whoever holds a token key can already forge any presence code, so a short code's
hash needs no secret of its own — while ID_HASH_KEY guards recipients' ID numbers, must never rotate
and is better used for nothing else. The derivation (HMAC of the secret with a fixed label) keeps the
hash from ever equalling a token's mac. Every listed key is tried, so codes issued just before a key
rotation still work for their two minutes.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

from marketplace.config import parse_token_keys
from marketplace.errors import DomainError

PRESENCE, VOUCHER = 1, 2
MAC_BYTES = 12
SHORT_CODE_DIGITS = 8
SHORT_CODE_LABEL = b"marketplace presence short code v1"


class InvalidToken(DomainError):
    status, code, message = 422, "invalid_token", "The code is not a valid presence code or voucher card."


class TokenExpired(DomainError):
    status, code, message = 422, "token_expired", "The presence code has expired; ask for a new one."


@dataclass(frozen=True)
class PresenceClaims:
    recipient_id: int
    expires_at: datetime
    nonce: str


def _keys() -> dict[int, bytes]:
    return dict(parse_token_keys(current_app.config["TOKEN_KEYS"]))


def _signing_key() -> tuple[int, bytes]:
    return parse_token_keys(current_app.config["TOKEN_KEYS"])[0]


def _encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def _seal(kind: int, payload: bytes) -> str:
    kid, key = _signing_key()
    body = struct.pack(">BB", kind, kid) + payload
    mac = hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]
    return _encode(body + mac)


def _open(token: str, kind: int) -> bytes:
    cleaned = token.strip().upper()
    if not cleaned or len(cleaned) > 80:
        raise InvalidToken()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as error:
        raise InvalidToken() from error
    if _encode(raw) != cleaned:
        raise InvalidToken()  # padded, or unused bits set: not the spelling this service printed
    if len(raw) < 2 + MAC_BYTES or raw[0] != kind:
        raise InvalidToken()
    key = _keys().get(raw[1])
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if key is None or not hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES], mac):
        raise InvalidToken()
    return body[2:]


def presence_token(*, recipient_id: int, now: datetime) -> tuple[str, datetime]:
    """A fresh presence code for the recipient and the instant it stops working."""
    token, claims = issue_presence_token(recipient_id=recipient_id, now=now)
    return token, claims.expires_at


def issue_presence_token(*, recipient_id: int, now: datetime) -> tuple[str, PresenceClaims]:
    """A fresh presence code for the recipient and what it claims (its expiry and its nonce)."""
    expires = int(now.timestamp()) + current_app.config["PRESENCE_CODE_TTL_SECONDS"]
    nonce = secrets.token_bytes(8)
    token = _seal(PRESENCE, struct.pack(">II", recipient_id, expires) + nonce)
    return token, PresenceClaims(recipient_id=recipient_id, expires_at=datetime.fromtimestamp(expires, UTC),
                                 nonce=nonce.hex())


def new_short_code() -> str:
    """8 random digits (the secrets module), the typed form of a presence code."""
    return f"{secrets.randbelow(10 ** SHORT_CODE_DIGITS):0{SHORT_CODE_DIGITS}d}"


def display_short_code(code: str) -> str:
    """The digits as people read them: `1234 5678`."""
    return f"{code[:4]} {code[4:]}"


def short_code_hashes(code: str) -> list[str]:
    """The keyed hashes of the 8 digits *code* under every token key, the signing key's first (hex)."""
    message = code.encode("ascii")
    return [hmac.new(key, message, hashlib.sha256).hexdigest()
            for key in _short_code_keys(current_app.config["TOKEN_KEYS"])]


@functools.lru_cache(maxsize=8)
def _short_code_keys(raw: str) -> tuple[bytes, ...]:
    return tuple(hmac.new(secret, SHORT_CODE_LABEL, hashlib.sha256).digest() for _kid, secret in parse_token_keys(raw))


def read_presence_token(token: str, *, now: datetime) -> PresenceClaims:
    """:raises InvalidToken: forged, damaged or not a presence code. :raises TokenExpired: too old."""
    payload = _open(token, PRESENCE)
    if len(payload) != 16:
        raise InvalidToken()
    recipient_id, expires = struct.unpack(">II", payload[:8])
    expires_at = datetime.fromtimestamp(expires, UTC)
    if now >= expires_at:
        raise TokenExpired()
    return PresenceClaims(recipient_id=recipient_id, expires_at=expires_at, nonce=payload[8:].hex())


def voucher_token(voucher_id: int) -> str:
    """The token printed on a voucher card (valid as long as the voucher is)."""
    return _seal(VOUCHER, struct.pack(">Q", voucher_id))


def read_voucher_token(token: str) -> int:
    """:raises InvalidToken: forged, damaged or not a voucher card."""
    payload = _open(token, VOUCHER)
    if len(payload) != 8:
        raise InvalidToken()
    return struct.unpack(">Q", payload)[0]

