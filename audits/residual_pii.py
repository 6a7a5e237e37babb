"""The residual-PII verifier: a second look at the anonymized table, blind to the redactor.

The redactor (`privgate.pii`, Presidio and privgate's recognizers) cannot check its own
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
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
# Longer cells (free text) are searched by the automaton instead of substring lookups.
_LONG_CELL = 160
# Letters and digits, as the automaton's boundary check reads them (`_` is no letter).
_WORD_START = re.compile(r"(?<![^\W_])[^\W_]")
_WORD_END = re.compile(r"[^\W_](?![^\W_])")
_SPACES = re.compile(r"\s+")
# Digits with at most three separators between them, not glued to letters (`tok_`, `E11`).
_DIGIT_RUN = re.compile(r"(?<![^\W\d])\+?\d(?:[ \t().\-/]{0,3}\d)*(?![^\W\d])")
_NON_DIGIT = re.compile(r"[^0-9]")
_LOCAL_PHONE = re.compile(r"\d{3}[ .-]\d{4}")
# Only date layouts (year first or last): an SSN written 078-05-1120 is no date.
_DATE = re.compile(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-](?:\d{2}|\d{4})")
_EMAIL = re.compile(r"[^\s@<>()\[\]\"',;]+@[^\s@<>()\[\]\"',;]+\.[^\W\d_]{2,}")
_IBAN = re.compile(r"(?<![^\W_])[a-z]{2}\d{2}(?: ?[a-z0-9]{4}){2,7}(?: ?[a-z0-9]{1,4})?(?![^\W_])")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
# What pseudonymize and mask write: such a column holds no value to search.
_TOKEN_OR_MASK = re.compile(r"tok_[0-9a-f]{20}|[^\w]*")


def fold(text: str) -> str:
    """Return `text` in NFKC, without format characters (Cf), casefolded, spaces collapsed.

    Category Cf holds every zero-width and invisible character (U+200B..U+200F, U+2060..
    U+2064, U+FEFF, the soft hyphen ...), not a list of the ones someone thought of.
    """
    normalized = unicodedata.normalize("NFKC", text)
    if not normalized.isascii():
        normalized = "".join(ch for ch in normalized if unicodedata.category(ch) != "Cf")
    return _SPACES.sub(" ", normalized).strip().casefold()


@dataclass(frozen=True)
class ResidualReport:
    """What the verifier found, as counts by column (never values).

    Attributes:
        leaks: Output cells holding a value of a direct-identifier column, by
            `"<identifier column> -> <output column>"`.
        shapes: Output cells holding an identifier-shaped token, by column, then entity.
        sources: The identifier columns whose values were searched for.
        keys: How many distinct folded values were searched for.
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

    def sources_in(self, folded: str) -> set[str]:
        """Return the identifier columns one of whose values `folded` holds."""
        if not self.keys:
            return set()
        if len(folded) > _LONG_CELL:
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


def _numbers(folded: str) -> list[str]:
    """Return the digits of each digit run of `folded` that could hold a digit key."""
    numbers = (_NON_DIGIT.sub("", run.group()) for run in _DIGIT_RUN.finditer(folded))
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
    arrow = text.astype("string[pyarrow]")
    return arrow.str.replace(r"\s+", " ", regex=True).str.strip().str.lower()


def shapes_in(folded: str) -> set[str]:
    """Return the identifier shapes `folded` holds (entity names)."""
    found: set[str] = set()
    for run in _DIGIT_RUN.finditer(folded):
        text = run.group()
        if _DATE.fullmatch(text):
            continue
        digits = len(_NON_DIGIT.sub("", text))
        if digits == 9:
            found.add("US_SSN")
        elif 10 <= digits <= 12 or (digits > 12 and text.startswith("+")):
            found.add("PHONE_NUMBER")
        elif 13 <= digits <= 19:
            found.add("CREDIT_CARD")
        elif digits == 7 and _LOCAL_PHONE.fullmatch(text):
            found.add("PHONE_NUMBER")
    if "@" in folded and _EMAIL.search(folded):
        found.add("EMAIL_ADDRESS")
    for match in _IBAN.finditer(folded):
        if sum(ch.isdigit() for ch in match.group()) >= 10:
            found.add("IBAN_CODE")
            break
    for match in _IPV4.finditer(folded):
        if all(int(part) <= 255 for part in match.group().split(".")):
            found.add("IP_ADDRESS")
            break
    return found


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
        for value, count in zip(values, counts, strict=True):
            folded = fold(_PLACEHOLDER.sub(" ", value)) if textual else value
            for source in index.sources_in(folded):
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
