"""GB 32100 unified social credit codes: parse_credit_code accepts exactly the valid ones and names the bad part.

The property tests build valid codes from their parts (an authority/type pair of GB 32100 table 1, a
6-digit region, an 8-character organisation body from the 31-character set, its GB 11714 check
character and the final MOD 31 check character) and prove that every single-character change of every
generated code is refused, naming the part that the change breaks.
"""

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from providers.creditcode import (
    AUTHORITY_TYPES,
    CHARSET,
    InvalidCreditCodeError,
    check_character,
    organisation_check_character,
    parse_credit_code,
)

PUBLISHED_EXAMPLE = "91350100M000100Y43"
EXCLUDED = "IOZSV"
# Every character a single-character change may put in: the set itself, the five letters the set leaves
# out, and the lower-case forms of all letters (normalised to upper case before checking).
REPLACEMENTS = CHARSET + EXCLUDED + "".join(c.lower() for c in CHARSET + EXCLUDED if c.isalpha())
PARTS = {"length", "characters", "authority", "organisation_type", "region", "organisation_code", "check_character"}


def make_credit_code(authority: str = "9", organisation_type: str = "1", region: str = "510131",
                     body: str = "MA62N8K3") -> str:
    """A valid code from its parts: both check characters are computed."""
    first17 = f"{authority}{organisation_type}{region}{body}{organisation_check_character(body)}"
    return first17 + check_character(first17)


def refusal(raw: str) -> InvalidCreditCodeError:
    with pytest.raises(InvalidCreditCodeError) as caught:
        parse_credit_code(raw)
    return caught.value


def expected_part(code: str, position: int, replacement: str) -> str:
    """The part a change of *code* at *position* to *replacement* breaks, checked in the order of GB 32100:
    characters, authority, type, region, organisation code, final check character."""
    changed = (code[:position] + replacement + code[position + 1:]).upper()
    if changed[position] in EXCLUDED:
        return "characters"
    if position == 0 and changed[0] not in AUTHORITY_TYPES:
        return "authority"
    if position in (0, 1) and changed[1] not in AUTHORITY_TYPES[changed[0]]:
        return "organisation_type"
    if 2 <= position <= 7 and (not changed[2:8].isdigit() or changed[2:4] == "00"):
        return "region"
    if 8 <= position <= 16 and organisation_check_character(changed[8:16]) != changed[16]:
        return "organisation_code"
    return "check_character"


authority_type_pairs = st.sampled_from([(authority, organisation_type)
                                        for authority, types in AUTHORITY_TYPES.items() for organisation_type in types])
regions = st.integers(min_value=10_000, max_value=999_999).map(lambda number: f"{number:06d}")  # never "00…"
bodies = st.text(alphabet=CHARSET, min_size=8, max_size=8)


@st.composite
def valid_codes(draw) -> str:
    authority, organisation_type = draw(authority_type_pairs)
    body = draw(bodies)
    assume(organisation_check_character(body) in CHARSET)
    return make_credit_code(authority, organisation_type, draw(regions), body)


# --- accepted -------------------------------------------------------------------------------------

def test_the_real_published_example_is_accepted_with_its_parts():
    parsed = parse_credit_code(PUBLISHED_EXAMPLE)
    assert parsed.code == PUBLISHED_EXAMPLE
    assert parsed.authority == "9"
    assert parsed.organisation_type == "1"
    assert parsed.region_code == "350100"
    assert parsed.organisation_code == "M000100Y4"


def test_the_helper_rebuilds_the_published_example_from_its_parts():
    assert make_credit_code("9", "1", "350100", "M000100Y") == PUBLISHED_EXAMPLE


def test_lower_case_input_is_normalised_to_upper_case():
    assert parse_credit_code(PUBLISHED_EXAMPLE.lower()).code == PUBLISHED_EXAMPLE
    assert parse_credit_code("91350100m000100y43").code == PUBLISHED_EXAMPLE


def test_surrounding_whitespace_is_ignored():
    assert parse_credit_code(f"  {PUBLISHED_EXAMPLE}\n").code == PUBLISHED_EXAMPLE


