"""GB 11643 resident ID numbers: parse_id_number accepts exactly the valid ones and says what is wrong.

The property tests generate valid numbers from their parts (a province prefix in use, a real birth
date between 1900 and today, any sequence, the MOD 11-2 check character) and prove that every single
substitution of every valid number is refused.
"""

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.recipients.idnumber import InvalidIdNumberError, check_character, parse_id_number
from marketplace.regions import PROVINCE_CODES

TODAY = date.today()
ALPHABET = "0123456789X"


def make_id_number(region: str = "510131", birth: date = date(1945, 3, 12), sequence: int = 123) -> str:
    """A valid ID number (upper-case X) from its parts; the last digit of *sequence* decides the sex."""
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def with_check_x(region: str = "510131", birth: date = date(1950, 6, 1), start: int = 0) -> str:
    """The first valid number at or after sequence *start* whose check character is X."""
    for sequence in range(start, start + 1000):
        number = make_id_number(region, birth, sequence % 1000)
        if number.endswith("X"):
            return number
    raise AssertionError("no sequence gives the check character X")  # pragma: no cover


def refusal(raw: str, today: date = TODAY) -> InvalidIdNumberError:
    with pytest.raises(InvalidIdNumberError) as caught:
        parse_id_number(raw, today=today)
    return caught.value


regions = st.builds(lambda province, rest: f"{province}{rest:04d}",
                    st.sampled_from(sorted(PROVINCE_CODES)), st.integers(0, 9999))
births = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
sequences = st.integers(0, 999)
valid_numbers = st.builds(make_id_number, regions, births, sequences)


# --- valid numbers --------------------------------------------------------------------------------

@given(region=regions, birth=births, sequence=sequences)
def test_every_generated_valid_number_is_accepted_with_its_birth_date_and_sex(region, birth, sequence):
    number = make_id_number(region, birth, sequence)
    parsed = parse_id_number(number, today=TODAY)
    assert parsed.number == number
    assert parsed.birth_date == birth
    assert parsed.sex == ("male" if sequence % 2 else "female")


def test_the_seventeenth_digit_decides_the_sex_odd_is_male():
    assert parse_id_number(make_id_number(sequence=121), today=TODAY).sex == "male"
    assert parse_id_number(make_id_number(sequence=120), today=TODAY).sex == "female"
    assert parse_id_number(make_id_number(sequence=9), today=TODAY).sex == "male"
    assert parse_id_number(make_id_number(sequence=0), today=TODAY).sex == "female"


def test_a_known_published_example_is_accepted():
    # The standard's worked example: 11010519491231002X (female, born 1949-12-31).
    parsed = parse_id_number("11010519491231002X", today=TODAY)
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex == "female"


@given(region=regions, birth=births, start=sequences)
def test_a_lower_case_x_is_accepted_and_normalised_to_upper_case(region, birth, start):
    number = with_check_x(region, birth, start)
    parsed = parse_id_number(number[:17] + "x", today=TODAY)
    assert parsed.number == number
    assert parsed.number.endswith("X")
    assert parsed.masked.endswith("X")


def test_surrounding_whitespace_is_ignored():
    number = make_id_number()
    assert parse_id_number(f"  {number}\t\n", today=TODAY).number == number


def test_the_boundary_dates_1900_01_01_and_today_are_accepted():
    assert parse_id_number(make_id_number(birth=date(1900, 1, 1)), today=TODAY).birth_date == date(1900, 1, 1)
    assert parse_id_number(make_id_number(birth=TODAY), today=TODAY).birth_date == TODAY


def test_a_leap_day_is_a_real_date_in_a_leap_year():
    assert parse_id_number(make_id_number(birth=date(2000, 2, 29)), today=TODAY).birth_date == date(2000, 2, 29)


@given(number=valid_numbers)
def test_the_masked_form_is_the_first_six_then_eight_stars_then_the_last_four(number):
    masked = parse_id_number(number, today=TODAY).masked
    assert masked == number[:6] + "********" + number[-4:]
    assert len(masked) == 18
    assert number[6:14] not in masked  # the birth date is hidden


# --- every single substitution is refused ---------------------------------------------------------

@settings(max_examples=300)
@given(number=valid_numbers)
def test_every_single_character_substitution_of_a_valid_number_is_refused(number):
    changed = 0
    for position in range(18):
        for replacement in ALPHABET:
            if replacement == number[position]:
                continue
            mutant = number[:position] + replacement + number[position + 1:]
            assert sum(a != b for a, b in zip(mutant, number, strict=True)) == 1
            with pytest.raises(InvalidIdNumberError):
                parse_id_number(mutant, today=TODAY)
            changed += 1
    assert changed == 18 * 10  # every position, every other character of the alphabet


