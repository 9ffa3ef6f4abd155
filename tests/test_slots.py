import datetime as dt

import pytest

from voicebot.nlu.normalize import contains_phrase, normalize
from voicebot.nlu.slots import (
    extract_entities, parse_choice, parse_date, parse_digits, parse_number, parse_postcode, parse_score,
    parse_yes_no,
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
])
def test_postcodes(text, expected):
    assert parse_postcode(text, "nl") == expected


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


def test_normalize_and_phrases():
    assert normalize("Eh, ik wil een MEDEWERKER!", "nl") == "ik wil een medewerker"
    assert contains_phrase("eh mag ik een medewerker", "medewerker", "nl")
    assert not contains_phrase("de medewerkers zijn aardig", "medewerker", "nl")


def test_extract_entities():
    assert extract_entities("mijn postcode is twaalf vierendertig a b", "nl")["postcode"] == "1234 AB"
    assert extract_entities("verhuizen op vijf maart", "nl", TODAY)["date"] == "2027-03-05"
