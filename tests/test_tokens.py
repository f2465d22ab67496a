"""Signed redemption tokens (vouchers.tokens): presence codes and voucher cards.

A token is what a provider's scanner reads: it must verify only when it is exactly what this service
signed, stop working when it is old (presence codes), survive a key rotation (printed cards), and fit
a small QR code. These tests build their own apps, because the keys are configuration.
"""

import base64
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vouchers import cards, tokens

NOW = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
OLD_KEYS = "1:old-secret-for-printed-cards"
ROTATED_KEYS = "2:new-secret-after-rotation,1:old-secret-for-printed-cards"
# The apps these tests sign with hold no state between examples: sharing one across examples is fine.
SHARED_APP = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.fixture
def signer(make_app):
    return make_app(TOKEN_KEYS=OLD_KEYS, PRESENCE_CODE_TTL_SECONDS=120)


def presence(app, recipient_id=42, now=NOW):
    with app.app_context():
        return tokens.presence_token(recipient_id=recipient_id, now=now)


def read_presence(app, token, now=NOW):
    with app.app_context():
        return tokens.read_presence_token(token, now=now)


def card(app, voucher_id=1234):
    with app.app_context():
        return tokens.voucher_token(voucher_id)


def read_card(app, token):
    with app.app_context():
        return tokens.read_voucher_token(token)


def raw_bytes(token: str) -> bytes:
    return base64.b32decode(token + "=" * (-len(token) % 8))


def encode(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def sealed(kind: int, kid: int, secret: str, payload: bytes) -> str:
    """A token built by hand exactly as the service builds one, under any key."""
    body = struct.pack(">BB", kind, kid) + payload
    return encode(body + hmac.new(secret.encode(), body, hashlib.sha256).digest()[:tokens.MAC_BYTES])


# --- round trips ----------------------------------------------------------------------------------

def test_a_presence_code_carries_its_recipient_and_expiry(signer):
    token, expires_at = presence(signer, recipient_id=42)
    claims = read_presence(signer, token)
    assert claims.recipient_id == 42
    assert expires_at == claims.expires_at == NOW.replace(microsecond=0) + timedelta(seconds=120)
    assert len(claims.nonce) == 16


@given(recipient_id=st.integers(min_value=1, max_value=2**31 - 1))
@settings(max_examples=50, **SHARED_APP)
def test_presence_codes_round_trip_for_any_recipient(signer, recipient_id):
    token, _expires = presence(signer, recipient_id=recipient_id)
    assert read_presence(signer, token).recipient_id == recipient_id


@given(voucher_id=st.integers(min_value=1, max_value=2**63 - 1))
@settings(max_examples=50, **SHARED_APP)
def test_voucher_tokens_round_trip_for_any_voucher(signer, voucher_id):
    assert read_card(signer, card(signer, voucher_id)) == voucher_id


def test_two_presence_codes_for_the_same_recipient_and_instant_differ(signer):
    first, _ = presence(signer)
    second, _ = presence(signer)
    assert first != second
    assert read_presence(signer, first).nonce != read_presence(signer, second).nonce


def test_a_voucher_token_is_the_same_every_time_it_is_printed(signer):
    assert card(signer, 77) == card(signer, 77)
    assert card(signer, 77) != card(signer, 78)


def test_tokens_are_read_in_any_case_and_with_surrounding_whitespace(signer):
    token = card(signer, 9)
    assert read_card(signer, f"  {token.lower()}\n") == 9
    code, _ = presence(signer)
    assert read_presence(signer, code.lower()).recipient_id == 42


def test_a_voucher_token_holds_the_voucher_id_and_a_mac_and_nothing_else(signer):
    raw = raw_bytes(card(signer, 1234))
    assert raw[0] == tokens.VOUCHER
    assert raw[1] == 1
    assert struct.unpack(">Q", raw[2:10])[0] == 1234
    assert len(raw) == 10 + tokens.MAC_BYTES


# --- refusals -------------------------------------------------------------------------------------

def test_a_presence_code_with_a_forged_mac_is_invalid(signer):
    token, _ = presence(signer)
    raw = bytearray(raw_bytes(token))
    raw[-1] ^= 0x01
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, encode(bytes(raw)))


def test_a_presence_code_for_someone_else_cannot_be_made_by_editing_the_payload(signer):
    token, _ = presence(signer, recipient_id=42)
    raw = bytearray(raw_bytes(token))
    raw[2:6] = struct.pack(">I", 43)
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, encode(bytes(raw)))


