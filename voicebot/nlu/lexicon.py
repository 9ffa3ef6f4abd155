"""Words the parsers need per language. Adding a language means adding an entry here.

A language without an entry still works for keypad input and digits written as numerals; spoken
numbers need text2num support for that language.
"""

from __future__ import annotations

HESITATIONS: dict[str, frozenset[str]] = {
    "nl": frozenset({"eh", "ehm", "uh", "uhm", "hm", "hmm", "ehh", "uhh", "euh", "nou", "eeh"}),
    "en": frozenset({"uh", "um", "uhm", "erm", "er", "hm", "hmm", "ah", "uhh", "umm"}),
}
# Last in a caller's words, these announce more ("twaalf en ...", "yes but ...", "mijn ..."): the
# end-of-turn rule waits longer after them (speech.end_silence_extended_ms) instead of cutting the
# caller off. Besides conjunctions and hesitations, the words a sentence cannot end on: articles,
# possessives and prepositions that are never left at the end. Not "een" (also the digit one), nor
# "het", "dat", "van", "voor", "naar", "op", "aan", "uit", "om", "bij" ("ik weet het", "waar gaat
# het om", "zet de verwarming aan"), nor "to" or "with" ("I'd like to"): those end Dutch and English
# sentences too often to be waited on.
MORE_WORDS: dict[str, frozenset[str]] = {
    "nl": frozenset({"en", "eh", "ehm", "uh", "uhm", "maar", "of", "dus", "want", "nou", "euh",
                     "de", "mijn", "uw", "onze", "met", "tot", "te", "omdat", "zodat"}),
    "en": frozenset({"and", "but", "or", "so", "uh", "um", "uhm", "erm", "er", "because",
                     "the", "a", "an", "my", "your", "our", "their", "of", "if", "than", "whether"}),
    "ko": frozenset({"그리고", "그런데", "근데", "그래서", "아니면", "음", "어"}),
}

# Negative phrases are checked first: "dat klopt niet" contains "klopt".
YES: dict[str, tuple[str, ...]] = {
    "nl": ("ja", "jazeker", "jawel", "jaja", "klopt", "dat klopt", "correct", "juist", "precies", "prima",
           "goed", "is goed", "oke", "okay", "ok", "oké", "zeker", "graag", "ja graag", "jep", "jup", "yes",
           "akkoord", "inderdaad", "dat is juist", "dat is goed"),
    "en": ("yes", "yeah", "yep", "yup", "correct", "right", "that's right", "thats right", "sure", "ok", "okay",
           "please", "yes please", "indeed", "absolutely", "exactly", "that is correct", "affirmative"),
    "ko": ("네", "예", "맞아요", "좋아요"),
}
NO: dict[str, tuple[str, ...]] = {
    "nl": ("nee", "neen", "nee hoor", "niet", "klopt niet", "dat klopt niet", "incorrect", "fout", "nope",
           "liever niet", "nee dank je", "nee dank u", "nee bedankt", "onjuist", "dat is niet goed", "niet goed",
           "helemaal niet", "geen", "nein"),
    "en": ("no", "nope", "nah", "not", "wrong", "incorrect", "no thanks", "no thank you", "that's wrong",
           "thats wrong", "not right", "negative"),
    "ko": ("아니요", "아니오", "아뇨", "아니"),
}

