"""The recognizers privgate adds to Presidio's, and when a recognizer can be skipped.

Presidio has no recognizer for ZIP codes, dates of birth, street addresses or record
numbers. The four here are Presidio `PatternRecognizer`s, scored and context-boosted the
Presidio way: an ambiguous shape (five digits, a date) scores 0.15 alone and 0.5 once a
context word (`ZIP`, `born`, `DOB`, a `zip_code` column name) stands in the five words
before it, which is what the scan (0.5) and redaction (0.3) thresholds expect. Their
patterns are case-sensitive, because capitals are what tell `12 Rue Lecourbe` from
`12 rue lecourbe noted`.

`could_hold` gives, per entity, a necessary condition on a text: a cheap regex that
every text a recognizer can report on also matches (PhoneRecognizer needs seven digits
close together, the card recognizer twelve, an email an `@`). A recognizer is only run on
texts that pass it; `tests/unit/test_recognizers.py` checks on the labelled corpus that
skipping changes no finding.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import regex
from presidio_analyzer import (
    AnalysisExplanation,
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerResult,
)
from spacy.lang.en.stop_words import STOP_WORDS

from privgate.pii.names import NameLexicon, name_lexicon

# Presidio compiles patterns with IGNORECASE by default; these rely on capitals.
_CASE_SENSITIVE = re.DOTALL | re.MULTILINE
# Alone, a bare five digits or a date is likely something else; with context it counts.
_AMBIGUOUS = 0.15
_SPECIFIC = 0.6

_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"  # Latin capitals, accented ones included
_NAME_WORD = rf"[{_UPPER}][\w'’-]*"
_CITY = rf"(?:,\s*(?:\d{{4,5}}\s+)?{_NAME_WORD}(?:[ -]{_NAME_WORD})?)?"


_US_SUFFIX = (
    "Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Terrace|"
    "Way|Place|Pl|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Trail|Square|Sq"
)
_UNIT = r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*[\w-]+)?"
_FR_TYPE = "[Rr]ue|[Aa]venue|[Bb]oulevard|[Pp]lace|[Cc]hemin|[Aa]llée|[Ii]mpasse|[Qq]uai|[Cc]ours"
_FR_LINK = r"(?:(?:de|du|des|la|le|les)\s+|l'|d')"
_DE_SUFFIX = r"straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee"
_ES_TYPE = r"Calle|C/|Avenida|Avda\.|Plaza|Paseo|Camino|Carrer|Ronda|Travesía"
_ES_LINK = r"(?:(?:de|del|la|las|los|el)\s+)"

# Titles and honorifics that stand before a surname, in the languages the notes use
# (`Sig.`, `Ing.` and `Dott.` are Italian, `Pt` a clinician's shorthand for patient).
_TITLES = (
    "Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Rev|Sir|Dame|Pt|Sig|Sig\\.ra|Sigra|Ing|Dott|Dott\\.ssa|Avv|"
    "Herr|Frau|Mme|Mlle|Sr|Sra|Srta|Don|Doña|Pan|Pani"
)
_TITLED = rf"(?<![\w.])(?:{_TITLES})\.?\s+(?:{_NAME_WORD}\s+){{0,2}}{_NAME_WORD}"

# entity -> (patterns, context words)
_RECOGNIZERS: dict[str, tuple[tuple[Pattern, ...], tuple[str, ...]]] = {
    # A title then one to three capitalized words: whoever NER tags or not, a person.
    "PERSON": ((Pattern("titled name", _TITLED, _SPECIFIC),), ()),
    "US_ZIP_CODE": (
        (
            Pattern("zip", r"\b\d{5}\b(?!-\d)", _AMBIGUOUS),
            Pattern("zip+4", r"\b\d{5}-\d{4}\b", _AMBIGUOUS + 0.1),
        ),
        ("zip", "zipcode", "postal", "postcode"),
    ),
    "DATE_OF_BIRTH": (
        (
            Pattern(
                "iso", r"\b(?:18|19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b", _AMBIGUOUS
            ),
            Pattern(
                "us",
                r"\b(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:18|19|20)\d\d\b",
                _AMBIGUOUS,
            ),
            Pattern(
                "eu",
                r"\b(?:0?[1-9]|[12]\d|3[01])\.(?:0?[1-9]|1[0-2])\.(?:18|19|20)\d\d\b",
                _AMBIGUOUS,
            ),
        ),
        ("born", "birth", "dob", "birthday", "birthdate"),
    ),
    "UNIQUE_ID": (
        (
            Pattern(
                "record prefix",
                r"\b(?:MRN|EMPI|PID|MBR|ACCT|CHART|PATIENT|MEMBER)"
                r"(?:[ #:-]|No\.?\s?){0,2}\d{6,12}\b",
                _SPECIFIC,
            ),
            Pattern("letters and digits", r"\b[A-Z]{1,4}-?\d{6,12}\b", _AMBIGUOUS),
        ),
        ("mrn", "record", "chart", "patient", "member", "account", "acct", "id"),
    ),
    "STREET_ADDRESS": (
        (
            Pattern(
                "us",
                rf"\b\d{{1,6}}\s+(?:{_NAME_WORD}\s+){{1,3}}(?:{_US_SUFFIX})\b\.?{_UNIT}{_CITY}",
                _SPECIFIC,
            ),
            Pattern(
                "fr",
                rf"\b\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:{_FR_TYPE})\s+{_FR_LINK}*{_NAME_WORD}"
                rf"(?:\s+{_FR_LINK}*{_NAME_WORD})*{_CITY}",
                _SPECIFIC,
            ),
            Pattern(
                "de",
                rf"\b[{_UPPER}][a-zäöüß-]*(?:{_DE_SUFFIX})\s+\d{{1,4}}\s?[a-z]?\b{_CITY}",
                _SPECIFIC,
            ),
            Pattern(
                "es",
                rf"(?<![\w/])(?:{_ES_TYPE})\s+{_ES_LINK}*{_NAME_WORD}"
                rf"(?:\s+{_ES_LINK}*{_NAME_WORD})*,?\s+\d{{1,4}}\b{_CITY}",
                _SPECIFIC,
            ),
        ),
        ("address", "street", "lives", "home", "mailing", "residence"),
    ),
}


# A capitalized word (a capital, letters with one lowercase at least, no digit glued on)
# and a run of two to four of them, initials and name particles allowed in between.
CAPITALIZED_WORD = (
    r"(?<![\p{L}\p{M}\p{N}_])\p{Lu}[\p{L}\p{M}'’-]*\p{Ll}[\p{L}\p{M}'’-]*(?![\p{L}\p{M}\p{N}_])"
)
_PARTICLE = r"(?:de|da|del|della|di|do|dos|du|van|von|der|den|ter|le|la|bin|ibn|al|el)"
# Words apart by spaces, or by one line break (a name wrapped at the end of a line).
_GAP = r"(?:[ ]+|[ \t]*\n[ \t]*)"
_NAME_RUN = regex.compile(
    rf"{CAPITALIZED_WORD}(?:{_GAP}(?:\p{{Lu}}\.[ ]+)?(?:{_PARTICLE}[ ]+)?{CAPITALIZED_WORD}){{1,3}}"
)
CAPITALIZED = regex.compile(CAPITALIZED_WORD)


def _person(
    recognizer: EntityRecognizer, start: int, end: int, score: float, why: str
) -> RecognizerResult:
    """Return a PERSON result of `recognizer`, labelled the way Presidio labels its own."""
    return RecognizerResult(
        entity_type="PERSON",
        start=start,
        end=end,
        score=score,
        analysis_explanation=AnalysisExplanation(
            recognizer=recognizer.name, original_score=score, textual_explanation=why
        ),
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )


class CapitalizedNameRecognizer(LocalRecognizer):
    """Two to four capitalized words, one of them not an English word: a weak PERSON.

    spaCy's small English model misses many names from other languages (`Chloé
    Girard`, `Ọlátúnjí`); a run of capitalized words that are not all English words is
    most often one. It scores 0.35: enough for redaction (0.3), not for the scan (0.5)
    or the residual re-scan (0.4) on its own; a context word before it (`spouse`,
    `Dr`) lifts it to 0.7. Street names lose to the address recognizer's 0.6.
    """

    SCORE = 0.35
    CONTEXT = (
        "mr",
        "mrs",
        "ms",
        "dr",
        "name",
        "spouse",
        "wife",
        "husband",
        "caregiver",
        "guardian",
        "mother",
        "father",
        "son",
        "daughter",
        "contact",
        "referred",
    )

    def __init__(self, english_words: frozenset[str], supported_language: str = "en") -> None:
        self.english_words = english_words
        self.necessary_patterns = [_NAME_RUN]
        super().__init__(
            supported_entities=["PERSON"],
            name="privgate_capitalized_name",
            supported_language=supported_language,
            context=list(self.CONTEXT),
        )

    def load(self) -> None:
        """Nothing to load: the pattern is compiled at import."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Return a PERSON result for each run of capitalized words not all English."""
        if "PERSON" not in entities:
            return []
        results = []
        for run in _NAME_RUN.finditer(text):
            words = CAPITALIZED.findall(run.group())
            if all(word.lower() in self.english_words for word in words):
                continue
            results.append(
                _person(self, run.start(), run.end(), self.SCORE, "capitalized, not all English")
            )
        return results


# Phone-shaped digit groups, whether or not a numbering plan assigns them: North-American
# 3-3-4 with `(`, `)`, `.`, `-` or spaces (`/` after the area code too; an optional +1 in
# front), and E.164 (`+`, a country code, two to five groups). Presidio's
# PhoneRecognizer keeps only numbers that libphonenumber validates, so `(232) 213-1582`
# (no such area code) survived redaction; a mistyped, old or foreign number is still
# somebody's. Same base score as Presidio's (0.4), raised by the same context words; a
# validated number scores the same or more.
PHONE_SHAPE_SCORE = 0.4
PHONE_SHAPES = (
    Pattern(
        "NANP shape",
        r"(?<![\w+])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ ./-])\d{3}[ .-]\d{4}(?!\w)",
        PHONE_SHAPE_SCORE,
    ),
    Pattern(
        "E.164 shape",
        r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)",
        PHONE_SHAPE_SCORE,
    ),
)
PHONE_CONTEXT = ("phone", "telephone", "tel", "call", "called", "mobile", "cell", "contact")


# Two capitalized words apart by whitespace (a line break too) or a comma: `Ana Díaz`,
# `Ana\nDíaz`, `Díaz, Ana`; and two lowercase words (`ana díaz`), a name typed in a hurry.
_NAME_PAIR = regex.compile(rf"(?=({CAPITALIZED_WORD})(,?[ \t]*\n?[ \t]*)({CAPITALIZED_WORD}))")
_LOWER_WORD = r"(?<![\p{L}\p{M}\p{N}_'’-])\p{Ll}[\p{Ll}\p{M}'’-]+(?![\p{L}\p{M}\p{N}_'’-])"
_LOWER_PAIR = regex.compile(rf"(?=({_LOWER_WORD})([ \t]*\n?[ \t]*)({_LOWER_WORD}))")


class NameLexiconRecognizer(LocalRecognizer):
    """A first name from the lexicon next to a surname: a PERSON, whatever NER says.

    A second signal for names besides spaCy's NER (which misses `Regina Jones` or
    `Bradley Cherry` in ordinary sentences), from the first- and last-name lexicon
    (`privgate.pii.names`, Faker's every locale):

    - two capitalized words, the first a first name and the second a surname or not an
      English word; written `Surname, First`, the other way round (0.5: redacted at
      0.3, counted by the scan at 0.5 and the re-scan at 0.4). `Surname, First` with
      only one of the two in the lexicon and neither an English word scores 0.35;
    - two lowercase words, neither a common English word (a stop word, or one in the
      dictionary and in no name list), with one of them in the lexicon as what its
      place says (a first name first, a surname second) or a cue word just before them
      (`spoke with`, `addressed to`, `contact:`): 0.35, redacted and left to the
      residual gate's own signals otherwise. `will grant` or `continue warfarin` in a
      sentence stay; so does `seen with wife` (`wife` is a common word).
    - `Surname, First` with neither in the lexicon, neither an English word, after a cue
      word (`Patient name: Seo, Nisse`): 0.35.

    A line break between the two words does not hide them.
    """

    SCORE = 0.5
    WEAK_SCORE = 0.35

    def __init__(
        self,
        english_words: frozenset[str],
        lexicon: NameLexicon,
        supported_language: str = "en",
    ) -> None:
        self.english_words = english_words
        self.lexicon = lexicon
        self.necessary_patterns = [_NAME_PAIR, _LOWER_PAIR]
        super().__init__(
            supported_entities=["PERSON"],
            name="privgate_name_lexicon",
            supported_language=supported_language,
        )

    def load(self) -> None:
        """Nothing to load: the lexicon is read once per process."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        """Return a PERSON result for each first name and surname pair."""
        if "PERSON" not in entities:
            return []
        first, last = self.lexicon.first, self.lexicon.last
        results = []
        for pair in _NAME_PAIR.finditer(text):
            one, two = pair.group(1).casefold(), pair.group(3).casefold()
            score = 0.0
            if "," in pair.group(2):
                if one in last and two in first:
                    score = self.SCORE
                elif (
                    one not in self.english_words
                    and two not in self.english_words
                    and (one in last or two in first or _cued(text, pair.start(1)))
                ):
                    score = self.WEAK_SCORE
            elif one in first and (two in last or two not in self.english_words):
                score = self.SCORE
            if score:
                results.append(
                    _person(self, pair.start(1), pair.end(3), score, "lexicon name pair")
                )
        for pair in _LOWER_PAIR.finditer(text):
            one, two = pair.group(1), pair.group(3)
            if self._common(one) or self._common(two):
                continue
            if one in first or two in last or _cued(text, pair.start(1)):
                results.append(
                    _person(
                        self, pair.start(1), pair.end(3), self.WEAK_SCORE, "lowercase name pair"
                    )
                )
        return results

    def _common(self, word: str) -> bool:
        """Return whether `word` (folded) is a stop word, or an English word nobody's name."""
        return word in _STOP_WORDS or (
            word in self.english_words
            and word not in self.lexicon.first
            and word not in self.lexicon.last
        )


_STOP_WORDS = frozenset(STOP_WORDS)
# Words that announce a person right after them: `spoke with`, `addressed to`, `name:`.
_CUE = regex.compile(
    r"(?:^|[^\p{L}])(?:with|to|for|by|from|contact|name|named|called|patient|pt|mr|mrs|ms|dr|"
    r"wife|husband|spouse|partner|son|daughter|mother|father|caregiver|guardian|sister|"
    r"brother)[ \t]*[:,-]?[ \t]*$",
    regex.IGNORECASE,
)


def _cued(text: str, start: int) -> bool:
    """Return whether a name cue word ends just before `start`."""
    return _CUE.search(text, max(0, start - 24), start) is not None


def custom_recognizers(
    language: str, english_words: frozenset[str], *, strict_phone_validation: bool = False
) -> list[EntityRecognizer]:
    """Return privgate's recognizers for `language`, to add to Presidio's registry.

    With `strict_phone_validation` off (the default), phone-shaped digit groups are
    PHONE_NUMBER findings whether or not libphonenumber validates them.
    """
    phone_shapes: list[EntityRecognizer] = []
    if not strict_phone_validation:
        phone_shapes.append(
            PatternRecognizer(
                supported_entity="PHONE_NUMBER",
                name="privgate_phone_shape",
                patterns=list(PHONE_SHAPES),
                context=list(PHONE_CONTEXT),
                supported_language=language,
                global_regex_flags=_CASE_SENSITIVE,
            )
        )
    patterns: list[EntityRecognizer] = [
        PatternRecognizer(
            supported_entity=entity,
            name=f"privgate_{entity.lower()}",
            patterns=list(patterns),
            context=list(context),
            supported_language=language,
            global_regex_flags=_CASE_SENSITIVE,
        )
        for entity, (patterns, context) in _RECOGNIZERS.items()
    ]
    return [
        CapitalizedNameRecognizer(english_words, supported_language=language),
        NameLexiconRecognizer(english_words, name_lexicon(), supported_language=language),
        *patterns,
        *phone_shapes,
    ]


# Necessary conditions, checked on the normalized text (NFKC, zero-width removed).
# Each pattern matches wherever the entity's Presidio recognizer could report a finding
# we keep: digits may be split by at most a few separators (phonenumbers' and the
# recognizers' own patterns allow no more), and a phone needs seven digits to be kept.
_DIGITS_APART = r"[^\w\n]{0,4}"
_NECESSARY: dict[str, re.Pattern[str]] = {
    "EMAIL_ADDRESS": re.compile("@"),
    "PHONE_NUMBER": re.compile(rf"\d(?:{_DIGITS_APART}\d){{6}}"),
    "US_SSN": re.compile(r"\d(?:[- .]?\d){8}"),
    "CREDIT_CARD": re.compile(r"\d(?:[- ]?\d){11}"),
    "IBAN_CODE": re.compile(r"[A-Za-z]{2}[ -]?\d{2}"),
    # IPv4 is four dotted numbers; every IPv6 form has two colons.
    "IP_ADDRESS": re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|:.*:"),
    "URL": re.compile(r"[A-Za-z0-9.\-]\.[A-Za-z]{2}"),
    # Presidio's DateRecognizer: digits around `/` or `-`, two dots, or a month's letters.
    "DATE_TIME": re.compile(r"\d[/-]\d|\d\.\d{1,2}\.\d|[A-Za-z]{3}-\d|\d-[A-Za-z]{3}"),
    "US_ZIP_CODE": re.compile(r"\d{5}"),
    "DATE_OF_BIRTH": re.compile(r"\d[/.-]\d"),
    "UNIQUE_ID": re.compile(r"\d{6}"),
}


# Presidio's card pattern predates Mastercard's 2221-2720 range; same weak score, and
# CreditCardRecognizer's Luhn check still decides.
MASTERCARD_2_SERIES = Pattern(
    "Mastercard 2-series (weak)",
    r"\b2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)[- ]?\d{4}[- ]?\d{4}[- ]?\d{4}\b",
    0.3,
)
# A run phonenumbers could read as a reachable number: seven digits or more, split by
# separators, with the words around it (its matcher checks the characters beside a
# candidate).
_PHONE_RUN = re.compile(rf"\S*\d(?:{_DIGITS_APART}\d){{6,}}\S*")
_DIGIT_SPAN = re.compile(r"\d(?:.*\d)?", re.DOTALL)


def find_phones(
    recognizer: EntityRecognizer,
    text: str,
    entities: list[str],
    *,
    covered: list[Any],
    cache: dict[str, list[Any]],
) -> list[Any]:
    """Run Presidio's PhoneRecognizer on the digit runs of `text`, not all of it.

    phonenumbers parses every digit group of a text in each of eight regions, amounts
    and codes included; the runs that could hold a kept phone (seven digits or more,
    `_plausible` in `pii`) are all it needs to see. A run whose digits lie inside a
    finding of another recognizer (`covered`: an SSN, a card, an IBAN, a date) is not
    parsed again: it is reported, and redacted, already. A run's results are kept in
    `cache` (redaction analyzes a text again once its neighbours are replaced) and
    copied out, since context enhancement changes results in place. Offsets are
    shifted back.
    """
    spans = [(r.start, r.end) for r in covered]
    found = []
    for run in _PHONE_RUN.finditer(text):
        digits = _DIGIT_SPAN.search(run.group())
        first, last = run.start() + digits.start(), run.start() + digits.end()
        if any(a <= first and last <= b for a, b in spans):
            continue
        key = run.group()
        # One lookup: another thread may clear the cache between two.
        results = cache.get(key)
        if results is None:
            results = cache[key] = list(recognizer.analyze(key, entities, None) or ())
        for cached in results:
            result = copy.deepcopy(cached)
            result.start += run.start()
            result.end += run.start()
            found.append(result)
    return found


# Entities found only in or next to capitalized words: by NER (which reads capitalized
# windows), by the capitalized-name recognizer, or by the street patterns.
NEEDS_A_CAPITAL = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "STREET_ADDRESS"})


def could_hold(entity: str, text: str) -> bool:
    """Return False only when `entity`'s recognizer cannot find anything in `text`."""
    necessary = _NECESSARY.get(entity)
    return necessary is None or necessary.search(text) is not None


def necessary_pattern(entity: str) -> str | None:
    """Return the regex every text holding `entity` matches, or None when unknown."""
    necessary = _NECESSARY.get(entity)
    return None if necessary is None else necessary.pattern
