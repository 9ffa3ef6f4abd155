import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.dialog.present import MASKS, masked, spoken
from voicebot.flow.messages import MESSAGES
from voicebot.nlu.lexicon import DIGIT_WORDS, TEENS, TENS
from voicebot.nlu.normalize import ascii_digits, contains_phrase, normalize
from voicebot.nlu.numbers import digit_phrases
from voicebot.nlu.slots import (
    PIN_LENGTH, SECRET_SLOT_TYPES, SLOT_TYPES, extract_entities, house_number, parse_choice, parse_date,
    parse_digits, parse_house_number, parse_number, parse_pin, parse_postcode, parse_score, parse_slot,
    parse_yes_no, pin_from_keys,
)

TODAY = dt.date(2026, 11, 22)


@pytest.mark.parametrize("text, lang, expected", [
    ("twaalfduizend driehonderdvijfenveertig", "nl", 12345),
    ("eh mijn stand is vierduizend tweehonderd", "nl", 4200),
    ("een twee drie vier", "nl", 1234),
    ("12345", "nl", 12345),
    ("twelve thousand three hundred and forty five", "en", 12345),
    ("geen idee", "nl", None),
])
def test_numbers(text, lang, expected):
    assert parse_number(text, lang) == expected


@pytest.mark.parametrize("text, length, expected", [
    ("een twee drie vier vijf zes", None, "123456"),
    ("nul zes twaalf vierendertig", None, "061234"),
    ("mijn klantnummer is vier vier vijf zes zeven acht", (6, 8), "445678"),
    ("een twee drie", (6, 8), None),
    ("weet ik niet", None, None),
])
def test_digits(text, length, expected):
    assert parse_digits(text, "nl", length) == expected


@pytest.mark.parametrize("text, lang, expected", [
    ("vier twee drie nul nul één", "nl", "423001"),
    ("tweeënveertig drieëndertig", "nl", "4233"),
    ("tweeenveertig drieendertig", "nl", "4233"),          # typed without the diaeresis
    ("vier-twee-drie", "nl", "423"),
    ("4 2 3", "nl", "423"),
    ("4-2-3", "nl", "423"),
    ("vier 2 drie", "nl", "423"),
    ("eh vier uh twee ehm drie", "nl", "423"),
    ("nul zes, twaalf, vierendertig, zesenvijftig, achtenzeventig", "nl", "0612345678"),
    ("mijn klantnummer is vier vier vijf zes zeven acht", "nl", "445678"),
    ("één", "nl", "1"),
    ("een", "nl", "1"),
    ("twee", "nl", "2"),
    ("nul nul een", "nl", "001"),
    ("een twee een", "nl", "121"),
    ("ik heb een klantnummer vier vijf zes", "nl", "456"),  # the article is no digit
    ("vier honderd twaalf", "nl", "412"),
    ("vier twee streepje drie", "nl", "423"),
    ("１２３", "nl", "123"),
    ("٤٢٣", "nl", "423"),
    ("oh four two", "en", "042"),
    ("four double two one", "en", "4221"),
    ("triple seven", "en", "777"),
    ("one", "en", "1"),
    ("forty two thirty three", "en", "4233"),
    ("uh four two three", "en", "423"),
    ("일 이 삼", "ko", "123"),
    ("일이삼 공", "ko", "1230"),
    ("이 번호는 일 이", "ko", "12"),                          # "이" (this) is no digit beside words
    ("geen idee", "nl", None),
    ("", "nl", None),
    ("double", "en", None),
])
def test_digit_strings_as_callers_say_them(text, lang, expected):
    assert parse_slot("digits", text, lang) == expected


def test_a_digit_answer_too_long_to_be_one_is_refused():
    assert parse_digits("vier " * 200, "nl") is None


digit_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from([*DIGIT_WORDS["nl"], *TEENS["nl"], *TENS["nl"], "honderd", "duizend", "eh", "en",
                              "tweeënveertig", "miljoen", "komma", "-", "½", "²", "٣", "１", "1.5", "-3"]),
             max_size=12).map(" ".join),
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(text=digit_texts, lang=st.sampled_from(["nl", "en", "ko", "de"]))
def test_the_digit_parser_never_returns_anything_but_ascii_digits(text, lang):
    digits = parse_digits(text, lang)
    assert digits is None or re.fullmatch(r"[0-9]+", digits), (text, digits)


def _nl_pair(n: int) -> str:
    """How a Dutch caller says 0..99 as one group."""
    units = [w for w in DIGIT_WORDS["nl"] if w != "één"]
    if n < 10:
        return units[n]
    if n < 20:
        return TEENS["nl"][n - 10]
    tens, one = TENS["nl"][n // 10 - 2], n % 10
    return tens if not one else f"{units[one]}{'ën' if units[one].endswith('e') else 'en'}{tens}"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 99), min_size=1, max_size=8))
