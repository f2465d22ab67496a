"""Voucher serials (vouchers.serials): readable aloud, typed by hand, guarded by a check symbol.

A serial is 8 Crockford base32 symbols of a scrambled 40-bit id plus a mod-37 check symbol. What a
person can get wrong — one character, or two neighbours swapped — must be refused, never read as
another voucher. The only changes that are accepted are Crockford's own readings (I and L are 1, O is
0, case, dashes and spaces), and those name the same voucher.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vouchers.serials import ALPHABET, CHECK_ALPHABET, MAX_ID, InvalidSerial, _permute, serial_for, voucher_id_for

IDS = st.integers(min_value=1, max_value=2**40 - 1)
# Everything a person could type by mistake: every symbol, the aliases and a few strangers.
TYPABLE = sorted(set(CHECK_ALPHABET) | set("ILOU") | set("ilo") | set("#!?_+"))
SAMPLE_IDS = [1, 2, 3, 31, 32, 37, 1000, 123_456, 2**20 - 1, 2**20, 2**31 - 1, 2**40 - 2, 2**40 - 1]


def symbols(serial: str) -> str:
    """The nine symbols of a serial, without its grouping dashes."""
    return serial.replace("-", "")


def reading(typed: str) -> int | None:
    """The voucher id *typed* stands for, or None when it is refused."""
    try:
        return voucher_id_for(typed)
    except InvalidSerial:
        return None


def canonical(symbol: str) -> str:
    """What a symbol means to the decoder (aliases and lower case folded)."""
    return {"I": "1", "L": "1", "O": "0"}.get(symbol.upper(), symbol.upper())


@given(IDS)
def test_every_id_round_trips_through_its_serial(voucher_id):
    serial = serial_for(voucher_id)
    assert voucher_id_for(serial) == voucher_id


@given(IDS)
def test_a_serial_is_two_groups_of_four_symbols_and_a_check_symbol(voucher_id):
    serial = serial_for(voucher_id)
    head, tail, check = serial.split("-")
    assert len(head) == len(tail) == 4
    assert len(check) == 1
    assert set(head + tail) <= set(ALPHABET)
    assert check in CHECK_ALPHABET


def test_the_documented_example_serial_of_voucher_1():
    assert serial_for(1) == "JJB7-Q2W4-W"


def test_neighbouring_vouchers_do_not_get_neighbouring_serials():
    serials = [symbols(serial_for(voucher_id)) for voucher_id in range(1, 51)]
    assert len(set(serials)) == 50
    shared_prefixes = sum(a[:6] == b[:6] for a, b in zip(serials, serials[1:], strict=False))
    assert shared_prefixes == 0


@pytest.mark.parametrize("voucher_id", [0, -1, MAX_ID + 1, 2**40, 2**63])
def test_ids_outside_forty_bits_have_no_serial(voucher_id):
    with pytest.raises(ValueError, match="out of range"):
        serial_for(voucher_id)


@pytest.mark.parametrize("voucher_id", SAMPLE_IDS)
def test_every_single_character_mistake_is_refused_unless_it_reads_the_same(voucher_id):
    typed = symbols(serial_for(voucher_id))
    for position, original in enumerate(typed):
        for replacement in TYPABLE:
            if replacement == original:
                continue
            mistyped = typed[:position] + replacement + typed[position + 1:]
            result = reading(mistyped)
            if canonical(replacement) == canonical(original):
                assert result == voucher_id, f"{mistyped!r} is another way to write the same symbol"
            else:
                assert result is None, f"{mistyped!r} was read as voucher {result} instead of being refused"


@given(IDS, st.data())
def test_any_single_substitution_never_names_another_voucher(voucher_id, data):
    typed = symbols(serial_for(voucher_id))
    position = data.draw(st.integers(min_value=0, max_value=8))
    replacement = data.draw(st.sampled_from(TYPABLE))
    mistyped = typed[:position] + replacement + typed[position + 1:]
    same_symbol = canonical(replacement) == canonical(typed[position])
    assert reading(mistyped) == (voucher_id if same_symbol else None)


@pytest.mark.parametrize("voucher_id", SAMPLE_IDS)
def test_every_swap_of_two_adjacent_characters_is_refused(voucher_id):
    typed = symbols(serial_for(voucher_id))
    for position in range(len(typed) - 1):
        left, right = typed[position], typed[position + 1]
        swapped = typed[:position] + right + left + typed[position + 2:]
        if left == right:
            assert reading(swapped) == voucher_id
        else:
            assert reading(swapped) is None, f"{swapped!r} (swap at {position}) was read as {reading(swapped)}"


@given(IDS, st.integers(min_value=0, max_value=7))
def test_adjacent_swaps_never_name_another_voucher(voucher_id, position):
    typed = symbols(serial_for(voucher_id))
    swapped = typed[:position] + typed[position + 1] + typed[position] + typed[position + 2:]
    assert reading(swapped) == (voucher_id if swapped == typed else None)


@given(IDS)
def test_i_and_l_read_as_one_and_o_as_zero(voucher_id):
    serial = serial_for(voucher_id)
    written = serial.replace("1", "I").replace("0", "O")
    also_written = serial.replace("1", "l").replace("0", "o")
    assert voucher_id_for(written) == voucher_id
    assert voucher_id_for(also_written) == voucher_id


def test_the_aliases_work_where_a_serial_has_ones_and_zeros():
    with_one_and_zero = next(voucher_id for voucher_id in range(1, 10_000)
                             if {"1", "0"} <= set(symbols(serial_for(voucher_id))[:8]))
    serial = serial_for(with_one_and_zero)
    assert voucher_id_for(serial.replace("1", "I", 1).replace("0", "O", 1)) == with_one_and_zero
    assert voucher_id_for(serial.replace("1", "L")) == with_one_and_zero


@given(IDS)
def test_dashes_spaces_and_lower_case_are_ignored(voucher_id):
    serial = serial_for(voucher_id)
    plain = symbols(serial)
    for typed in (plain, plain.lower(), serial.lower(), " ".join(plain), f" {plain[:3]}-{plain[3:6]} {plain[6:]} ",
                  "-".join(plain)):
        assert voucher_id_for(typed) == voucher_id, typed


@pytest.mark.parametrize("typed", [
    "", "JJB7-Q2W4", "JJB7-Q2W4-WW", "JJB7Q2W4", "JJB7-Q2W4-W0", "JJB7-Q2U4-W", "JJB7-Q2W#-W", "JJB7-Q2W4-#",
    "ＪJB7-Q2W4-W", "JJB7_Q2W4_W",
])
def test_malformed_serials_are_refused(typed):
    with pytest.raises(InvalidSerial):
        voucher_id_for(typed)


def test_u_is_only_a_check_symbol():
    # U stands for 36 and is used only as a check symbol; as one of the eight data symbols it is refused.
    serial = next(serial_for(voucher_id) for voucher_id in range(1, 100_000) if serial_for(voucher_id).endswith("U"))
    assert voucher_id_for(serial) > 0
    plain = symbols(serial)
    with pytest.raises(InvalidSerial):
        voucher_id_for("U" + plain[1:])


def test_the_serial_of_id_zero_is_never_accepted():
    # Whatever symbols encode the scrambled form of id 0 must be refused: no voucher has id 0.
    value = _permute(0)
    data = "".join(ALPHABET[(value >> shift) & 31] for shift in range(35, -1, -5))
    with pytest.raises(InvalidSerial):
        voucher_id_for(data + CHECK_ALPHABET[value % 37])
