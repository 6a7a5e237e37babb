"""The residual-PII verifier: a second look at the anonymized table, blind to the redactor.

The redactor (`privgate.pii.engine`, Presidio and privgate's recognizers) cannot check its own
output: a re-scan with the same engine only confirms the same decisions. This module
shares no recognizer, no normalization and no threshold with it, and gives the
`residual_pii` gate two signals of its own:

- **Cross-column leaks.** Every value of every column the scan or the config called a
  direct identifier (names, emails, phones, SSNs ...) is known before anonymization.
  Each is folded (NFKC, invisible format characters removed, casefolded, whitespace
  collapsed) and, when it holds seven digits or more, reduced to its digits. Every kept
  cell of the output is searched for all of them in one pass of an Aho-Corasick
  automaton (`pyahocorasick`): text keys on word boundaries in the folded cell, digit
  keys inside each run of digits and separators. A phone whose area code no numbering
  plan knows, or a name no NER model tags, is still found if the table holds it in an
  identifier column anywhere.
- **Shapes.** Whatever the table's own columns: digit runs of phone, SSN or card length
  (validity is not asked: a mistyped number is still somebody's), email-like and
  IBAN-like tokens and IPv4 addresses, outside the redactor's `<ENTITY>` placeholders.

What neither can see: a person described without any identifier ("the only
left-handed surgeon in town"), an identifier the table holds in no identifier column and
no shape describes (a nickname), or a value shorter than the keys kept (five characters,
seven digits). The k-anonymity gate covers combinations of quasi-identifiers.

Reports hold column names and counts, never values; the keys live in memory only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ahocorasick
import pandas as pd

# Keys shorter than this match too much by chance to name a person.
MIN_TEXT_KEY = 5
MIN_DIGIT_KEY = 7
# The redactor's placeholders are entity names (`<PHONE_NUMBER>`): no digit in them, so
# `<SSN_078051120>` written by someone else is read, not dropped.
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*>")
# Longer cells (free text) are searched by the automaton instead of substring lookups.
_LONG_CELL = 160
# Letters and digits, as the automaton's boundary check reads them (`_` is no letter).
_WORD_START = re.compile(r"(?<![^\W_])[^\W_]")
_WORD_END = re.compile(r"[^\W_](?![^\W_])")
_SPACES = re.compile(r"\s+")
# Separators a digit run may hold between its digits, up to three in a row: the usual
# ones and those a hurried or hostile writer uses (`555|867|5309`, `078_05_1120`).
_SEPARATORS = r"[ \t().\-/_,:|~*#]"
# For leaks, any digits with separators between them: keys are exact identifiers, so a
# run glued to letters (`MRN12345678`) is searched too.
_ANY_DIGITS = re.compile(rf"\d(?:{_SEPARATORS}{{0,3}}\d)*")
# For shapes, a run standing apart: not glued to letters or digits (`E11`, `a456`).
_DIGIT_RUN = re.compile(rf"(?<![\w+])\+?\d(?:{_SEPARATORS}{{0,3}}\d)*(?![^\W\d])")
_NON_DIGIT = re.compile(r"[^0-9]")
_GROUP = re.compile(r"\d+")
_GAP = re.compile(r"[^0-9]+")
# Dashes NFKC leaves alone (hyphen, non-breaking hyphen, figure dash, en and em dash,
# minus sign), and markup between digits (`555<b>867</b>5309`): both are read through.
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"))
# A tag is dropped only when it holds no digit: `<tel:5558675309>` is read, not dropped.
_TAG = re.compile(r"</?[a-z][^<>\d]{0,80}>")
# Only date layouts (year first or last): an SSN written 078-05-1120 is no date.
_DATE = re.compile(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-](?:\d{2}|\d{4})")
_EMAIL = re.compile(r"[^\s@<>()\[\]\"',;]+@[^\s@<>()\[\]\"',;]+\.[^\W\d_]{2,}")
# An address spelled out so that no `@` shows: `ana (at) example (dot) org`,
# `ana at example dot org`; a spelled `dot` (or a bracketed `at`) is required, so
# `meet at noon` is no address.
_AT = r"(?:\s*[(\[{]\s*at\s*[)\]}]\s*|\s+at\s+)"
_DOT = r"(?:\s*[(\[{]\s*dot\s*[)\]}]\s*|\s+dot\s+)"
# With the bare word `at`, the spelled top-level domain must be a common one, so
# `tenderness at the dot marked` is prose.
_TLD = (
    r"(?:com|org|net|edu|gov|mil|int|info|biz|io|co|us|uk|ca|au|de|fr|es|it|nl|be|ch|at|"
    r"se|no|dk|fi|pl|pt|br|in|jp|cn|ru|ie|nz|mx)"
)
_SPELLED_EMAIL = re.compile(
    rf"[a-z0-9][a-z0-9._%+-]*(?:\s*[(\[{{]\s*at\s*[)\]}}]\s*[a-z0-9-]+(?:(?:\.|{_DOT})[a-z0-9-]+)*"
    rf"(?:\.|{_DOT})[a-z]{{2,}}|{_AT}[a-z0-9-]+(?:(?:\.|{_DOT})[a-z0-9-]+)*{_DOT}{_TLD}\b)"
)
# `ana @ example.org`, `ana.diaz at example.org`: an address with a real dotted domain
# after a spaced `@` or the word `at` (a local part with a dot, digit, `_` or `-`).
_SPACED_EMAIL = re.compile(
    r"[a-z0-9][a-z0-9._%+-]*\s*@\s*[a-z0-9-]+(?:\s?\.\s?[a-z0-9-]+)*\s?\.\s?[a-z]{2,}"
    r"|[a-z0-9]*[._\d-][a-z0-9._%+-]*\s+at\s+[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"
)
# The tail of _SPACED_EMAIL's word-`at` branch: a necessary condition, quick to test.
_AT_DOTTED_DOMAIN = re.compile(r"\sat\s+[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2}")
_IBAN = re.compile(r"(?<![^\W_])[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?(?![^\W_])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
# Separators of a phone as people write one; the open-ended phone rule needs these.
_PHONE_GAPS = frozenset({" ", "-", ".", "(", ")", ") ", ")-", " (", "+"})
# What pseudonymize and mask write: such a column holds no value to search.
_TOKEN_OR_MASK = re.compile(r"tok_[0-9a-f]{20}|[^\w]*")


# Cyrillic and Greek letters that look like Latin ones (lowercase, after casefolding):
# `J\u043ehn` (a Cyrillic o) reads as `john`, on both the key's side and the cell's.
_CONFUSABLES = str.maketrans(
    dict(
        zip(
            "аеорсухіјѕԁһӏԛԝвкмнтαεικνορτυχ",
            "aeopcyxijsdhlqwbkmhtaeikvoptux",
            strict=True,
        )
    )
)


# Control characters other than whitespace: `Jo\x00hn` reads as `john`.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def fold(text: str) -> str:
    """Return `text` in NFKC, without format characters (Cf), casefolded, spaces collapsed.

    Category Cf holds every zero-width and invisible character (U+200B..U+200F, U+2060..
    U+2064, U+FEFF, the soft hyphen ...), not a list of the ones someone thought of;
    control characters that are not whitespace (NUL, backspace, escape ...) go too.
    Accents and combining marks are dropped (NFKD), and Cyrillic and Greek look-alikes
    of Latin letters are read as the Latin ones.
    """
    normalized = _CONTROLS.sub("", unicodedata.normalize("NFKC", text))
    if not normalized.isascii():
        # Accents and other combining marks go too (`María` reads `maria`, an underline
        # combined into every letter reads as none).
        normalized = "".join(
            ch
            for ch in unicodedata.normalize("NFKD", normalized)
            if unicodedata.category(ch) not in ("Cf", "Mn", "Me")
        )
        return _SPACES.sub(" ", normalized).strip().casefold().translate(_CONFUSABLES)
    return _SPACES.sub(" ", normalized).strip().casefold()


@dataclass(frozen=True)
class ResidualReport:
    """What the verifier found, as counts by column (never values).

    Attributes:
        leaks: Output cells holding a value of a direct-identifier column, by
            `"<identifier column> -> <output column>"`.
        shapes: Output cells holding an identifier-shaped token, by column, then entity.
        sources: The identifier columns whose values were searched for.
        keys: How many distinct folded keys were searched for (the values, and each value
            of two or three words in reversed order too).
        columns_searched: The output columns searched.
    """

    leaks: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: tuple[str, ...] = ()
    keys: int = 0
    columns_searched: tuple[str, ...] = ()

    @property
    def leak_total(self) -> int:
        """Cells holding another column's identifier (a cell counts once per pair)."""
        return sum(self.leaks.values())

    @property
    def shape_total(self) -> int:
        """Cells holding an identifier shape (a cell counts once per entity)."""
        return sum(sum(by_entity.values()) for by_entity in self.shapes.values())

    def shape_entities(self) -> dict[str, int]:
        """Return the shape findings summed per entity over all columns."""
        totals: dict[str, int] = {}
        for by_entity in self.shapes.values():
            for entity, count in by_entity.items():
                totals[entity] = totals.get(entity, 0) + count
        return dict(sorted(totals.items()))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready summary."""
        return {
            "leaks": self.leaks,
            "shapes": self.shapes,
            "sources": list(self.sources),
            "keys": self.keys,
            "columns_searched": list(self.columns_searched),
        }


class IdentifierIndex:
    """The folded values of a table's direct-identifier columns, ready to search for.

    Built from the raw table before anonymization (memory only; never logged; a pickled
    copy holds no key and refuses to verify).
    Short cells are searched by looking up each of their word-bounded substrings (and
    each digit substring of a key's length) in hash tables; long cells (free text) by
    one Aho-Corasick pass, whose automaton is built on first need: a table of a million
    structured rows never pays for it. Both find exactly the same keys.
    """

    def __init__(self, columns: Mapping[str, pd.Series]) -> None:
        self.sources = tuple(columns)
        self._text: dict[str, tuple[str, ...]] = {}
        self._digits: dict[str, tuple[str, ...]] = {}
        for name, column in columns.items():
            values = pd.Series(column.dropna().astype(str).unique(), dtype=object)
            folded = fold_all(values)
            numbers = folded.str.replace(r"[^0-9]", "", regex=True)
            digit_keys = numbers[numbers.str.len() >= MIN_DIGIT_KEY]
            text_keys = folded[
                (numbers.str.len() < MIN_DIGIT_KEY)
                & (folded.str.len() >= MIN_TEXT_KEY)
                & folded.str.contains(r"\pL", regex=True)
            ]
            text_keys = pd.concat([text_keys, _reversed_names(text_keys)], ignore_index=True)
            for keys, table in ((text_keys, self._text), (digit_keys, self._digits)):
                fresh = dict.fromkeys(keys.tolist(), (name,))
                # A value in two identifier columns (a name that is also an email's local
                # part) names both; the common case, no overlap, is one dict update.
                for key in fresh.keys() & table.keys():
                    fresh[key] = (*table[key], name)
                table.update(fresh)
        self._digit_lengths = sorted({len(k) for k in self._digits})
        self._longest_text = max((len(k) for k in self._text), default=0)
        self._automata: tuple[Any, Any] | None = None
        self.keys = len(self._text) + len(self._digits)
        self.spent = False

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the keys: raw identifiers never cross a process boundary.

        A sweep point's evidence travels back from a worker process or a Dask worker
        after its verification ran; the copy keeps the column names and the count, and
        refuses to verify (`spent`), so it can never pass a table by knowing nothing.
        """
        return {"sources": self.sources, "keys": self.keys, "spent": True}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._text, self._digits, self._automata = {}, {}, None
        self._digit_lengths, self._longest_text = [], 0

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, columns: Iterable[str]) -> IdentifierIndex:
        """Index the named columns of `frame` (those it has)."""
        return cls({name: frame[name] for name in columns if name in frame.columns})

    def sources_in(self, folded: str, *, free_text: bool = False) -> set[str]:
        """Return the identifier columns one of whose values `folded` holds.

        With `free_text` (a column that holds long cells) every cell is searched with the
        automaton: a sentence of a few dozen words costs hundreds of lookups otherwise.
        """
        if not self.keys:
            return set()
        if free_text or len(folded) > _LONG_CELL:
            return self._scan(folded)
        found: set[str] = set()
        if self._text:
            starts = [m.start() for m in _WORD_START.finditer(folded)]
            ends = [m.end() for m in _WORD_END.finditer(folded)]
            for start in starts:
                for end in ends:
                    if end - start > self._longest_text:
                        break
                    if end - start >= MIN_TEXT_KEY:
                        found.update(self._text.get(folded[start:end], ()))
        if self._digits:
            for number in _numbers(folded):
                for length in self._digit_lengths:
                    for at in range(len(number) - length + 1):
                        found.update(self._digits.get(number[at : at + length], ()))
        return found

    def _scan(self, folded: str) -> set[str]:
        """Find keys in a long cell with the Aho-Corasick automata (built once)."""
        if self._automata is None:
            automata = []
            for table in (self._text, self._digits):
                automaton = ahocorasick.Automaton()
                for key, owners in table.items():
                    automaton.add_word(key, (len(key), owners))
                if table:
                    automaton.make_automaton()
                automata.append(automaton if table else None)
            self._automata = (automata[0], automata[1])
        text, digits = self._automata
        found: set[str] = set()
        if text is not None:
            for end, (length, owners) in text.iter(folded):
                start = end - length + 1
                before = folded[start - 1] if start > 0 else " "
                after = folded[end + 1] if end + 1 < len(folded) else " "
                if not (before.isalnum() or after.isalnum()):
                    found.update(owners)
        if digits is not None:
            for number in _numbers(folded):
                for _, (_, owners) in digits.iter(number):
                    found.update(owners)
        return found


