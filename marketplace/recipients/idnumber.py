"""Resident identity numbers per GB 11643-1999.

    510131 19450312 123 X
    region birth     seq check

The check character is ISO 7064 MOD 11-2 over the first 17 digits: weights 2^(17-i) mod 11,
sum mod 11 → "10X98765432". The 17th digit is odd for men and even for women.
"""

from dataclasses import dataclass
from datetime import date

from marketplace.regions import PROVINCE_CODES

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"
DIGITS = "0123456789"
EARLIEST_BIRTH = date(1900, 1, 1)


class InvalidIdNumberError(ValueError):
    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part
        self.message = message


@dataclass(frozen=True)
class IdNumber:
    number: str  # normalised: upper-case X
    birth_date: date
    sex: str  # "male" | "female"

    @property
    def masked(self) -> str:
        return f"{self.number[:6]}{'*' * 8}{self.number[-4:]}"


def check_character(first17: str) -> str:
    return CHECK_CHARACTERS[sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True)) % 11]


def parse_id_number(raw: str, *, today: date) -> IdNumber:
    """Validate and parse an 18-character identity number (a lower-case x is accepted).

    :raises InvalidIdNumberError: with `part` naming what is wrong: length, characters, region,
        birth_date or check_character.
    """
    number = raw.strip().upper()
    if len(number) != 18:
        raise InvalidIdNumberError("length", f"An ID number has 18 characters, not {len(number)}.")
    # str.isdigit() also accepts non-ASCII digits (full-width, Arabic-Indic, superscripts): compare
    # against the ASCII alphabet itself.
    if not (set(number[:17]) <= set(DIGITS) and number[17] in CHECK_CHARACTERS):
        raise InvalidIdNumberError("characters", "Seventeen digits, then a digit or X.")
    if number[:2] not in PROVINCE_CODES:
        raise InvalidIdNumberError("region", f"{number[:2]} is not a province-level region code.")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as error:
        raise InvalidIdNumberError("birth_date", f"{number[6:14]} is not a calendar date.") from error
    if birth > today:
        raise InvalidIdNumberError("birth_date", "The birth date is in the future.")
    if birth < EARLIEST_BIRTH:
        raise InvalidIdNumberError("birth_date", "The birth date is before 1900.")
    if check_character(number[:17]) != number[17]:
        raise InvalidIdNumberError("check_character",
                                   "The check character does not match (GB 11643, ISO 7064 MOD 11-2).")
    return IdNumber(number=number, birth_date=birth, sex="male" if int(number[16]) % 2 else "female")