MONTHS: dict[str, dict[str, int]] = {
    "nl": {"januari": 1, "jan": 1, "februari": 2, "feb": 2, "maart": 3, "mrt": 3, "april": 4, "apr": 4,
           "mei": 5, "juni": 6, "jun": 6, "juli": 7, "jul": 7, "augustus": 8, "aug": 8, "september": 9,
           "sep": 9, "sept": 9, "oktober": 10, "okt": 10, "november": 11, "nov": 11, "december": 12, "dec": 12},
    "en": {"january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
           "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
           "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12, "dec": 12},
}
MONTH_NAMES: dict[str, tuple[str, ...]] = {
    "nl": ("januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september",
           "oktober", "november", "december"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
}
RELATIVE_DAYS: dict[str, dict[str, int]] = {
    "nl": {"vandaag": 0, "morgen": 1, "overmorgen": 2, "gisteren": -1},
    "en": {"today": 0, "tomorrow": 1, "yesterday": -1},
}
# Compound year words text2num does not split ("negentienzeventig" = 19|70).
CENTURY_PREFIXES: dict[str, tuple[str, ...]] = {
    "nl": ("negentien", "achttien", "twintig"),
    "en": (),
}

# Single digits as callers say them one by one (customer numbers, PINs read from a card). "een",
# "one", "oh" and the Korean syllables are also ordinary words ("een klantnummer", "이" = this), so
# the digit parser reads those as digits only beside another number; the rest are always digits.
DIGIT_WORDS: dict[str, dict[str, str]] = {
    "nl": {"nul": "0", "een": "1", "één": "1", "twee": "2", "drie": "3", "vier": "4", "vijf": "5", "zes": "6",
           "zeven": "7", "acht": "8", "negen": "9"},
    "en": {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
           "six": "6", "seven": "7", "eight": "8", "nine": "9"},
    "ko": {"영": "0", "공": "0", "일": "1", "이": "2", "삼": "3", "사": "4", "오": "5", "육": "6", "칠": "7",
           "팔": "8", "구": "9"},
}
AMBIGUOUS_DIGIT_WORDS: dict[str, frozenset[str]] = {
    "nl": frozenset({"een"}),
    "en": frozenset({"one", "oh", "o"}),
    "ko": frozenset({"영", "공", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"}),
}
# How callers group digits in pairs: "tweeënveertig drieëndertig", "forty two thirty three".
TEENS: dict[str, tuple[str, ...]] = {
    "nl": ("tien", "elf", "twaalf", "dertien", "veertien", "vijftien", "zestien", "zeventien", "achttien",
           "negentien"),
    "en": ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
           "nineteen"),
}
TENS: dict[str, tuple[str, ...]] = {
    "nl": ("twintig", "dertig", "veertig", "vijftig", "zestig", "zeventig", "tachtig", "negentig"),
    "en": ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"),
}
HUNDRED: dict[str, str] = {"nl": "honderd", "en": "hundred"}
# "double four" is 44: English callers read repeated digits this way.
REPEAT_WORDS: dict[str, dict[str, int]] = {
    "en": {"double": 2, "triple": 3},
}

# Spoken letter names and the spelling alphabet, for postcodes ("twaalf vierendertig bee cee").
LETTERS: dict[str, dict[str, str]] = {
    "nl": {
        "aa": "A", "bee": "B", "be": "B", "cee": "C", "ce": "C", "dee": "D", "de": "D", "ef": "F", "gee": "G",
        "ge": "G", "ha": "H", "jee": "J", "je": "J", "ka": "K", "el": "L", "em": "M", "pee": "P", "pe": "P",
        "ku": "Q", "er": "R", "es": "S", "tee": "T", "te": "T", "vee": "V", "ve": "V", "wee": "W", "we": "W",
        "iks": "X", "ij": "Y", "zet": "Z",
        "anton": "A", "bernard": "B", "cornelis": "C", "dirk": "D", "eduard": "E", "ferdinand": "F",
        "gerard": "G", "hendrik": "H", "izaak": "I", "johannes": "J", "karel": "K", "lodewijk": "L",
        "maria": "M", "nico": "N", "otto": "O", "pieter": "P", "quotiënt": "Q", "richard": "R", "simon": "S",
        "theodoor": "T", "utrecht": "U", "victor": "V", "willem": "W", "xantippe": "X", "ypsilon": "Y",
        "zacharias": "Z",
    },
    "en": {"bee": "B", "see": "C", "dee": "D", "ef": "F", "gee": "G", "aitch": "H", "jay": "J", "kay": "K",
           "el": "L", "em": "M", "en": "N", "pee": "P", "cue": "Q", "ar": "R", "es": "S", "tee": "T",
           "you": "U", "vee": "V", "ex": "X", "why": "Y", "zed": "Z", "zee": "Z"},
}

# How an opening can tell callers they are talking to a machine (EU AI Act transparency).
DISCLOSURE: dict[str, tuple[str, ...]] = {
    "nl": ("digitale assistent", "virtuele assistent", "spraakassistent", "computer", "automatische assistent",
           "chatbot", "voicebot"),
    "en": ("digital assistant", "virtual assistant", "automated assistant", "automated system", "computer",
           "voicebot", "chatbot"),
}


# The words that reach a person from any step, per language (a flow or config.yaml may replace them).
TRANSFER_WORDS: dict[str, list[str]] = {
    "nl": ["medewerker", "een medewerker", "mens", "iemand spreken"],
    "en": ["agent", "operator", "representative", "human"],
}