def _reversed_names(keys: pd.Series) -> pd.Series:
    """Return `last first` and `last, first` (the last word first) of two- or three-word keys.

    A name column's `Ana María Díaz` is written `Díaz, Ana María` on a form; any value of
    two or three words (a name, a city, a street) is searched for in both orders.
    """
    words = keys[keys.str.count(" ").between(1, 2) & ~keys.str.contains(r"[,@\d]", regex=True)]
    if words.empty:
        return words
    last = words.str.rsplit(" ", n=1).str[-1]
    rest = words.str.rsplit(" ", n=1).str[0]
    return pd.concat([last + " " + rest, last + ", " + rest], ignore_index=True)


def _digit_view(folded: str) -> str:
    """Return `folded` with markup removed and every dash read as `-`, for digit runs."""
    if "<" in folded:
        folded = _TAG.sub("", folded)
    return folded if folded.isascii() else folded.translate(_DASHES)


def _numbers(folded: str) -> list[str]:
    """Return the digits of each digit run of `folded` that could hold a digit key."""
    runs = _ANY_DIGITS.finditer(_digit_view(folded))
    numbers = (_NON_DIGIT.sub("", run.group()) for run in runs)
    return [number for number in numbers if len(number) >= MIN_DIGIT_KEY]


def fold_all(values: pd.Series) -> pd.Series:
    """`fold` on every value (the same strings), as Arrow strings: vectorized in C++.

    Non-ASCII values go through `fold` one by one; for ASCII, lowercasing is casefolding.
    """
    text = values.astype(object)
    wide = ~text.str.isascii()
    if wide.any():
        text = text.copy()
        text[wide] = text[wide].map(fold)
    arrow = text.astype("string[pyarrow]").str.replace(_CONTROLS.pattern, "", regex=True)
    return arrow.str.replace(r"\s+", " ", regex=True).str.strip().str.lower()


