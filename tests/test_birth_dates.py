"""Dates of birth as callers say and key them: in the past, plausible, real, never guessed."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.nlu.birth_dates import birth_date_from_keys, parse_birth_date
from voicebot.nlu.lexicon import MONTH_NAMES
from voicebot.nlu.slots import parse_slot

TODAY = dt.date(2026, 11, 22)
BORN = dt.date(1975, 3, 12)
PROPERTIES = settings(max_examples=300, deadline=None, derandomize=True)


@pytest.mark.parametrize("text", [
    "twaalf maart negentien vijfenzeventig",
    "twaalf maart negentienvijfenzeventig",
    "twaalf maart negentienhonderd vijfenzeventig",
    "12 maart 1975",
    "de twaalfde maart vijfenzeventig",
    "twaalf maart '75",
    "de twaalfde van de derde vijfenzeventig",
    "de twaalfde van de derde negentien vijfenzeventig",
    "twaalf drie vijfenzeventig",
    "twaalf drie negentien vijfenzeventig",
    "twaalf nul drie negentien vijfenzeventig",
    "12 3 75",
    "12-03-1975",
    "12/3/75",
    "12.03.1975",
    "1975-03-12",
    "12031975",
    "120375",
    "een twee nul drie een negen zeven vijf",
    "eh twaalf uh drie vijfenzeventig",
    "ik ben geboren op twaalf maart negentien vijfenzeventig",
    "Twaalf maart, negentien vijfenzeventig.",
])
def test_dutch_ways_of_saying_a_birth_date(text):
    assert parse_birth_date(text, "nl", TODAY) == BORN


@pytest.mark.parametrize("text", [
    "the twelfth of march nineteen seventy five",
    "twelve march nineteen seventy five",
    "march the twelfth seventy five",
    "March 12th, 1975",
    "twelve three seventy five",
    "twelve oh three seventy five",
    "uh twelve three seventy five",
])
def test_english_ways_of_saying_a_birth_date(text):
    assert parse_birth_date(text, "en", TODAY) == BORN


@pytest.mark.parametrize("text, expected", [
    ("de eerste van de tweede tweeduizend", dt.date(2000, 2, 1)),
    ("één één nul nul", dt.date(2000, 1, 1)),
    ("eenendertig december negentien negenennegentig", dt.date(1999, 12, 31)),
    ("negenentwintig februari zesenzeventig", dt.date(1976, 2, 29)),     # a leap year
    ("vijf vijf nul vijf", dt.date(2005, 5, 5)),
    ("twintig twaalf negentien zeventig", dt.date(1970, 12, 20)),
    ("vijf maart twintig nul vijf", dt.date(2005, 3, 5)),
])
def test_more_dates(text, expected):
    assert parse_birth_date(text, "nl", TODAY) == expected


@pytest.mark.parametrize("text, expected", [
    ("21 11 26", dt.date(2026, 11, 21)),      # yesterday
    ("22 11 26", dt.date(1926, 11, 22)),      # today's date is nobody's birth date yet: a century back
    ("23 11 26", dt.date(1926, 11, 23)),      # later this year has not come: a century back
    ("1 1 27", dt.date(1927, 1, 1)),
    ("12 3 00", dt.date(2000, 3, 12)),
    ("12 3 99", dt.date(1999, 3, 12)),
])
def test_a_year_without_its_century_is_the_latest_that_lies_in_the_past(text, expected):
    assert parse_birth_date(text, "nl", TODAY) == expected


def test_a_birth_date_is_past_where_an_appointment_date_is_ahead():
    assert parse_slot("date", "12-12-26", "nl", today=TODAY) == dt.date(2026, 12, 12)
    assert parse_slot("birth_date", "12-12-26", "nl", today=TODAY) == dt.date(1926, 12, 12)
    assert parse_slot("date", "twaalf maart", "nl", today=TODAY) == dt.date(2027, 3, 12)
    assert parse_slot("birth_date", "twaalf maart", "nl", today=TODAY) is None


@pytest.mark.parametrize("text", [
    "eenendertig februari negentien vijfenzeventig",
    "dertig februari vijfenzeventig",
    "negenentwintig februari vijfenzeventig",        # 1975 was no leap year
    "31 4 1975",
    "twaalf dertien vijfenzeventig",                  # month 13
    "12 0 75",
    "0 3 75",
    "32 3 75",
])
def test_impossible_dates_are_refused(text):
    assert parse_birth_date(text, "nl", TODAY) is None


@pytest.mark.parametrize("text", [
    "12 maart 2030",                  # the future
    "22 11 2026",                     # today
    "1 1 1900",                       # 126 years ago
    "22 11 1906",                     # exactly 120 years ago
    "12 maart 1850",
])
def test_future_and_implausibly_old_dates_are_refused(text):
    assert parse_birth_date(text, "nl", TODAY) is None


def test_the_oldest_plausible_birth_date_is_just_under_120_years():
    assert parse_birth_date("23 11 1906", "nl", TODAY) == dt.date(1906, 11, 23)


@pytest.mark.parametrize("text", [
    "twaalf maart",                                              # no year: never guessed
    "twaalf",
    "weet ik niet",
    "",
    "12 3",
    "twaalf maart vijfenzeventig en mijn nummer is 12345",     # more numbers than a date holds
    "maart of april vijfenzeventig",
    "12 3 975",
    "123 3 75",
    "twaalf maart " + "negen " * 200,
])
def test_no_year_or_unclear_text_gives_no_date(text):
    assert parse_birth_date(text, "nl", TODAY) is None


def test_leap_day_today_still_bounds_the_age():
    leap = dt.date(2028, 2, 29)
    assert parse_birth_date("1 3 1908", "nl", leap) == dt.date(1908, 3, 1)
    assert parse_birth_date("28 2 1908", "nl", leap) is None


@pytest.mark.parametrize("keys, expected", [
    ("12031975", BORN),
    ("120375", BORN),
    ("01012000", dt.date(2000, 1, 1)),
    ("010100", dt.date(2000, 1, 1)),
    ("31021975", None),
    ("12131975", None),
    ("1203197", None),
    ("1203", None),
    ("12031975#", None),
    ("１２０３１９７５", None),
    ("12032030", None),
    ("", None),
])
def test_keyed_birth_dates(keys, expected):
    assert birth_date_from_keys(keys, TODAY) == expected


# -- properties ------------------------------------------------------------------------------------

todays = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2150, 12, 31))
fragments = st.sampled_from([
    "twaalf", "maart", "negentien", "vijfenzeventig", "de", "van", "derde", "eerste", "nul", "een", "twee",
    "dertig", "februari", "tweeduizend", "eenendertig", "december", "12", "3", "75", "1975", "2030", "00",
    "31", "29", "13", "0", "-", "/", "eh", "1900", "99", "negenentwintig", "honderd", "twintig",
])
answers = st.one_of(
    st.lists(fragments, max_size=8).map(" ".join),
    st.text(max_size=40),
    st.tuples(st.integers(0, 40), st.integers(0, 14), st.integers(0, 2200)).map(lambda t: f"{t[0]}-{t[1]}-{t[2]}"),
)


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def _bounds(today: dt.date) -> tuple[dt.date, dt.date]:
    return _years_before(today, 120), today


@PROPERTIES
@given(text=answers, today=todays)
def test_any_birth_date_understood_lies_within_120_years_before_today(text, today):
    for language in ("nl", "en"):
        born = parse_birth_date(text, language, today)
        if born is not None:
            oldest, newest = _bounds(today)
            assert oldest < born < newest, (text, today, born)


@st.composite
def birth_dates_and_todays(draw):
    today = draw(todays)
    oldest, _ = _bounds(today)
    born = draw(st.dates(min_value=oldest + dt.timedelta(days=1), max_value=today - dt.timedelta(days=1)))
    return born, today


@PROPERTIES
@given(birth_dates_and_todays())
def test_eight_keys_give_back_every_plausible_birth_date(pair):
    born, today = pair
    assert birth_date_from_keys(born.strftime("%d%m%Y"), today) == born


@PROPERTIES
@given(birth_dates_and_todays())
def test_six_keys_give_back_every_birth_date_of_the_last_hundred_years(pair):
    born, today = pair
    keyed = birth_date_from_keys(born.strftime("%d%m%y"), today)
    if born > _years_before(today, 100):
        assert keyed == born
    else:           # an older one gives the latest past date with the same day, month and two-digit year
        assert keyed is None or (born <= keyed < today and (keyed.day, keyed.month, keyed.year % 100)
                                 == (born.day, born.month, born.year % 100))


@PROPERTIES
@given(birth_dates_and_todays(), st.sampled_from(["{d} {month} {y}", "{d}-{m}-{y}", "{d:02}/{m:02}/{y}",
                                                  "de {d}e van de {m}e {y}", "{d} {m} {y}"]))
def test_written_forms_give_back_every_plausible_birth_date(pair, form):
    born, today = pair
    text = form.format(d=born.day, m=born.month, y=born.year, month=MONTH_NAMES["nl"][born.month - 1].lower())
    assert parse_birth_date(text, "nl", today) == born
