"""Deterministic, fully labelled PII benchmark tables for tests and the Presidio benchmark.

Every value is synthetic. Names are drawn from short built-in lists (US/English, German,
French, Spanish, Vietnamese, Yoruba, Indian, Polish), emails, URLs and hosts live under
the reserved `example.com`, `example.org` and `example.net` domains, IPs come from the
documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32), US
phones use the fictional 555-0100..0199 lines and UK and French phones the regulators'
drama ranges (every phone passes libphonenumber's validity check). German and Indian
phones, SSNs, card numbers and IBANs are random numbers that only have a valid structure
(SSN area rules, Luhn, mod-97 and national check digits); any match with a real one is
chance. Values are drawn independently: a row's `email` is not derived from its
`full_name`, and its `age` does not agree with its `date_of_birth`.

`labelled_table` returns a frame whose columns each carry a `ColumnTruth`:

- direct identifiers: `full_name`, `email`, `phone`, `ssn`, `card`, `patient_id`;
- quasi-identifiers: `age`, `zip_code`, `date_of_birth`;
- clean decoys that look numeric or code-like: `amount`, `diagnosis_code`;
- with `decoys=True` (the default) three more clean decoys: `plan_code`, `batch_code`,
  `visit_count`;
- with `notes=True` (the default) a free-text `note` column.

The first eleven are "the structured columns"; the extra decoys only make a clean column
harder to tell from an identifier. Structured columns are never disguised, and their
values are not listed one by one: the `ColumnTruth` says what every cell holds. Free text
(the `note` column, or the single column of `notes_only`) is labelled value by value: each
planted PII value is a `Planted` record with its row and the exact substring in the cell.
A `disguise_fraction` of planted values carries zero-width characters or full-width
digits or `@`; `canonical` is the value as first drawn, equal to its NFKC form with the
zero-width characters removed.

Structured columns are built whole-column with numpy (one million rows take a few
seconds); notes are assembled in a Python loop over rows (about 30 µs a note). The same
arguments give an identical frame and planted list; each column draws from its own
seeded stream, so switching `notes` or `decoys` never changes the other columns, and
`notes_only(n, seed=s)` equals the `note` column of `labelled_table(n, seed=s)`.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

ObjectArray = npt.NDArray[np.object_]
IntArray = npt.NDArray[np.int64]
CharArray = npt.NDArray[np.uint8]
ColumnKind = Literal["direct_identifier", "quasi_identifier", "free_text", "clean"]

ENTITIES: tuple[str, ...] = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_SSN",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "STREET_ADDRESS",
    "DATE_OF_BIRTH",
    "US_ZIP_CODE",
    "UNIQUE_ID",
)
"""The entity types planted; Presidio's names where it has one, the last four custom."""

NOTE_COLUMN = "note"

# One independent stream per column, keyed by position: append, never reorder, or every
# seed's table changes.
_STREAMS = (
    "full_name",
    "email",
    "phone",
    "ssn",
    "card",
    "patient_id",
    "age",
    "zip_code",
    "date_of_birth",
    "amount",
    "diagnosis_code",
    "plan_code",
    "batch_code",
    "visit_count",
    NOTE_COLUMN,
)
_MAX_ROWS = 10**8  # patient_id has eight digits and must be unique per row
_NOTE_PII_FRACTION = 0.5  # share of `labelled_table` notes holding planted values
_TWO_VALUE_SHARE = 0.5  # share of PII notes holding two values rather than one

_ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")
_FULLWIDTH_AT = "\uff20"
_FULLWIDTH_ZERO = 0xFF10

# --------------------------------------------------------------------------- vocabulary