def shapes_in(folded: str) -> set[str]:
    """Return the identifier shapes `folded` holds (entity names)."""
    found: set[str] = set()
    view = _digit_view(folded)
    for run in _DIGIT_RUN.finditer(view):
        start = run.start()
        # Hyphen-glued to a word (`a456-426614174000`, a UUID's last group): a code.
        if start >= 2 and view[start - 1] == "-" and view[start - 2].isalnum():
            continue
        entity = digit_shape(run.group())
        if entity:
            found.add(entity)
    if ("@" in folded and (_EMAIL.search(folded) or _SPACED_EMAIL.search(folded))) or (
        _spelled_email(folded)
    ):
        found.add("EMAIL_ADDRESS")
    for match in _IBAN.finditer(folded):
        if sum(ch.isdigit() for ch in match.group()) >= 10:
            found.add("IBAN_CODE")
            break
    for match in _IPV4.finditer(view):
        if all(int(part) <= 255 for part in match.group().split(".")):
            found.add("IP_ADDRESS")
            break
    return found


def _spelled_email(folded: str) -> bool:
    """Whether `folded` holds an address written with the word `at` (no `@` needed).

    The two expressions scan every position of a note; cheap necessary conditions go
    first (the word `at`; a spelled `dot` or a bracket; a dotted domain after `at`).
    """
    if not (" at " in folded or "at)" in folded or "at]" in folded or "at}" in folded):
        return False
    spelled_dot_or_bracket = "dot" in folded or any(c in folded for c in "([{")
    if spelled_dot_or_bracket and _SPELLED_EMAIL.search(folded):
        return True
    # The word-`at` branch of _SPACED_EMAIL ends with exactly this.
    return bool(_AT_DOTTED_DOMAIN.search(folded)) and bool(_SPACED_EMAIL.search(folded))