def test_a_voucher_token_signed_with_another_secret_is_invalid(signer):
    forged = sealed(tokens.VOUCHER, 1, "a-guessed-secret", struct.pack(">Q", 1234))
    with pytest.raises(tokens.InvalidToken):
        read_card(signer, forged)


def test_a_later_expiry_cannot_be_written_into_an_old_presence_code(signer):
    token, _ = presence(signer)
    raw = bytearray(raw_bytes(token))
    expires = struct.unpack(">I", raw[6:10])[0]
    raw[6:10] = struct.pack(">I", expires + 3600)
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, encode(bytes(raw)), now=NOW + timedelta(minutes=30))


def test_a_voucher_token_is_not_a_presence_code(signer):
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, card(signer, 42))


def test_a_presence_code_is_not_a_voucher_token(signer):
    token, _ = presence(signer)
    with pytest.raises(tokens.InvalidToken):
        read_card(signer, token)


def test_a_correctly_signed_token_of_the_right_kind_but_wrong_length_is_invalid(signer):
    secret = OLD_KEYS.partition(":")[2]
    short_presence = sealed(tokens.PRESENCE, 1, secret, struct.pack(">II", 42, 2**32 - 1))
    long_voucher = sealed(tokens.VOUCHER, 1, secret, struct.pack(">QQ", 1, 2))
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, short_presence)
    with pytest.raises(tokens.InvalidToken):
        read_card(signer, long_voucher)


@pytest.mark.parametrize("keep", [1, 2, 8, 16, 24, 35])
def test_a_truncated_voucher_token_is_invalid(signer, keep):
    token = card(signer, 1234)
    assert len(token) == 36
    with pytest.raises(tokens.InvalidToken):
        read_card(signer, token[:keep])


@pytest.mark.parametrize("keep", [1, 8, 16, 24, 40, 47])
def test_a_truncated_presence_code_is_invalid(signer, keep):
    token, _ = presence(signer)
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, token[:keep])


BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@given(voucher_id=st.integers(min_value=1, max_value=2**63 - 1))
@settings(max_examples=20, **SHARED_APP)
def test_a_voucher_token_has_one_spelling_not_sixteen(signer, voucher_id):
    """36 base32 characters hold 180 bits for the token's 176: only the spelling with the 4 spare bits zero reads."""
    token = card(signer, voucher_id)
    readable = []
    for character in BASE32:
        spelling = token[:-1] + character
        try:
            readable.append(read_card(signer, spelling))
        except tokens.InvalidToken:
            continue
        assert spelling == token
    assert readable == [voucher_id]


def test_a_presence_code_has_no_spare_bits_and_one_spelling(signer):
    code, _ = presence(signer)
    assert len(code) * 5 == len(raw_bytes(code)) * 8  # 48 characters, 240 bits, all used
    assert [c for c in BASE32 if _reads_as_presence(signer, code[:-1] + c)] == [code[-1]]


def _reads_as_presence(app, token) -> bool:
    try:
        read_presence(app, token)
    except tokens.InvalidToken:
        return False
    return True


@pytest.mark.parametrize("padding", ["=", "====", "========"])
def test_a_padded_token_is_not_the_printed_spelling(signer, padding):
    token = card(signer, 1234)
    code, _ = presence(signer)
    with pytest.raises(tokens.InvalidToken):
        read_card(signer, token + padding)
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, code + padding)


@pytest.mark.parametrize("garbage", [
    "", "   ", "hello world", "not-base32!", "0000000000000000", "11111111", "AAAAAAAA", "A" * 36, "A" * 48,
    "A" * 81, "助餐助餐", "\x00\x01\x02", "https://example.com/?voucher=1234", "MFRGG===", "====",
])
def test_garbage_is_an_invalid_token_of_either_kind(signer, garbage):
    with pytest.raises(tokens.InvalidToken):
        read_card(signer, garbage)
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, garbage)


@given(st.text(max_size=100))
@settings(max_examples=200, **SHARED_APP)
def test_arbitrary_text_is_refused_as_an_invalid_token_and_never_otherwise(signer, text):
    for reader in (lambda: read_card(signer, text), lambda: read_presence(signer, text)):
        with pytest.raises(tokens.InvalidToken):
            reader()


# --- expiry ---------------------------------------------------------------------------------------

def test_a_presence_code_works_until_its_ttl_and_not_at_it(signer):
    token, expires_at = presence(signer)
    assert expires_at == NOW.replace(microsecond=0) + timedelta(seconds=120)
    assert read_presence(signer, token, now=expires_at - timedelta(microseconds=1)).recipient_id == 42
    with pytest.raises(tokens.TokenExpired):
        read_presence(signer, token, now=expires_at)
    with pytest.raises(tokens.TokenExpired):
        read_presence(signer, token, now=NOW + timedelta(days=1))