def test_digits_said_one_by_one_or_in_pairs_come_back_in_order(groups):
    text = " ".join(_nl_pair(n) for n in groups)
    assert parse_digits(text, "nl") == "".join(str(n) for n in groups)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(alphabet="0123456789", min_size=1, max_size=12), st.sampled_from(["nl", "en", "ko"]))
def test_digits_said_as_words_come_back(digits, lang):
    words = {d: w for w, d in reversed(DIGIT_WORDS[lang].items())}   # first word per digit
    assert parse_digits(" ".join(words[d] for d in digits), lang) == digits


@pytest.mark.parametrize("lang", ["nl", "en", "ko"])
def test_every_word_of_the_digit_grammar_is_understood(lang):
    phrases = digit_phrases(lang)
    assert all(p == p.lower() and p.strip() == p for p in phrases)
    assert len(set(phrases)) == len(phrases)
    for phrase in phrases:
        if phrase in ("double", "triple"):
            assert parse_digits(f"{phrase} four", lang) is not None
        else:
            assert parse_digits(phrase, lang) is not None, phrase


def test_the_digit_grammar_holds_what_callers_say():
    nl = set(digit_phrases("nl"))
    assert {"nul", "een", "één", "negen", "tien", "negentien", "twintig", "negentig", "tweeënveertig",
            "drieëndertig", "eenentwintig", "negenennegentig", "honderd"} <= nl
    assert {parse_digits(p, "nl") for p in nl} >= {str(n) for n in range(100)}          # every pair, one word
    assert "duizend" not in nl
    assert {"zero", "oh", "nine", "nineteen", "ninety", "hundred", "double"} <= set(digit_phrases("en"))
    assert set(digit_phrases("ko")) == {"영", "공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"}
    assert digit_phrases("xx") == ()


def test_ascii_digits():
    assert ascii_digits("１２ abc ٣") == "12 abc 3"
    assert ascii_digits("²") == "²"


@pytest.mark.parametrize("text, lang, expected", [
    ("vijf maart negentienzeventig", "nl", dt.date(1970, 3, 5)),
    ("de vijfde maart negentien zeventig", "nl", dt.date(1970, 3, 5)),
    ("eenendertig december tweeduizend zesentwintig", "nl", dt.date(2026, 12, 31)),
    ("twaalf januari", "nl", dt.date(2027, 1, 12)),
    ("morgen", "nl", dt.date(2026, 11, 23)),
    ("05-03-1970", "nl", dt.date(1970, 3, 5)),
    ("the fifth of march nineteen seventy", "en", dt.date(1970, 3, 5)),
    ("dertig februari", "nl", None),
    ("volgende week ergens", "nl", None),
])
def test_dates(text, lang, expected):
    assert parse_date(text, lang, TODAY) == expected


@pytest.mark.parametrize("text, expected", [
    ("twaalf vierendertig a b", "1234 AB"),
    ("mijn postcode is 1234ab", "1234 AB"),
    ("een twee drie vier anton bernard", "1234 AB"),
    ("vijfendertig twaalf bee cee", "3512 BC"),
    ("0123 ab", None),
    ("twaalf vierendertig", None),
    ("1234 ss", None),
    ("１２３４ ab", "1234 AB"),
    ("²²²² ab", None),
])
def test_postcodes(text, expected):
    assert parse_postcode(text, "nl") == expected


@pytest.mark.parametrize("text, expected", [
    ("twaalf", "12"), ("12", "12"), ("12a", "12A"), ("12 a", "12A"), ("12-A", "12A"), ("twaalf a", "12A"),
    ("twaalf bee", "12B"), ("nummer twaalf", "12"), ("huisnummer 12-b", "12B"), ("honderdtwaalf", "112"),
    ("een twee twee", "122"), ("1 2 2", "122"), ("eh twaalf", "12"), ("99999", "99999"),
    ("12 2 hoog", None), ("twaalf twee", None), ("0", None), ("012", None), ("123456", None), ("", None),
    ("weet ik niet", None), ("nummer 12 in 1234 ab", None), ("12 ab", "12"),
])
def test_house_numbers(text, expected):
    assert parse_slot("house_number", text, "nl") == expected


