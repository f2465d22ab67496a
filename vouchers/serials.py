"""Voucher serials: short, readable aloud, typed by hand, with a check symbol.

A serial is a pure function of the voucher's id, so issuance can insert vouchers set-based in SQL
and never generate serials row by row. The id is scrambled by a fixed 40-bit Feistel permutation
(so neighbouring vouchers do not have neighbouring serials; this is not a secret: redemption relies
on signed tokens, never on serials), written in Crockford base32 (no I, L, O, U; case-insensitive;
I and L read as 1, O as 0) and followed by Crockford's mod-37 check symbol, which catches every
single-character mistake and every swap of two adjacent characters.

    id 1 → "JJB7-Q2W4-W"   (8 symbols + check, shown in groups; dashes and spaces are ignored)
"""

import hashlib

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_ALPHABET = ALPHABET + "*~$=U"
_DECODE = {character: index for index, character in enumerate(CHECK_ALPHABET)}
_DECODE.update({"I": 1, "L": 1, "O": 0})
BITS = 40
HALF = BITS // 2
MASK = (1 << HALF) - 1
MAX_ID = (1 << BITS) - 1
ROUNDS = 4
_ROUND_KEYS = tuple(int.from_bytes(hashlib.sha256(f"voucher-serial-{r}".encode()).digest()[:4], "big")
                    for r in range(ROUNDS))


class InvalidSerial(ValueError):
    pass


def _round(value: int, key: int) -> int:
    return ((value * 0x9E3779B1) ^ key ^ (value >> 7)) & MASK


def _permute(number: int) -> int:
    left, right = number >> HALF, number & MASK
    for key in _ROUND_KEYS:
        left, right = right, left ^ _round(right, key)
    return (left << HALF) | right


def _unpermute(number: int) -> int:
    left, right = number >> HALF, number & MASK
    for key in reversed(_ROUND_KEYS):
        left, right = right ^ _round(left, key), left
    return (left << HALF) | right


def serial_for(voucher_id: int) -> str:
    """The printed serial of a voucher, e.g. `K1V0-7JTM-5`."""
    if not 0 < voucher_id <= MAX_ID:
        raise ValueError("voucher id out of range")
    value = _permute(voucher_id)
    symbols = "".join(ALPHABET[(value >> shift) & 31] for shift in range(BITS - 5, -1, -5))
    return f"{symbols[:4]}-{symbols[4:]}-{CHECK_ALPHABET[value % 37]}"


def voucher_id_for(serial: str) -> int:
    """The voucher id a typed serial stands for.

    :raises InvalidSerial: wrong length, a character outside the alphabet, or a failing check symbol.
    """
    cleaned = serial.replace("-", "").replace(" ", "").upper()
    if len(cleaned) != 9:
        raise InvalidSerial("A serial has 8 characters and a check symbol.")
    value = 0
    for character in cleaned[:8]:
        digit = _DECODE.get(character)
        if digit is None or digit > 31:
            raise InvalidSerial(f"{character!r} is not used in serials.")
        value = (value << 5) | digit
    if _DECODE.get(cleaned[8]) != value % 37:
        raise InvalidSerial("The check symbol does not match: the serial was mistyped.")
    voucher_id = _unpermute(value)
    if voucher_id == 0:
        raise InvalidSerial("No voucher has this serial.")
    return voucher_id