@given(pair=authority_type_pairs, region=regions, body=bodies)
def test_every_generated_valid_code_is_accepted_with_its_parts(pair, region, body):
    authority, organisation_type = pair
    assume(organisation_check_character(body) in CHARSET)
    code = make_credit_code(authority, organisation_type, region, body)
    parsed = parse_credit_code(code)
    assert parsed.code == code
    assert parsed.authority == authority
    assert parsed.organisation_type == organisation_type
    assert parsed.region_code == region
    assert parsed.organisation_code == body + organisation_check_character(body)


@given(code=valid_codes())
def test_every_generated_valid_code_is_accepted_in_lower_case(code):
    assert parse_credit_code(code.lower()).code == code


# --- any single-character change is refused ---------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(code=valid_codes())
@example(code=PUBLISHED_EXAMPLE)
def test_any_single_character_change_is_refused_naming_the_part_it_breaks(code):
    for position in range(18):
        for replacement in REPLACEMENTS:
            if replacement.upper() == code[position]:
                continue  # not a change once normalised
            changed = code[:position] + replacement + code[position + 1:]
            error = refusal(changed)
            assert error.part == expected_part(code, position, replacement), (changed, error.message)


@given(code=valid_codes(), position=st.integers(0, 17))
def test_dropping_or_adding_a_character_is_refused_as_length(code, position):
    assert refusal(code[:position] + code[position + 1:]).part == "length"
    assert refusal(code[:position] + "1" + code[position:]).part == "length"


# --- each refusal names its part --------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["", "9135010", PUBLISHED_EXAMPLE[:17], PUBLISHED_EXAMPLE + "0",
                                 PUBLISHED_EXAMPLE + PUBLISHED_EXAMPLE])
def test_a_code_not_18_characters_long_is_refused_as_length(raw):
    error = refusal(raw)
    assert error.part == "length"
    assert str(len(raw)) in error.message


@pytest.mark.parametrize("letter", list(EXCLUDED))
def test_each_excluded_letter_is_refused_as_characters_and_named(letter):
    raw = PUBLISHED_EXAMPLE[:10] + letter + PUBLISHED_EXAMPLE[11:]
    error = refusal(raw)
    assert error.part == "characters"
    assert letter in error.message


@pytest.mark.parametrize("raw", ["91350100M00010-Y43", "91350100M000 00Y43", "91350100M000100Y4é",
                                 "9135010０M000100Y43"])
def test_punctuation_spaces_and_non_ascii_characters_are_refused_as_characters(raw):
    assert refusal(raw).part == "characters"


def test_an_excluded_letter_is_reported_before_any_later_check():
    # The authority "I" would also be wrong, but the character itself is what is reported.
    assert refusal("I" + PUBLISHED_EXAMPLE[1:]).part == "characters"


@pytest.mark.parametrize("authority", sorted(set(CHARSET) - set(AUTHORITY_TYPES)))
def test_a_character_that_is_no_registration_authority_is_refused_as_authority(authority):
    raw = make_credit_code("9", "1")
    assert refusal(authority + raw[1:]).part == "authority"


@pytest.mark.parametrize(("authority", "organisation_type"), [("9", "9"), ("9", "4"), ("Y", "2"), ("2", "3"),
                                                              ("N", "5"), ("1", "A")])
def test_a_type_the_authority_does_not_register_is_refused_as_organisation_type(authority, organisation_type):
    error = refusal(make_credit_code(authority, organisation_type))
    assert error.part == "organisation_type"
    assert authority in error.message


@pytest.mark.parametrize("region", ["000000", "001234", "51013A", "5A0131", "ABCDEF"])
def test_a_region_that_is_not_six_digits_or_starts_00_is_refused_as_region(region):
    assert refusal(make_credit_code(region=region)).part == "region"


def test_a_wrong_organisation_check_character_is_refused_as_organisation_code():
    body = "MA62N8K3"
    wrong = next(c for c in "0123456789X" if c != organisation_check_character(body))
    first17 = f"91510131{body}{wrong}"
    assert refusal(first17 + check_character(first17)).part == "organisation_code"


def test_a_wrong_final_check_character_is_refused_as_check_character():
    code = make_credit_code()
    wrong = next(c for c in CHARSET if c != code[-1])
    error = refusal(code[:-1] + wrong)
    assert error.part == "check_character"


def test_swapping_two_adjacent_body_characters_is_refused():
    code = PUBLISHED_EXAMPLE
    swapped = code[:8] + code[9] + code[8] + code[10:]
    assert swapped != code
    assert refusal(swapped).part in PARTS - {"length", "characters"}