# (locale, share, first names, last names). Accented and non-Latin-1 letters on purpose:
# they are where a tokenizer or an ASCII-only pattern loses a name.
_NAME_LOCALES: tuple[tuple[str, float, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "en_US",
        0.35,
        ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda",
         "David", "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica",
         "Thomas", "Sarah", "Christopher", "Karen", "Daniel", "Nancy", "Matthew", "Emily"),
        ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
         "Anderson", "Taylor", "Moore", "Jackson", "Thompson", "White", "Harris", "Clark",
         "Lewis", "Robinson", "Walker", "O'Brien", "McAllister", "Whitaker", "Sullivan"),
    ),
    (
        "de_DE",
        0.09,
        ("Jürgen", "Günter", "Lukas", "Jonas", "Leon", "Felix", "Maximilian", "Sophie",
         "Marie", "Hannah", "Lena", "Jörg", "Käthe", "Anneliese", "Björn", "Uwe"),
        ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
         "Schulz", "Hoffmann", "Schäfer", "Koch", "Bauer", "Richter", "Schröder", "Groß"),
    ),
    (
        "fr_FR",
        0.09,
        ("François", "Hélène", "Élodie", "Jérôme", "Benoît", "Chloé", "Léa", "Mathieu",
         "Céline", "Amélie", "Noël", "Gaël", "Inès", "Théo", "Zoé", "Loïc"),
        ("Bernard", "Dubois", "Durand", "Leroy", "Moreau", "Lefèvre", "Lemaître", "Girard",
         "Bonnet", "Rousseau", "Fontaine", "Chevalier", "Gauthier", "Mercier", "Faure"),
    ),
    (
        "es_ES",
        0.09,
        ("José", "María", "Jesús", "Ángel", "Lucía", "Sofía", "Martín", "Andrés", "Inés",
         "Raúl", "Iñaki", "Álvaro", "Carmen", "Pilar", "Sergio", "Begoña"),
        ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez",
         "Pérez", "Gómez", "Díaz", "Hernández", "Muñoz", "Álvarez", "Jiménez", "Vázquez"),
    ),
    (
        "vi_VN",
        0.08,
        ("Minh", "Lan", "Anh", "Thảo", "Hùng", "Dũng", "Phương", "Hương", "Tuấn", "Linh",
         "Quang", "Thủy", "Bảo", "Ngọc", "Trang", "Hải"),
        ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
         "Bùi", "Đỗ", "Hồ", "Ngô", "Dương"),
    ),
    (
        "yo_NG",
        0.08,
        ("Adébáyọ̀", "Adebayo", "Olúwaseun", "Oluwaseun", "Adéwálé", "Bọ́lánlé", "Túndé",
         "Yétúndé", "Ayọ̀délé", "Folake", "Kehinde", "Taiwo", "Funmilayo", "Babatunde",
         "Temitope", "Damilola"),
        ("Adeyemi", "Ogunleye", "Ọlátúnjí", "Olawale", "Balogun", "Ogundipe", "Akinwale",
         "Adeleke", "Oladipo", "Babalola", "Ajayi", "Oyewole", "Fashola", "Adébáyọ̀"),
    ),
    (
        "hi_IN",
        0.11,
        ("Aarav", "Priya", "Rahul", "Ananya", "Vikram", "Deepika", "Arjun", "Kavya", "Rohan",
         "Sneha", "Aditya", "Pooja", "Sanjay", "Lakshmi", "Venkatesh", "Meera"),
        ("Sharma", "Patel", "Singh", "Kumar", "Gupta", "Reddy", "Iyer", "Nair", "Chatterjee",
         "Mukherjee", "Rao", "Menon", "Joshi", "Desai", "Bhattacharya", "Krishnan"),
    ),
    (
        "pl_PL",
        0.11,
        ("Łukasz", "Małgorzata", "Paweł", "Agnieszka", "Michał", "Katarzyna", "Grzegorz",
         "Zofia", "Wojciech", "Joanna", "Krzysztof", "Bożena", "Jędrzej", "Aleksandra"),
        ("Kowalski", "Nowak", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński", "Lewandowski",
         "Zieliński", "Szymański", "Woźniak", "Dąbrowski", "Kozłowski", "Mazur", "Krawczyk"),
    ),
)  # fmt: skip
_MIXED_NAME_SHARE = 0.1  # last name from any locale ("José Müller")
_MIDDLE_INITIAL_SHARE = 0.15
# NFKD leaves these whole; spelled out so that every email slug is ASCII.
_ASCII_FOLD = str.maketrans({"ß": "ss", "đ": "d", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe"})

# (local-part format, share); see `_draw_emails` for what each index builds.
_EMAIL_FORMAT_SHARES = (0.28, 0.15, 0.10, 0.15, 0.17, 0.15)
_EMAIL_TAGS = ("claims", "billing", "portal", "rx", "news")
_EMAIL_DOMAINS = (
    ("example.com", 0.25),
    ("example.org", 0.20),
    ("example.net", 0.20),
    ("mail.example.com", 0.10),
    ("patients.example.org", 0.10),
    ("eu.example.net", 0.08),
    ("mx.corp.example.com", 0.07),
)

# Assigned US area codes: libphonenumber accepts 555-01xx only under a real area code.
_US_AREA_CODES = (
    201, 202, 206, 212, 213, 214, 303, 305, 312, 313, 404, 415, 503, 512, 602, 617, 702,
    713, 718, 801, 808, 917, 919, 971,
)  # fmt: skip
# US (four formats), the UK drama ranges for London (020 7946 0xxx) and Manchester
# (0161 496 0xxx; the mobile one, 07700 900xxx, fails libphonenumber's validity check),
# Berlin, the French ARCEP fiction range 01 99 00 xx xx, and Indian mobiles.
_PHONE_FORMAT_SHARES = (0.18, 0.18, 0.10, 0.14, 0.08, 0.05, 0.09, 0.08, 0.10)

# SSN areas valid in AAA-GG-SSSS: 000, 666 and 900-999 never are.
_SSN_AREAS = np.array([area for area in range(1, 900) if area != 666], dtype=np.int64)
# Structurally valid, but published samples or repeated digits that Presidio drops.
_SSN_BLOCKLIST = np.array(
    [78051120, 219099999, 123456789, *(int(str(digit) * 9) for digit in range(1, 9))],
    dtype=np.int64,
)

_CARD_BRAND_SHARES = (0.45, 0.35, 0.20)  # Visa, Mastercard, Amex
_MASTERCARD_2_SERIES_SHARE = 0.2  # 2221-2720 rather than 51-55
_CARD_STYLE_SHARES = (0.4, 0.3, 0.3)  # spaces, dashes, none
_LUHN_DOUBLED = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.int64)  # 2d, digits summed

_DOB_FIRST_YEAR, _DOB_LAST_YEAR = 1934, 2006
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DOB_ISO_SHARE = 0.6  # the rest are US-style MM/DD/YYYY

_ICD10_CODES = (
    "E11.9", "I10", "J45.909", "E78.5", "M54.5", "K21.9", "F41.1", "N39.0", "J06.9", "R51",
    "Z00.00", "E03.9", "I25.10", "M17.11", "G43.909", "L40.0", "H52.4", "Z23", "R10.9",
    "E66.9", "F32.9", "I48.91", "J44.9", "N18.3",
)  # fmt: skip

_IBAN_COUNTRIES = ("DE", "GB", "FR", "NL", "ES")
_GB_BANKS = ("NWBK", "BARC", "LOYD", "HBUK", "MIDL")
_NL_BANKS = ("ABNA", "RABO", "INGB", "TRIO", "SNSB")
_ES_CONTROL_WEIGHTS = (1, 2, 4, 8, 5, 10, 9, 7, 3, 6)
_IPV4_PREFIXES = ("192.0.2", "198.51.100", "203.0.113")
_IPV4_SHARE = 0.65

_US_STREETS = (
    "Evergreen", "Maple", "Oak", "Cedar", "Elm", "Willow", "Chestnut", "Lincoln", "Madison",
    "Washington", "Park", "Lake", "Hill", "Sunset", "Highland", "Prospect",
)  # fmt: skip
_US_SUFFIXES = ("Terrace", "Street", "Avenue", "Road", "Lane", "Drive", "Boulevard", "Court")
_US_CITIES = (
    "Springfield", "Riverside", "Fairview", "Greenville", "Franklin", "Georgetown",
    "Salem", "Clinton", "Bristol", "Ashland",
)  # fmt: skip
_FR_STREETS = (
    "Rue de Rivoli", "Avenue des Ternes", "Boulevard Saint-Michel", "Rue du Faubourg "
    "Saint-Honoré", "Place de la République", "Rue Lecourbe", "Quai de la Tournelle",
)  # fmt: skip
_FR_CITIES = ("", ", Paris", ", Lyon", ", Marseille", ", Toulouse")
_DE_STREETS = (
    "Hauptstraße", "Bahnhofstraße", "Goethestraße", "Schillerstraße", "Lindenallee",
    "Am Markt", "Gartenweg", "Kirchplatz",
)  # fmt: skip
_DE_CITIES = ("Berlin", "München", "Köln", "Hamburg", "Leipzig", "Düsseldorf")
_ES_STREETS = (
    "Calle Mayor", "Avenida de la Constitución", "Calle de Alcalá", "Paseo de Gracia",
    "Calle Real", "Plaza de España",
)  # fmt: skip
_ES_CITIES = ("Madrid", "Sevilla", "Barcelona", "Valencia", "Bilbao")

# --------------------------------------------------------------------------- note text

# A note is "<opener>, <middle>; <closer>", about twenty words. The middle is one or two
# PII clauses joined by " and ", or a clean clause. Openers and closers carry decoys
# (amounts, ICD-10 codes, plan and batch codes, lab values, counts) and no capitalized
# word but the first, so a clean note holds nothing a recognizer should report. Every
# planted value is followed by a space: no trailing punctuation for a pattern to swallow.
_OPENERS = (
    "Follow-up visit for {icd} with {lab} noted",
    "Claim reviewed under plan {plan} for {icd}",
    "Telehealth check-in with {lab} stable since the last visit",
    "Patient seen for {icd} after {count} prior visits this year",
    "Billing adjustment of {amount} applied to plan {plan}",
    "Refill approved for {icd} with {lab} under review",
    "Prior authorization requested for {icd} under plan {plan}",
    "Annual review completed, {lab} and {icd} discussed",
)
_CLOSERS = (
    "copay of {amount} collected at the front desk.",
    "next review in {count} weeks.",
    "batch {batch} posted for billing.",
    "balance of {amount} remains under plan {plan}.",
    "no further action needed at this time.",
    "lab panel repeats in {count} months.",
)
_CLEAN_MIDDLES = (
    "no changes to the care plan were made",
    "medication list reconciled with the pharmacy",
    "claim total of {amount} approved for payment",
    "{count} refills remain on the current prescription",
    "{lab} reviewed and discussed with the patient",
    "coding corrected to {icd} after chart review",
)
_PII_CLAUSES: dict[str, tuple[str, ...]] = {
    "PERSON": (
        "spoke with {v} about dosing",
        "caregiver {v} was present",
        "referred by {v} for review",
        "spouse {v} called the clinic",
    ),
    "EMAIL_ADDRESS": (
        "results sent to {v} today",
        "member asked for mail to {v} only",
        "portal invite sent to {v} again",
    ),
    "PHONE_NUMBER": (
        "callback number {v} confirmed",
        "reachable on mobile {v} after noon",
        "left voicemail at phone {v} today",
    ),
    "US_SSN": (
        "SSN {v} verified for billing",
        "social security number {v} on the claim form",
    ),
    "CREDIT_CARD": (
        "copay charged to card {v} successfully",
        "card number {v} declined once",
    ),
    "IBAN_CODE": (
        "refund issued to IBAN {v} this week",
        "reimbursement to account {v} pending",
    ),
    "IP_ADDRESS": (
        "portal login from IP {v} flagged",
        "form submitted from IP address {v} overnight",
    ),
    "URL": (
        "documents uploaded at {v} by the member",
        "intake form at {v} still incomplete",
    ),
    "STREET_ADDRESS": (
        "home visit at {v} scheduled",
        "mailing address {v} updated",
    ),
    "DATE_OF_BIRTH": (
        "born {v} per intake form",
        "DOB {v} confirmed at check-in",
    ),
    "US_ZIP_CODE": (
        "member lives in ZIP {v} area",
        "relocated to ZIP {v} last month",
    ),
    "UNIQUE_ID": (
        "chart {v} merged with a duplicate",
        "record {v} updated by billing",
    ),
}
# (template, low, high) of lab values; the value is drawn uniformly in [low, high].
_LAB_VALUES = (
    ("HbA1c {:.1f}%", 5.0, 11.0),
    ("LDL {:.0f} mg/dL", 60.0, 190.0),
    ("eGFR {:.0f}", 30.0, 110.0),
    ("TSH {:.2f} mIU/L", 0.3, 6.0),
    ("SpO2 {:.0f}%", 90.0, 99.0),
    ("weight {:.1f} kg", 45.0, 130.0),
)


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class ColumnTruth:
    """What one column holds.

    Attributes:
        name: The column's name in the frame.
        kind: `direct_identifier`, `quasi_identifier`, `free_text` or `clean`.
        entity: The entity type every cell holds, for direct identifiers; else `None`.
    """

    name: str
    kind: ColumnKind
    entity: str | None


@dataclass(frozen=True)
class Planted:
    """One PII value planted in a free-text cell.

    Attributes:
        row: The row's position (and label: the index is a `RangeIndex`).
        column: The free-text column.
        entity: One of `ENTITIES`.
        value: Exactly the substring in the cell, disguise characters included.
        canonical: The value without disguise: NFKC of `value`, zero-width characters removed.
        disguised: Whether `value` differs from `canonical`.
    """

    row: int
    column: str
    entity: str
    value: str
    canonical: str
    disguised: bool


@dataclass(frozen=True)
class LabelledTable:
    """A frame of synthetic records with the truth about every column and planted value.

    Attributes:
        frame: Text columns only (no missing values), indexed 0..n-1.
        columns: One `ColumnTruth` per frame column, in frame order.
        planted: Every PII value in free-text cells, by row. Identifier-column values are
            implied by their `ColumnTruth` and not listed.
    """

    frame: pd.DataFrame
    columns: tuple[ColumnTruth, ...]
    planted: tuple[Planted, ...]

    def truth(self, column: str) -> ColumnTruth:
        """Return the truth about `column`.

        Raises:
            KeyError: when the table has no such column.
        """
        for truth in self.columns:
            if truth.name == column:
                return truth
        raise KeyError(f"no column {column!r}; the table has {[c.name for c in self.columns]}")


def labelled_table(
    rows: int,
    *,
    seed: int = 0,
    notes: bool = True,
    decoys: bool = True,
    disguise_fraction: float = 0.1,
) -> LabelledTable:
    """Draw a table of synthetic records with labelled identifiers, decoys and notes.

    Args:
        rows: Number of rows, 1 to 10**8.
        seed: Non-negative seed; the same arguments give an identical table.
        notes: Add the free-text `note` column (half the notes hold planted PII).
        decoys: Add the clean `plan_code`, `batch_code` and `visit_count` columns to the
            eleven structured ones.
        disguise_fraction: Share of planted note values that are disguised.

    Returns:
        The table; `planted` is empty when `notes` is false.

    Raises:
        ValueError: when an argument is out of range.
    """
    _check_count("rows", rows)
    _check_seed(seed)
    _check_fraction("disguise_fraction", disguise_fraction)
    data: dict[str, ObjectArray] = {}
    truths: list[ColumnTruth] = []
    for name, kind, entity, draw in _structured_columns(decoys=decoys):
        data[name] = draw(_stream(seed, name), rows)
        truths.append(ColumnTruth(name, kind, entity))
    planted: list[Planted] = []
    if notes:
        data[NOTE_COLUMN], planted = _draw_notes(
            seed,
            rows,
            pii_fraction=_NOTE_PII_FRACTION,
            disguise_fraction=disguise_fraction,
        )
        truths.append(ColumnTruth(NOTE_COLUMN, "free_text", None))
    return LabelledTable(frame=pd.DataFrame(data), columns=tuple(truths), planted=tuple(planted))


def notes_only(
    count: int,
    *,
    seed: int = 0,
    pii_fraction: float = 0.5,
    disguise_fraction: float = 0.1,
) -> LabelledTable:
    """Draw a table with a single free-text column, `note`.

    Args:
        count: Number of notes, 1 to 10**8.
        seed: Non-negative seed; the same arguments give identical notes.
        pii_fraction: Share of notes holding one or two planted values, exact up to
            rounding; the rest hold decoys only.
        disguise_fraction: Share of planted values that are disguised.

    Returns:
        The table, with every planted value listed.

    Raises:
        ValueError: when an argument is out of range.
    """
    _check_count("count", count)
    _check_seed(seed)
    _check_fraction("pii_fraction", pii_fraction)
    _check_fraction("disguise_fraction", disguise_fraction)
    texts, planted = _draw_notes(
        seed, count, pii_fraction=pii_fraction, disguise_fraction=disguise_fraction
    )
    return LabelledTable(
        frame=pd.DataFrame({NOTE_COLUMN: texts}),
        columns=(ColumnTruth(NOTE_COLUMN, "free_text", None),),
        planted=tuple(planted),
    )


# --------------------------------------------------------------------------- checks


def _check_count(name: str, value: int) -> None:
    """Raise `ValueError` unless `value` is a row count this module can draw."""
    if not 1 <= value <= _MAX_ROWS:
        raise ValueError(f"{name} must be between 1 and {_MAX_ROWS}, got {value}")


def _check_seed(seed: int) -> None:
    """Raise `ValueError` unless `seed` is a non-negative integer."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")


def _check_fraction(name: str, value: float) -> None:
    """Raise `ValueError` unless `value` is a share in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


# --------------------------------------------------------------------------- helpers

Drawer = Callable[[np.random.Generator, int], ObjectArray]


def _stream(seed: int, name: str, *sub: int) -> np.random.Generator:
    """Return the generator of one column (or of one sub-stream of it)."""
    key = (_STREAMS.index(name), *sub)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _python_random(rng: np.random.Generator) -> random.Random:
    """Return a `random.Random` seeded from `rng`, for cheap scalar draws in loops."""
    return random.Random(int(rng.integers(0, 2**63 - 1)))


def _digits(values: npt.ArrayLike, width: int) -> CharArray:
    """Return the ASCII codes of `values` written with `width` digits, one row each."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    column = np.asarray(values, dtype=np.int64)[:, None]
    return ((column // powers) % 10 + ord("0")).astype(np.uint8)


def _letters(indices: npt.ArrayLike) -> CharArray:
    """Return the ASCII codes of capital letters A + `indices`, one row each."""
    return (np.asarray(indices, dtype=np.int64)[:, None] + ord("A")).astype(np.uint8)


def _render(*parts: str | CharArray) -> ObjectArray:
    """Join constant ASCII text and per-row character blocks into one str per row.

    One fixed-width character matrix, read as numpy's UCS-4 strings, costs about as much
    as a single string concatenation over the rows, however many parts there are.
    """
    rows = next(part.shape[0] for part in parts if not isinstance(part, str))
    blocks = [
        np.broadcast_to(np.frombuffer(part.encode("ascii"), dtype=np.uint8), (rows, len(part)))
        if isinstance(part, str)
        else part
        for part in parts
    ]
    chars = np.hstack(blocks).astype(np.uint32)
    return chars.view(f"U{chars.shape[1]}").ravel().astype(object)


def _switch(choice: IntArray, builders: Sequence[Callable[[IntArray], ObjectArray]]) -> ObjectArray:
    """Fill each row with the builder its `choice` names; builders get the row positions."""
    out = np.empty(choice.size, dtype=object)
    for index, build in enumerate(builders):
        rows = np.flatnonzero(choice == index)
        if rows.size:
            out[rows] = build(rows)
    return out


def _pick(rng: np.random.Generator, options: Sequence[str], n: int) -> ObjectArray:
    """Draw `n` of `options` uniformly."""
    return np.array(options, dtype=object)[rng.integers(0, len(options), size=n)]


@functools.cache
def _plain_numbers(limit: int) -> ObjectArray:
    """Return `str(i)` for every i below `limit`, for lookups."""
    return np.array([str(value) for value in range(limit)], dtype=object)


def _slug(text: str) -> str:
    """Fold a name to the lowercase ASCII letters an email address would use."""
    folded = unicodedata.normalize("NFKD", text.casefold().translate(_ASCII_FOLD))
    return "".join(char for char in folded if char.isascii() and char.isalnum())


@dataclass(frozen=True)
class _NameVocabulary:
    """All locales' names in flat arrays, with each locale's start and size."""

    weights: npt.NDArray[np.float64]
    first: ObjectArray
    first_slug: ObjectArray
    initial: ObjectArray
    first_start: IntArray
    first_size: IntArray
    last: ObjectArray
    last_slug: ObjectArray
    last_start: IntArray
    last_size: IntArray


@functools.cache
def _names() -> _NameVocabulary:
    """Build the name vocabulary once, NFKC-normalized so that canonical forms are stable."""

    def flat(lists: list[tuple[str, ...]]) -> tuple[ObjectArray, ObjectArray, IntArray, IntArray]:
        texts = [unicodedata.normalize("NFKC", name) for names in lists for name in names]
        sizes = np.array([len(names) for names in lists], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        slugs = np.array([_slug(text) for text in texts], dtype=object)
        return np.array(texts, dtype=object), slugs, starts, sizes

    first, first_slug, first_start, first_size = flat([loc[2] for loc in _NAME_LOCALES])
    last, last_slug, last_start, last_size = flat([loc[3] for loc in _NAME_LOCALES])
    weights = np.array([loc[1] for loc in _NAME_LOCALES], dtype=np.float64)
    return _NameVocabulary(
        weights=weights / weights.sum(),
        first=first,
        first_slug=first_slug,
        initial=np.array([slug[:1] for slug in first_slug], dtype=object),
        first_start=first_start,
        first_size=first_size,
        last=last,
        last_slug=last_slug,
        last_start=last_start,
        last_size=last_size,
    )


# --------------------------------------------------------------------------- structured


def _structured_columns(*, decoys: bool) -> list[tuple[str, ColumnKind, str | None, Drawer]]:
    """Return (name, kind, entity, drawer) of each structured column, in frame order."""
    columns: list[tuple[str, ColumnKind, str | None, Drawer]] = [
        ("full_name", "direct_identifier", "PERSON", _draw_full_names),
        ("email", "direct_identifier", "EMAIL_ADDRESS", _draw_emails),
        ("phone", "direct_identifier", "PHONE_NUMBER", _draw_phones),
        ("ssn", "direct_identifier", "US_SSN", _draw_ssns),
        ("card", "direct_identifier", "CREDIT_CARD", _draw_cards),
        ("patient_id", "direct_identifier", "UNIQUE_ID", _draw_patient_ids),
        ("age", "quasi_identifier", None, _draw_ages),
        ("zip_code", "quasi_identifier", None, _draw_zip_codes),
        ("date_of_birth", "quasi_identifier", None, _draw_birth_dates),
        ("amount", "clean", None, _draw_amounts),
        ("diagnosis_code", "clean", None, _draw_diagnosis_codes),
    ]
    if decoys:
        columns += [
            ("plan_code", "clean", None, _draw_plan_codes),
            ("batch_code", "clean", None, _draw_batch_codes),
            ("visit_count", "clean", None, _draw_visit_counts),
        ]
    return columns


def _draw_names(
    rng: np.random.Generator, n: int
) -> tuple[ObjectArray, ObjectArray, ObjectArray, ObjectArray]:
    """Draw full names with their first-name slug, last-name slug and first initial."""
    vocab = _names()
    locale = rng.choice(vocab.weights.size, size=n, p=vocab.weights)
    last_locale = np.where(
        rng.random(n) < _MIXED_NAME_SHARE,
        rng.choice(vocab.weights.size, size=n, p=vocab.weights),
        locale,
    )

    def within(start: IntArray, size: IntArray) -> IntArray:
        return start + (rng.random(n) * size).astype(np.int64)

    first_at = within(vocab.first_start[locale], vocab.first_size[locale])
    last_at = within(vocab.last_start[last_locale], vocab.last_size[last_locale])
    initials = np.array([f" {chr(ord('A') + k)}. " for k in range(26)], dtype=object)
    middle = np.where(
        rng.random(n) < _MIDDLE_INITIAL_SHARE, initials[rng.integers(0, 26, size=n)], " "
    )
    full = np.asarray(vocab.first[first_at] + middle + vocab.last[last_at], dtype=object)
    return full, vocab.first_slug[first_at], vocab.last_slug[last_at], vocab.initial[first_at]


def _draw_full_names(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw full names: first and last, some with a middle initial."""
    return _draw_names(rng, n)[0]


def _draw_emails(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw addresses built from a name, under reserved example domains."""
    _, first, last, initial = _draw_names(rng, n)
    two_digits = _plain_numbers(100)[rng.integers(10, 100, size=n)]
    year = _plain_numbers(2010)[rng.integers(1950, 2006, size=n)]
    tag = _pick(rng, _EMAIL_TAGS, n)
    formats: tuple[Callable[[IntArray], ObjectArray], ...] = (
        lambda i: first[i] + "." + last[i],
        lambda i: initial[i] + last[i],
        lambda i: first[i] + "_" + last[i],
        # Plus-addressing trips naive email patterns.
        lambda i: first[i] + "." + last[i] + "+" + tag[i],
        lambda i: first[i] + last[i] + two_digits[i],
        lambda i: last[i] + "." + first[i] + year[i],
    )
    local = _switch(rng.choice(len(formats), size=n, p=_EMAIL_FORMAT_SHARES), formats)
    at_domains = np.array(["@" + domain for domain, _ in _EMAIL_DOMAINS], dtype=object)
    shares = np.array([share for _, share in _EMAIL_DOMAINS])
    at_domain = at_domains[rng.choice(at_domains.size, size=n, p=shares / shares.sum())]
    return np.asarray(local + at_domain, dtype=object)


def _draw_phones(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw phone numbers in US, UK, German, French and Indian formats."""
    area = np.array(_US_AREA_CODES)[rng.integers(0, len(_US_AREA_CODES), size=n)]
    # One draw serves every format: each row reads its format's digits from it (US lines
    # 555-0100..0199 take two, UK drama lines three, Berlin eight, Paris four, India ten).
    local = rng.integers(0, 10**10, size=n)

    def us(head: str, mid: str, i: IntArray) -> ObjectArray:
        return _render(head, _digits(area[i], 3), mid, _digits(local[i] % 100, 2))

    def paris(i: IntArray) -> ObjectArray:
        pairs = _digits(local[i] % 10_000, 4)
        return _render("+33 1 99 00 ", pairs[:, :2], " ", pairs[:, 2:])

    def india(i: IntArray) -> ObjectArray:
        head = _digits(60_000 + local[i] // 100_000 % 40_000, 5)  # mobiles start 6-9
        return _render("+91 ", head, " ", _digits(local[i] % 100_000, 5))

    formats: tuple[Callable[[IntArray], ObjectArray], ...] = (
        lambda i: us("(", ") 555-01", i),
        lambda i: us("", "-555-01", i),
        lambda i: us("", ".555.01", i),
        lambda i: us("+1 ", " 555 01", i),
        lambda i: _render("+44 20 7946 0", _digits(local[i] % 1000, 3)),
        lambda i: _render("+44 161 496 0", _digits(local[i] % 1000, 3)),
        lambda i: _render("+49 30 ", _digits(20_000_000 + local[i] % 80_000_000, 8)),
        paris,
        india,
    )
    return _switch(rng.choice(len(formats), size=n, p=_PHONE_FORMAT_SHARES), formats)


def _draw_ssns(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw SSNs with a valid structure, as `AAA-GG-SSSS` or `AAA GG SSSS`."""
    area = _SSN_AREAS[rng.integers(0, _SSN_AREAS.size, size=n)]
    group = rng.integers(1, 100, size=n)
    serial = rng.integers(1, 10_000, size=n)
    blocked = np.isin(area * 1_000_000 + group * 10_000 + serial, _SSN_BLOCKLIST)
    serial = np.where(blocked, serial % 9999 + 1, serial)
    a, g, s = _digits(area, 3), _digits(group, 2), _digits(serial, 4)
    formats: tuple[Callable[[IntArray], ObjectArray], ...] = (
        lambda i: _render(a[i], "-", g[i], "-", s[i]),
        lambda i: _render(a[i], " ", g[i], " ", s[i]),
    )
    return _switch(rng.choice(2, size=n, p=(0.75, 0.25)), formats)


def _luhn_check_digits(payload: CharArray) -> CharArray:
    """Return the Luhn check digit completing each row of payload digits (0-9 values)."""
    length = payload.shape[1] + 1
    # Counting from the right with the check digit at position 1, even positions double.
    doubled = (length - np.arange(length - 1)) % 2 == 0
    total = _LUHN_DOUBLED[payload[:, doubled]].sum(axis=1, dtype=np.int64)
    total += payload[:, ~doubled].sum(axis=1, dtype=np.int64)
    return ((10 - total % 10) % 10).astype(np.uint8)


def _draw_cards(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw Luhn-valid Visa and Mastercard (16 digits) and Amex (15 digits) numbers."""
    brand = rng.choice(3, size=n, p=_CARD_BRAND_SHARES)
    digits = rng.integers(0, 10, size=(n, 16), dtype=np.uint8)
    series_2 = rng.random(n) < _MASTERCARD_2_SERIES_SHARE
    mc_second = rng.integers(1, 6, size=n)
    mc_2_prefix = _digits(rng.integers(2221, 2721, size=n), 4) - np.uint8(ord("0"))
    amex_second = np.where(rng.random(n) < 0.5, 4, 7)

    # Column by column: whole-column selects are far cheaper than masked row copies.
    visa, amex = brand == 0, brand == 2
    modern = (brand == 1) & series_2
    classic = (brand == 1) & ~series_2
    digits[:, 0] = np.select([visa, amex, classic], [4, 3, 5], default=2)
    digits[:, 1] = np.select(
        [amex, classic, modern], [amex_second, mc_second, mc_2_prefix[:, 1]], default=digits[:, 1]
    )
    digits[:, 2] = np.where(modern, mc_2_prefix[:, 2], digits[:, 2])
    digits[:, 3] = np.where(modern, mc_2_prefix[:, 3], digits[:, 3])
    check_16 = _luhn_check_digits(digits[:, :15])
    digits[:, 14] = np.where(amex, _luhn_check_digits(digits[:, :14]), digits[:, 14])
    digits[:, 15] = np.where(amex, 0, check_16)  # unused by Amex's 15 digits

    chars = digits + np.uint8(ord("0"))
    style = rng.choice(3, size=n, p=_CARD_STYLE_SHARES)
    out = np.empty(n, dtype=object)
    for index, sep in enumerate((" ", "-", "")):
        rows = np.flatnonzero((style == index) & ~amex)
        if rows.size:
            c = chars[rows]
            out[rows] = _render(c[:, 0:4], sep, c[:, 4:8], sep, c[:, 8:12], sep, c[:, 12:16])
        rows = np.flatnonzero((style == index) & amex)
        if rows.size:
            c = chars[rows]
            out[rows] = _render(c[:, 0:4], sep, c[:, 4:10], sep, c[:, 10:15])
    return out


def _draw_patient_ids(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw medical record numbers `MRN-dddddddd`, all different."""
    return _render("MRN-", _digits(rng.choice(10**8, size=n, replace=False), 8))


def _draw_ages(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw ages 18-90 as text."""
    return _plain_numbers(91)[rng.integers(18, 91, size=n)]


def _draw_zip_codes(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw five-digit US ZIP codes, leading zeros kept (00501-99950)."""
    return _render(_digits(rng.integers(501, 99_951, size=n), 5))


def _draw_birth_dates(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw dates 1934-2006, as ISO `1961-04-23` or US `04/23/1961`."""
    year = rng.integers(_DOB_FIRST_YEAR, _DOB_LAST_YEAR + 1, size=n)
    month = rng.integers(1, 13, size=n)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = np.where(leap & (month == 2), 29, _DAYS_IN_MONTH[month])
    day = 1 + (rng.random(n) * month_days).astype(np.int64)
    y, m, d = _digits(year, 4), _digits(month, 2), _digits(day, 2)
    formats: tuple[Callable[[IntArray], ObjectArray], ...] = (
        lambda i: _render(y[i], "-", m[i], "-", d[i]),
        lambda i: _render(m[i], "/", d[i], "/", y[i]),
    )
    return _switch(rng.choice(2, size=n, p=(_DOB_ISO_SHARE, 1 - _DOB_ISO_SHARE)), formats)


def _draw_amounts(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw money amounts 1.00-9999.99 with two decimals, no separators."""
    whole = _plain_numbers(10_000)[rng.integers(1, 10_000, size=n)]
    return np.asarray(whole + _render(".", _digits(rng.integers(0, 100, size=n), 2)), dtype=object)


def _draw_diagnosis_codes(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw ICD-10 codes such as `E11.9`, `I10`, `J45.909`."""
    return _pick(rng, _ICD10_CODES, n)


def _draw_plan_codes(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw plan codes such as `PLN-4821-B`."""
    return _render(
        "PLN-",
        _digits(rng.integers(1000, 10_000, size=n), 4),
        "-",
        _letters(rng.integers(0, 26, n)),
    )


def _draw_batch_codes(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw batch codes such as `BX-2024-0042`."""
    year = _digits(rng.integers(2019, 2026, size=n), 4)
    return _render("BX-", year, "-", _digits(rng.integers(1, 10_000, size=n), 4))


def _draw_visit_counts(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw small visit counts, Poisson with mean 2, capped at 20."""
    return _plain_numbers(21)[np.minimum(rng.poisson(2.0, size=n), 20)]


# --------------------------------------------------------------------------- note-only values


def _iban_remainder(text: str) -> int:
    """Return the ISO 13616 mod-97 remainder of `text` (letters count as 10-35)."""
    return int("".join(str(int(char, 36)) for char in text)) % 97


def _es_control_digit(digits: str) -> str:
    """Return one Spanish CCC control digit (mod 11 over ten weighted digits)."""
    check = 11 - sum(w * int(d) for w, d in zip(_ES_CONTROL_WEIGHTS, digits, strict=True)) % 11
    return str({11: 0, 10: 1}.get(check, check))


def _iban(rand: random.Random) -> str:
    """Draw one IBAN of DE, GB, FR, NL or ES, national check digits included."""

    def digits(count: int) -> str:
        return "".join(rand.choices("0123456789", k=count))

    country = rand.choice(_IBAN_COUNTRIES)
    if country == "DE":
        bban = digits(18)  # Bankleitzahl (8) + account (10)
    elif country == "GB":
        bban = rand.choice(_GB_BANKS) + digits(14)  # bank + sort code (6) + account (8)
    elif country == "FR":
        bank, branch, account = digits(5), digits(5), digits(11)
        key = 97 - (89 * int(bank) + 15 * int(branch) + 3 * int(account)) % 97
        bban = f"{bank}{branch}{account}{key:02d}"
    elif country == "NL":
        # Dutch accounts pass the "elfproef": weights 10..1, sum divisible by 11.
        account = digits(10)
        while sum((10 - k) * int(d) for k, d in enumerate(account)) % 11:
            account = digits(10)
        bban = rand.choice(_NL_BANKS) + account
    else:
        bank, branch, account = digits(4), digits(4), digits(10)
        control = _es_control_digit("00" + bank + branch) + _es_control_digit(account)
        bban = bank + branch + control + account
    iban = f"{country}{98 - _iban_remainder(bban + country + '00'):02d}{bban}"
    if rand.random() < 0.5:
        return " ".join(iban[at : at + 4] for at in range(0, len(iban), 4))
    return iban


def _draw_ibans(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw IBANs, half printed in groups of four, half electronic."""
    rand = _python_random(rng)
    return np.array([_iban(rand) for _ in range(n)], dtype=object)


def _draw_ip_addresses(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw IPv4 and IPv6 addresses from the documentation ranges."""
    rand = _python_random(rng)

    def one() -> str:
        if rand.random() < _IPV4_SHARE:
            return f"{rand.choice(_IPV4_PREFIXES)}.{rand.randint(1, 254)}"
        groups = [f"{rand.randrange(1, 0x10000):x}" for _ in range(rand.choice((2, 6)))]
        joiner = "2001:db8::" if len(groups) == 2 else "2001:db8:"
        return joiner + ":".join(groups)

    return np.array([one() for _ in range(n)], dtype=object)


def _draw_urls(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw personal URLs under the reserved example domains."""
    rand = _python_random(rng)
    vocab = _names()
    firsts, lasts = list(vocab.first_slug), list(vocab.last_slug)

    def one() -> str:
        first, last = rand.choice(firsts), rand.choice(lasts)
        form = rand.randrange(4)
        if form == 0:
            return f"https://example.org/u/{first[0]}{last}{rand.randint(1, 99)}"
        if form == 1:
            return f"https://portal.example.com/members/{first}.{last}"
        if form == 2:
            return f"http://www.example.net/patients/{first}-{last}/records"
        return f"https://records.example.org/view?user={first}{last}{rand.randint(1, 99)}"

    return np.array([one() for _ in range(n)], dtype=object)


def _draw_street_addresses(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw US, French, German and Spanish street addresses."""
    rand = _python_random(rng)

    def one() -> str:
        form = rand.random()
        if form < 0.55:
            street = f"{rand.choice(_US_STREETS)} {rand.choice(_US_SUFFIXES)}"
            return f"{rand.randint(1, 9899)} {street}, {rand.choice(_US_CITIES)}"
        if form < 0.7:
            return f"{rand.randint(1, 120)} {rand.choice(_FR_STREETS)}{rand.choice(_FR_CITIES)}"
        if form < 0.85:
            return f"{rand.choice(_DE_STREETS)} {rand.randint(1, 150)}, {rand.choice(_DE_CITIES)}"
        return f"{rand.choice(_ES_STREETS)} {rand.randint(1, 200)}, {rand.choice(_ES_CITIES)}"

    return np.array([unicodedata.normalize("NFKC", one()) for _ in range(n)], dtype=object)


_NOTE_VALUES: dict[str, Drawer] = {
    "PERSON": _draw_full_names,
    "EMAIL_ADDRESS": _draw_emails,
    "PHONE_NUMBER": _draw_phones,
    "US_SSN": _draw_ssns,
    "CREDIT_CARD": _draw_cards,
    "IBAN_CODE": _draw_ibans,
    "IP_ADDRESS": _draw_ip_addresses,
    "URL": _draw_urls,
    "STREET_ADDRESS": _draw_street_addresses,
    "DATE_OF_BIRTH": _draw_birth_dates,
    "US_ZIP_CODE": _draw_zip_codes,
    "UNIQUE_ID": _draw_patient_ids,
}


# --------------------------------------------------------------------------- notes


def _disguise(value: str, rand: random.Random) -> str:
    """Return `value` with zero-width characters inserted or full-width digits or `@`."""
    methods = ["zero_width"]
    if any(char.isascii() and char.isdigit() for char in value):
        methods.append("digits")
    if "@" in value:
        methods.append("at")
    method = rand.choice(methods)
    if method == "at":
        return value.replace("@", _FULLWIDTH_AT)
    if method == "digits":
        places = [k for k, char in enumerate(value) if char.isascii() and char.isdigit()]
        chosen = set(rand.sample(places, rand.randint(1, len(places))))
        return "".join(
            chr(_FULLWIDTH_ZERO + int(char)) if k in chosen else char
            for k, char in enumerate(value)
        )
    # Never before a combining mark: a zero-width starter there would detach the accent.
    gaps = [k for k in range(1, len(value)) if not unicodedata.combining(value[k])]
    cuts = sorted(rand.sample(gaps, min(len(gaps), rand.randint(1, 2))), reverse=True)
    for cut in cuts:
        value = value[:cut] + rand.choice(_ZERO_WIDTH) + value[cut:]
    return value


def _decoy_fill(rand: random.Random) -> dict[str, str]:
    """Draw the decoy values one note's templates may use."""
    lab, low, high = rand.choice(_LAB_VALUES)
    money = rand.uniform(5.0, 9999.0)
    return {
        "icd": rand.choice(_ICD10_CODES),
        "lab": lab.format(rand.uniform(low, high)),
        "plan": f"PLN-{rand.randint(1000, 9999)}-{chr(ord('A') + rand.randrange(26))}",
        "batch": f"BX-{rand.randint(2019, 2025)}-{rand.randint(1, 9999):04d}",
        "amount": f"${money:,.2f}" if rand.random() < 0.5 else f"{money:.2f}",
        "count": str(rand.randint(2, 12)),
    }


def _draw_notes(
    seed: int, count: int, *, pii_fraction: float, disguise_fraction: float
) -> tuple[ObjectArray, list[Planted]]:
    """Draw `count` notes and the planted values they hold."""
    rng = _stream(seed, NOTE_COLUMN)
    # Which notes hold PII, how many values, which entities: all drawn up front, so that
    # each entity's values can be drawn as one vectorized pool.
    holds_pii = np.zeros(count, dtype=bool)
    holds_pii[rng.choice(count, size=round(pii_fraction * count), replace=False)] = True
    values_per_note = np.where(holds_pii, 1 + (rng.random(count) < _TWO_VALUE_SHARE), 0)
    first = rng.integers(0, len(ENTITIES), size=count)
    # The second value is always of another entity than the first.
    second = (first + 1 + rng.integers(0, len(ENTITIES) - 1, size=count)) % len(ENTITIES)
    slots_entity = np.stack([first, second], axis=1)
    pools: dict[str, Iterator[str]] = {}
    for index, entity in enumerate(ENTITIES):
        wanted = int(((slots_entity == index) & (np.arange(2) < values_per_note[:, None])).sum())
        pools[entity] = iter(_NOTE_VALUES[entity](_stream(seed, NOTE_COLUMN, index + 1), wanted))
    rand = _python_random(rng)

    texts = np.empty(count, dtype=object)
    planted: list[Planted] = []
    for row in range(count):
        fill = _decoy_fill(rand)
        opener = rand.choice(_OPENERS).format(**fill)
        closer = rand.choice(_CLOSERS).format(**fill)
        clauses = []
        for slot in range(int(values_per_note[row])):
            entity = ENTITIES[int(slots_entity[row, slot])]
            canonical = str(next(pools[entity]))
            disguised = rand.random() < disguise_fraction
            value = _disguise(canonical, rand) if disguised else canonical
            clauses.append(rand.choice(_PII_CLAUSES[entity]).format(v=value))
            planted.append(Planted(row, NOTE_COLUMN, entity, value, canonical, disguised))
        middle = " and ".join(clauses) if clauses else rand.choice(_CLEAN_MIDDLES).format(**fill)
        texts[row] = f"{opener}, {middle}; {closer}"
    return texts, planted