def digit_shape(run: str) -> str | None:
    """Return the entity a run of digits and separators is shaped as, if any.

    By how its digits are grouped, not whether a number is valid (a mistyped one is
    still somebody's): 3-2-4 an SSN, 3-3-4 (a leading 1 allowed) or 3-4 a phone, groups
    of four a card, and ten to twelve digits in two to five groups of two or more a
    phone, the way numbering plans abroad group them (`020 7946 0958`, `01 99 00 12 34`);
    anything after a `+` of eight to fifteen digits a phone. A lone run: nine digits an
    SSN, ten (first digit 2-9) or eleven (a leading 1 or 0) a phone, thirteen to nineteen
    that pass Luhn a card. Not identifiers: dates (year first or last), decimals and
    amounts (a `.` beside other separators, or one `.` alone), IPv4 (its own shape),
    lists of years or of two-digit numbers, and times (`:` mixed with others).
    """
    if _DATE.match(run):
        return None  # a date, alone or followed by a time or a count
    plus = run.startswith("+")
    groups = _GROUP.findall(run)
    gaps = [gap.strip(" \t") or " " for gap in _GAP.findall(run.lstrip("+"))]
    sizes = [len(group) for group in groups]
    total = sum(sizes)
    if plus:
        return "PHONE_NUMBER" if 8 <= total <= 15 else None
    ipv4 = len(groups) == 4 and max(sizes) <= 3
    if "." in gaps and (len(set(gaps)) > 1 or len(gaps) == 1 or ipv4):
        return None  # an amount, a coordinate, a version, an IPv4 address
    if len(groups) == 1:
        digits = groups[0]
        if total == 9:
            return "US_SSN"
        if (total == 10 and digits[0] != "0" and digits[0] != "1") or (
            total == 11 and (digits[0] == "0" or (digits[0] == "1" and digits[1] not in "01"))
        ):
            return "PHONE_NUMBER"
        if 13 <= total <= 19 and _luhn(digits):
            return "CREDIT_CARD"
        return None
    if sizes == [3, 2, 4]:
        return "US_SSN"
    if sizes == [3, 3, 4] or (sizes == [1, 3, 3, 4] and groups[0] == "1"):
        return "PHONE_NUMBER"
    if 13 <= total <= 19 and (
        (all(size == 4 for size in sizes[:-1]) and sizes[-1] <= 4)
        or sizes in ([4, 6, 5], [4, 6, 4])
    ):
        return "CREDIT_CARD"
    if (
        10 <= total <= 12
        and len(groups) <= 5
        and min(sizes) >= 2
        and set(gaps) <= _PHONE_GAPS
        and not all(len(group) == 4 and group[:2] in ("19", "20") for group in groups)
        and not (all(size == 2 for size in sizes) and groups[0][0] != "0")
        and not (len(groups) >= 3 and len(set(sizes)) == 1 and sizes[0] != 2)
    ):
        return "PHONE_NUMBER"
    return None