def test_the_presence_code_lifetime_is_configurable(make_app):
    app = make_app(TOKEN_KEYS=OLD_KEYS, PRESENCE_CODE_TTL_SECONDS=5)
    token, expires_at = presence(app)
    assert expires_at == NOW.replace(microsecond=0) + timedelta(seconds=5)
    with pytest.raises(tokens.TokenExpired):
        read_presence(app, token, now=NOW + timedelta(seconds=6))


def test_an_expired_code_with_a_bad_mac_is_invalid_not_expired(signer):
    token, _ = presence(signer)
    raw = bytearray(raw_bytes(token))
    raw[-2] ^= 0x80
    with pytest.raises(tokens.InvalidToken):
        read_presence(signer, encode(bytes(raw)), now=NOW + timedelta(days=1))


def test_voucher_tokens_do_not_expire(signer):
    token = card(signer, 5)
    with signer.app_context():
        assert tokens.read_voucher_token(token) == 5  # no clock is involved at all


# --- key rotation ---------------------------------------------------------------------------------

def test_a_card_printed_under_key_1_still_verifies_after_key_2_is_introduced(make_app):
    before = make_app(TOKEN_KEYS=OLD_KEYS)
    after = make_app(TOKEN_KEYS=ROTATED_KEYS)
    printed = card(before, 2024)
    assert read_card(after, printed) == 2024


def test_a_presence_code_signed_under_key_1_still_verifies_after_rotation(make_app):
    before = make_app(TOKEN_KEYS=OLD_KEYS)
    after = make_app(TOKEN_KEYS=ROTATED_KEYS)
    token, _ = presence(before, recipient_id=7)
    assert read_presence(after, token).recipient_id == 7


def test_after_rotation_new_tokens_are_signed_with_the_first_listed_key(make_app):
    after = make_app(TOKEN_KEYS=ROTATED_KEYS)
    before = make_app(TOKEN_KEYS=OLD_KEYS)
    fresh = card(after, 2025)
    assert raw_bytes(fresh)[1] == 2
    assert read_card(after, fresh) == 2025
    with pytest.raises(tokens.InvalidToken):
        read_card(before, fresh)  # a server that does not know key 2 yet refuses it


def test_a_token_signed_by_an_unknown_key_id_is_refused(make_app):
    app = make_app(TOKEN_KEYS=ROTATED_KEYS)
    unknown = sealed(tokens.VOUCHER, 3, "2:new-secret-after-rotation".partition(":")[2], struct.pack(">Q", 1))
    with pytest.raises(tokens.InvalidToken):
        read_card(app, unknown)


def test_a_token_claiming_key_2_but_signed_with_key_1_is_refused(make_app):
    app = make_app(TOKEN_KEYS=ROTATED_KEYS)
    mixed = sealed(tokens.VOUCHER, 2, OLD_KEYS.partition(":")[2], struct.pack(">Q", 1))
    with pytest.raises(tokens.InvalidToken):
        read_card(app, mixed)


def test_once_key_1_is_retired_its_cards_stop_verifying(make_app):
    printed = card(make_app(TOKEN_KEYS=OLD_KEYS), 99)
    retired = make_app(TOKEN_KEYS="2:new-secret-after-rotation")
    with pytest.raises(tokens.InvalidToken):
        read_card(retired, printed)


# --- size -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("voucher_id", [1, 2**31 - 1, 2**40 - 1, 2**63 - 1])
def test_a_voucher_token_fits_a_qr_code_of_version_7_or_less_at_level_m(signer, voucher_id):
    code = cards.qr_matrix(card(signer, voucher_id))
    assert code.version <= 7
    assert code.error_correction == cards.ERROR_CORRECT_M


@pytest.mark.parametrize("recipient_id", [1, 2**31 - 1])
def test_a_presence_code_fits_a_qr_code_of_version_7_or_less_at_level_m(signer, recipient_id):
    token, _ = presence(signer, recipient_id=recipient_id)
    code = cards.qr_matrix(token)
    assert code.version <= 7
    assert code.error_correction == cards.ERROR_CORRECT_M


def test_tokens_use_only_characters_of_the_qr_alphanumeric_mode(signer):
    alphanumeric = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    token, _ = presence(signer)
    assert set(token) <= alphanumeric
    assert set(card(signer, 2**40 - 1)) <= alphanumeric