@pytest.mark.parametrize("value, expected", [
    ("12", "12"), (" 12 a ", "12A"), ("12-b", "12B"), ("12B", "12B"), ("１２", "12"),
    ("12 bis", None), ("12-2", None), ("A12", None), ("0", None), ("", None),
])
def test_house_numbers_as_the_directory_stores_them(value, expected):
    assert house_number(value) == expected


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(1, 99999), st.sampled_from(["", "a", "B", "z"]), st.sampled_from(["", " ", "-", " - "]))
def test_written_house_numbers_come_back_in_one_form(number, letter, sep):
    written = f"{number}{sep if letter else ''}{letter}"
    assert house_number(written) == parse_house_number(written) == f"{number}{letter.upper()}"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.text(max_size=40))
def test_a_house_number_is_always_digits_and_perhaps_one_capital(text):
    value = parse_house_number(text, "nl")
    assert value is None or re.fullmatch(r"[1-9][0-9]{0,4}[A-Z]?", value), (text, value)


@pytest.mark.parametrize("text", ["een twee drie vier", "1234", "mijn pincode is 1234", "vier vier vier vier"])
def test_a_pin_is_never_taken_from_speech(text):
    assert parse_pin(text, "nl") is None and parse_slot("pin", text, "nl") is None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=12))
def test_a_keyed_pin_is_4_to_8_ascii_digits_exactly_as_pressed(keys):
    pin = pin_from_keys(keys)
    valid = bool(re.fullmatch(r"[0-9]{4,8}", keys))
    assert pin == (keys if valid else None)


def test_a_step_may_narrow_the_pin_length_but_not_widen_it():
    assert PIN_LENGTH == (4, 8)
    assert pin_from_keys("1234", (4, 4)) == "1234" and pin_from_keys("12345", (4, 4)) is None
    assert pin_from_keys("123", (3, 10)) is None and pin_from_keys("123456789", (3, 10)) is None


def test_the_new_types_are_slot_types_and_the_secret_ones_are_known():
    assert {"birth_date", "house_number", "pin"} <= set(SLOT_TYPES)
    assert SECRET_SLOT_TYPES == {"birth_date", "pin"} == set(MASKS)
    for language in ("nl", "en"):                 # a reprompt adds the hint for the step's slot type
        assert all(f"hint_{kind}" in MESSAGES[language] for kind in SLOT_TYPES)


@pytest.mark.parametrize("kind, value", [
    ("birth_date", dt.date(1975, 3, 12)), ("birth_date", "1975-03-12"), ("pin", "1234"), ("pin", "87654321"),
])
def test_secret_types_are_never_shown_or_said(kind, value):
    out = masked(value, kind)
    assert out == MASKS[kind] and not re.search(r"[0-9]", out)
    for language in ("nl", "en"):
        said = spoken(value, kind, language, MESSAGES[language])
        assert said == MESSAGES[language]["provided"] and not re.search(r"[0-9]", said)
    assert masked("1234", "pin") == masked("12345678", "pin")              # not even the length


def test_house_numbers_are_said_with_the_letter_apart():
    assert spoken("12A", "house_number", "nl", MESSAGES["nl"]) == "12 A"
    assert spoken("12", "house_number", "nl", MESSAGES["nl"]) == "12"


@pytest.mark.parametrize("text, lang, expected", [
    ("ja", "nl", True), ("ja hoor dat klopt", "nl", True), ("jazeker", "nl", True), ("eh oké", "nl", True),
    ("nee", "nl", False), ("dat klopt niet", "nl", False), ("nee hoor", "nl", False),
    ("misschien", "nl", None), ("yes please", "en", True), ("no that's wrong", "en", False),
])
def test_yes_no(text, lang, expected):
    assert parse_yes_no(text, lang) is expected


def test_choice_and_score():
    choices = {"damaged": ["broken", "damaged"], "wrong_size": ["too small", "too big", "wrong size"]}
    assert parse_choice("uh it is too small", choices, "en") == "wrong_size"
    assert parse_choice("it arrived broken", choices, "en") == "damaged"
    assert parse_choice("no idea", choices, "en") is None
    assert parse_score("vier", "nl") == 4
    assert parse_score("ik geef een vijf", "nl") == 5
    assert parse_score("zes", "nl") is None
    assert parse_score("twee", "nl") == 2 and parse_score("een", "nl") == 1 and parse_score("one", "en") == 1


def test_normalize_and_phrases():
    assert normalize("Eh, ik wil een MEDEWERKER!", "nl") == "ik wil een medewerker"
    assert contains_phrase("eh mag ik een medewerker", "medewerker", "nl")
    assert not contains_phrase("de medewerkers zijn aardig", "medewerker", "nl")


def test_extract_entities():
    assert extract_entities("mijn postcode is twaalf vierendertig a b", "nl")["postcode"] == "1234 AB"
    assert extract_entities("verhuizen op vijf maart", "nl", TODAY)["date"] == "2027-03-05"