@given(number=valid_numbers, position=st.integers(0, 17), data=st.data())
def test_a_single_substitution_with_any_character_is_refused(number, position, data):
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != number[position]
                                                                  and c.upper() != number[position]))
    mutant = number[:position] + replacement + number[position + 1:]
    with pytest.raises(InvalidIdNumberError):
        parse_id_number(mutant, today=TODAY)


def test_a_wrong_check_character_is_refused_for_each_wrong_character():
    number = make_id_number()
    for wrong in ALPHABET.replace(number[-1], ""):
        assert refusal(number[:17] + wrong).part == "check_character"


# --- each refusal names the part that is wrong ----------------------------------------------------

@pytest.mark.parametrize("raw", ["", "5101311945031212", make_id_number()[:17], make_id_number() + "1",
                                 make_id_number()[:17] + "XX"])
def test_a_number_that_is_not_18_characters_is_refused_for_its_length(raw):
    assert refusal(raw).part == "length"


@pytest.mark.parametrize("raw", [
    "51013119450312A23X",           # a letter among the first seventeen
    "5101311945031212X3",           # X anywhere but last
    make_id_number()[:17] + "Y",    # a last character that is neither a digit nor X
    "５１０１３１19450312123X",       # full-width digits
    "51013119450312 23X",           # a space inside
    "-51013119450312123",           # a sign
])
def test_a_number_with_wrong_characters_is_refused_for_its_characters(raw):
    assert refusal(raw).part == "characters"


@pytest.mark.parametrize("digit", ["٣", "３", "²", "໓"])  # Arabic-Indic, full-width, superscript, Lao
def test_a_non_ascii_digit_as_check_character_is_refused_for_its_characters(digit):
    number = make_id_number()
    assert refusal(number[:17] + digit).part == "characters"


@pytest.mark.parametrize("province", ["00", "10", "19", "24", "30", "47", "55", "60", "66", "70", "80", "83", "99"])
def test_a_province_code_not_in_use_is_refused_for_its_region(province):
    assert province not in PROVINCE_CODES
    assert refusal(make_id_number(region=f"{province}0101")).part == "region"


@pytest.mark.parametrize("digits", [
    "19450230",  # 30 February
    "19450229",  # 29 February in a common year
    "19000229",  # 1900 was not a leap year
    "19451301",  # month 13
    "19450001",  # month 0
    "19450100",  # day 0
    "19450431",  # 31 April
    "00000000",  # year 0
])
def test_a_birth_date_that_is_not_a_calendar_date_is_refused(digits):
    first17 = f"510131{digits}123"
    assert refusal(first17 + check_character(first17)).part == "birth_date"


def test_a_birth_date_in_the_future_is_refused():
    tomorrow = TODAY + timedelta(days=1)
    error = refusal(make_id_number(birth=tomorrow))
    assert error.part == "birth_date"
    assert "future" in error.message


def test_a_birth_date_that_is_in_the_future_relative_to_the_given_today_is_refused():
    number = make_id_number(birth=date(2020, 5, 2))
    assert parse_id_number(number, today=date(2020, 5, 2)).birth_date == date(2020, 5, 2)
    assert refusal(number, today=date(2020, 5, 1)).part == "birth_date"


@pytest.mark.parametrize("birth", [date(1899, 12, 31), date(1850, 6, 15), date(1, 1, 1)])
def test_a_birth_date_before_1900_is_refused(birth):
    first17 = f"510131{birth.year:04d}{birth:%m%d}123"
    error = refusal(first17 + check_character(first17))
    assert error.part == "birth_date"
    assert "1900" in error.message


def test_a_refusal_message_never_repeats_the_whole_number():
    number = make_id_number()
    for raw in (number[:17] + "0" if number[-1] != "0" else number[:17] + "1", "99" + number[2:],
                number + "9", number[:10] + "1332" + number[14:]):
        error = refusal(raw)
        assert raw not in error.message
        assert raw[:17] not in error.message


def test_the_first_wrong_part_is_named_in_the_order_length_characters_region_birth_date_check():
    # Wrong region and wrong check character: the region is named.
    assert refusal("99013119450312123" + "0").part == "region"
    # Wrong birth date and wrong check character: the birth date is named.
    assert refusal("51013119451332123" + "0").part == "birth_date"