def _luhn(digits: str) -> bool:
    """Return whether `digits` pass the Luhn check (cards do; most other numbers don't)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def verify_residuals(
    frame: pd.DataFrame,
    *,
    index: IdentifierIndex,
    skip: Iterable[str] = (),
) -> ResidualReport:
    """Search every kept cell of `frame` for known identifiers and identifier shapes.

    Each distinct cell value is folded and searched once; counts are of cells. The `skip`
    columns (the generalized quasi-identifiers, the label) are not searched for shapes;
    columns whose every cell is a pseudonym token or a mask are not searched at all.
    Numeric columns are searched for leaks only, whole numbers as their digits.
    """
    if index.spent:
        raise ValueError(
            "this identifier index was copied across processes without its keys; verify "
            "where the table was anonymized"
        )
    skipped = set(skip)
    leaks: dict[str, int] = {}
    shapes: dict[str, dict[str, int]] = {}
    searched = []
    for name in frame.columns:
        column = frame[name]
        distinct = column.dropna().astype(str).value_counts()
        if distinct.empty:
            continue
        textual = not pd.api.types.is_numeric_dtype(column)
        if textual and distinct.index.to_series().str.fullmatch(_TOKEN_OR_MASK.pattern).all():
            # Pseudonym tokens (HMAC hex) and masks (no letter, no digit) hold no value.
            continue
        searched.append(str(name))
        if not textual:
            # A number's digits are searched only when it is a whole number (a phone or
            # an ID stored as one): the digits of 412.3456789 are no identifier.
            numbers = pd.to_numeric(column.dropna(), errors="coerce")
            whole = numbers[(numbers.abs() < 1e18) & (numbers % 1 == 0)].astype("int64")
            distinct = whole.astype(str).value_counts()
        values = distinct.index.tolist()
        counts = distinct.to_numpy()
        look_for_shapes = textual and name not in skipped
        free_text = textual and any(len(value) > _LONG_CELL for value in values)
        for value, count in zip(values, counts, strict=True):
            folded = fold(_PLACEHOLDER.sub(" ", value)) if textual else value
            for source in index.sources_in(folded, free_text=free_text):
                key = f"{source} -> {name}"
                leaks[key] = leaks.get(key, 0) + int(count)
            if look_for_shapes:
                for entity in shapes_in(folded):
                    by_entity = shapes.setdefault(str(name), {})
                    by_entity[entity] = by_entity.get(entity, 0) + int(count)
    return ResidualReport(
        leaks=dict(sorted(leaks.items())),
        shapes={c: dict(sorted(e.items())) for c, e in sorted(shapes.items())},
        sources=index.sources,
        keys=index.keys,
        columns_searched=tuple(searched),
    )
