"""Synthetic direct identifiers for the bundled UCI Adult demo tables.

The Adult census extract has quasi-identifiers (age, sex, race, ...) but no direct
identifiers, so on its own it cannot show the PII scan, the column actions or the
residual-PII gate doing anything. `enrich_adult` adds eight made-up identifier columns
that agree with each record (a first name matching `sex`, a birth date matching `age`,
an email derived from the name, free-text notes quoting the row's own name, phone or
email), and `write_demo_data` writes the train and test tables the demo config reads.

Everything is drawn from a seeded `numpy.random.Generator` over Faker's static word
lists, whole columns at a time: no Faker instance, no per-row Python calls, so the full
table takes well under a second. The same seed gives the same bytes as long as Faker's
lists and numpy's sampling algorithms do not change, i.e. for pinned versions.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import string
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from privgate.errors import DataError
from privgate.home import PROJECT_ROOT

REFERENCE_DATE: date = date(1994, 7, 1)
"""The census date: every `date_of_birth` gives back the row's `age` at this date."""

IDENTIFIER_COLUMNS: tuple[str, ...] = (
    "full_name",
    "email",
    "phone",
    "ssn",
    "street_address",
    "zip_code",
    "date_of_birth",
    "notes",
)

ObjectArray = npt.NDArray[np.object_]
IntArray = npt.NDArray[np.int64]

_REQUIRED_COLUMNS = ("age", "sex")
_TRAIN_FILE = "adult.train.csv.gz"
_TEST_FILE = "adult.test.csv.gz"
_MAX_AGE = 130

# One independent stream per column family, keyed by position in this tuple: a change
# to how one column is drawn never shifts the values of the others. Append, never reorder.
_STREAMS = ("locale", "names", "email", "phone", "ssn", "address", "zip", "dob", "notes")
# Mixed into the seed of the test table, so train and test never share a stream.
_TEST_TABLE_TAG = 0x7E57

# (locale, share of rows), US first. Mostly US names, with a minority from a few European
# locales so that accents, compound first names and particles ("Da Silva") reach the PII
# scan.
_NAME_LOCALES = (
    ("en_US", 0.82),
    ("es_ES", 0.07),
    ("de_DE", 0.04),
    ("fr_FR", 0.04),
    ("it_IT", 0.03),
)
# Names a person could carry: letters, single spaces, hyphens and apostrophes, each word
# capitalized. Drops Faker oddities such as "Hans D." or "Dussen van".
_NAME_PATTERN = re.compile(r"^[^\W\d_][^\W\d_'-]*(?:[ '-][^\W\d_][^\W\d_'-]*)*$")
# NFKD leaves these as they are; spell them out so every slug stays ASCII.
_ASCII_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d"})

_EMAIL_DOMAINS = (
    ("gmail.com", 0.30),
    ("yahoo.com", 0.14),
    ("outlook.com", 0.10),
    ("hotmail.com", 0.08),
    ("aol.com", 0.05),
    ("icloud.com", 0.05),
    ("example.com", 0.12),
    ("example.org", 0.08),
    ("example.net", 0.08),
)
_EMAIL_TAGS = ("news", "shop", "bills", "work", "promo")

# Assigned NANP area codes (every one accepted by libphonenumber as a valid US number,
# which the Presidio phone recognizer requires), spread over the country.
_AREA_CODES = (
    201, 202, 203, 205, 206, 207, 208, 210, 212, 213, 214, 215, 216, 217, 218, 219, 224, 225, 228,
    229, 231, 234, 239, 240, 248, 251, 252, 253, 254, 256, 260, 262, 267, 269, 270, 281, 301, 302,
    303, 304, 305, 307, 309, 310, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 323, 330, 334,
    336, 347, 352, 360, 361, 385, 401, 402, 404, 405, 406, 407, 408, 409, 410, 412, 413, 414, 415,
    417, 419, 423, 425, 432, 434, 435, 440, 443, 469, 478, 479, 480, 484, 501, 502, 503, 504, 505,
    507, 508, 509, 510, 512, 513, 515, 516, 517, 518, 520, 530, 540, 541, 551, 559, 561, 562, 563,
    570, 571, 573, 574, 580, 585, 586, 601, 602, 603, 605, 606, 607, 608, 609, 610, 612, 614, 615,
    616, 617, 618, 619, 620, 623, 626, 630, 631, 636, 641, 646, 650, 651, 660, 661, 662, 678, 701,
    702, 703, 704, 706, 707, 708, 712, 713, 714, 715, 716, 717, 718, 719, 720, 724, 727, 731, 732,
    734, 740, 757, 760, 763, 765, 770, 772, 773, 774, 775, 781, 785, 786, 801, 802, 803, 804, 805,
    806, 808, 810, 812, 813, 814, 815, 816, 817, 818, 828, 830, 831, 832, 843, 845, 847, 850, 856,
    857, 858, 859, 860, 862, 863, 864, 865, 870, 901, 903, 904, 906, 907, 908, 909, 910, 912, 913,
    914, 915, 916, 917, 918, 919, 920, 925, 928, 931, 936, 937, 940, 941, 949, 951, 952, 954, 956,
    970, 971, 972, 973, 978, 979, 980, 985, 989,
)  # fmt: skip
# Exchanges start with 2-9; N11 codes (411, 911, ...) are service numbers, never lines.
_EXCHANGES = tuple(code for code in range(200, 1000) if code % 100 != 11)
_PHONE_FORMAT_SHARES = (0.35, 0.35, 0.15, 0.15)  # (617) 555-0123, 617-555-0123, dots, +1

# SSN areas ever valid in the "AAA-GG-SSSS" layout: 000, 666 and 900-999 never are.
_SSN_AREAS = np.array([area for area in range(1, 900) if area != 666], dtype=np.int64)
_SSN_PER_AREA = 99 * 9999  # groups 01-99 times serials 0001-9999
_SSN_SPACE = _SSN_AREAS.size * _SSN_PER_AREA
# Published sample SSNs and repeated digits: structurally valid, but Presidio discards
# them as placeholders, so a row holding one would look like it had no SSN at all.
_SSN_BLOCKLIST = np.array(
    [78051120, 219099999, 123456789, *(int(str(digit) * 9) for digit in range(1, 9))],
    dtype=np.int64,
)

_STREET_NAMES = (
    "Maple", "Oak", "Pine", "Cedar", "Elm", "Walnut", "Chestnut", "Willow", "Birch",
    "Spruce", "Cherry", "Hickory", "Magnolia", "Main", "Church", "Mill", "Park", "Lake",
    "Hill", "River", "Spring", "Ridge", "Meadow", "Forest", "Sunset", "Highland",
    "Center", "Union", "School", "Market", "Water", "Bridge", "Prospect", "Pleasant",
    "Washington", "Lincoln", "Jefferson", "Madison", "Franklin", "Jackson", "Adams",
    "First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth",
)  # fmt: skip
_STREET_SUFFIXES = (
    ("St", 0.26), ("Ave", 0.20), ("Rd", 0.14), ("Dr", 0.12), ("Ln", 0.08),
    ("Blvd", 0.05), ("Ct", 0.05), ("Way", 0.04), ("Pl", 0.03), ("Ter", 0.03),
)  # fmt: skip
_STREET_FROM_SURNAME_SHARE = 0.35  # as Faker does: "{last_name} {suffix}"

# Three-digit ZIP prefixes of populous areas (Boston 021, Manhattan 100, Chicago 606,
# Los Angeles 900, ...), so that generalizing ZIP to three digits groups rows the way it
# does in real data. The rest of the rows get any prefix 010-998.
_ZIP_PREFIXES = (
    11, 21, 29, 41, 54, 61, 71, 85, 100, 104, 112, 113, 142, 146, 152, 191, 200, 232,
    276, 282, 292, 303, 331, 352, 372, 381, 402, 432, 441, 452, 462, 482, 503, 532,
    554, 606, 631, 641, 681, 701, 722, 731, 741, 752, 770, 782, 787, 799, 802, 837,
    841, 850, 871, 891, 900, 921, 941, 946, 951, 958, 968, 972, 981, 995,
)  # fmt: skip
_ZIP_POPULOUS_SHARE = 0.7

_NOTE_PII_SHARE = 0.5
# Notes quoting the row's identifiers, exactly as they appear in their own columns. Each
# combination of one or two of name, phone and email appears. A phone always follows
# "phone", "number", "mobile" or "cell" within five words: Presidio's phone recognizer
# scores 0.4 without such a context word, below the usual 0.5 threshold ("call" does not
# count: spaCy lists it as a stop word).
_PII_NOTE_TEMPLATES = (
    "Spoke with {full_name} about the renewal; the customer will decide after reading "
    "the new terms.",
    "{full_name} called to ask how the deductible works and was satisfied with the explanation.",
    "Left a message for {full_name} about the missing signature page on the application.",
    "Met with {full_name}, who asked for paper statements instead of electronic ones from now on.",
    "Customer asked to be reached on the new phone number {phone} instead of the one on file.",
    "Please ring back on mobile {phone} to confirm the updated beneficiary details.",
    "Left a voicemail; the callback number given was {phone} for any questions about the claim.",
    "Send the signed forms to {email} and copy the agent who handles the renewal.",
    "Customer prefers to be contacted at {email} rather than by phone about billing.",
    "Statement bounced; asked the customer to confirm that {email} is still the right address.",
    "Spoke with {full_name} about the renewal; the best callback number is {phone}.",
    "{full_name} asked for a supervisor and left the phone number {phone} for a reply.",
    "Please have someone reach {full_name} on cell {phone} about the late payment notice.",
    "Sent the benefits summary to {full_name} at {email} as requested during the call.",
    "{full_name} wants all correspondence sent to {email} instead of the postal address.",
    "Customer gave phone number {phone} and asked for copies of every statement at {email}.",
    "Confirm the new contact details, phone {phone} and email {email}, then close the ticket.",
)
# Notes with no personal data. No digits, and no capitalized word but the first: a spaCy
# NER model reads capitalized words as names or places, and any such finding in this
# half is a false positive the PII gate would have to explain.
_PLAIN_NOTE_TEMPLATES = (
    "Requested paper statements instead of electronic ones; updated the mailing preference "
    "on the account.",
    "No changes to coverage were requested during the review, so the current plan stays in place.",
    "Customer asked how the deductible works and was satisfied with the explanation given on "
    "the call.",
    "Follow-up needed on the missing signature page before the application can move forward.",
    "Confirmed receipt of the signed forms; the file is complete and ready for processing.",
    "Asked to lower the premium; reviewed cheaper options with the customer but no decision "
    "was made.",
    "Reported a billing error on the latest invoice; a correction ticket was opened with accounts.",
    "Prefers contact by mail only and asked not to receive marketing calls or promotional offers.",
    "Wants to add a dependent to the policy once the paperwork from the employer arrives.",
    "Complained about long hold times; apologized and passed the feedback on to the service team.",
    "Account reviewed at renewal with nothing outstanding, so no further action is required.",
    "Asked for a copy of the benefits summary to be sent with the next regular statement.",
    "Payment arrived late because of a bank transfer delay, and the late fee was waived once.",
    "Interested in the savings plan but wants to compare it with other offers before deciding.",
    "Updated the beneficiary details as requested; the customer will send the signed form by post.",
    "Mentioned a recent job change and asked whether the group coverage can be continued.",
    "Claim documents were incomplete, so we sent a checklist of what is still missing from "
    "the file.",
    "Satisfied with the service overall; declined the survey and asked us to close the ticket.",
    "Requested that all correspondence go to the work address rather than the home address.",
    "Questions about tax forms were answered and no changes to withholding were made on the "
    "account.",
)


@dataclass(frozen=True)
class _Words:
    """A weighted vocabulary: display forms, their ASCII slugs and draw probabilities."""

    text: ObjectArray
    slug: ObjectArray
    weight: npt.NDArray[np.float64]


@dataclass(frozen=True)
class _NameLocale:
    """The first and last names of one Faker locale."""

    male: _Words
    female: _Words
    last: _Words


def enrich_adult(frame: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Add synthetic direct identifiers, consistent with each record, to an Adult table.

    The eight `IDENTIFIER_COLUMNS` are appended as text: a sex-matching `full_name`, an
    `email` derived from it, a US `phone`, an `ssn` unique within the table, a
    `street_address`, a five-digit `zip_code`, a `date_of_birth` that gives back `age`
    at `REFERENCE_DATE`, and free-text `notes`, half of which quote the row's name,
    phone or email.

    Args:
        frame: An Adult table; needs `age` (whole years) and `sex` (`Male`/`Female`;
            any other value gets a first name of either sex).
        seed: Non-negative seed; the same seed and frame give an identical result.

    Returns:
        A new frame with the original columns unchanged and the identifiers appended.

    Raises:
        DataError: when `age` or `sex` is missing, `age` is not whole years, or the
            frame already has an identifier column.
        ValueError: when `seed` is negative.
    """
    return _enrich(frame, seed=seed, reserved_ssns=np.empty(0, dtype=np.int64))


def write_demo_data(
    out_dir: Path,
    *,
    seed: int = 7,
    source_dir: Path | None = None,
    rows: int | None = None,
) -> tuple[Path, Path]:
    """Write the enriched Adult train and test tables the demo config reads.

    The test table is drawn with a seed derived from `seed`, and never reuses an SSN of
    the train table, so a record cannot be linked across the two by its identifiers.

    Args:
        out_dir: Folder for `adult_train.csv` and `adult_test.csv`; created if missing.
        seed: Seed of the train table; the test table's seed is derived from it.
        source_dir: Folder holding `adult.train.csv.gz` and `adult.test.csv.gz`;
            defaults to the copy bundled in `data/adult`.
        rows: Keep only the first `rows` train rows and `rows // 2` test rows (quick
            runs); `None` keeps all.

    Returns:
        The paths of the train and the test table, in that order.

    Raises:
        DataError: when a source file is missing, unreadable or lacks `age` or `sex`.
        ValueError: when `rows` is below 2 or `seed` is negative.
    """
    if rows is not None and rows < 2:
        raise ValueError(f"rows must be at least 2 (the test table keeps rows // 2), got {rows}")
    source = source_dir if source_dir is not None else PROJECT_ROOT / "data" / "adult"
    # Read and enrich both before writing either, so a bad test file never leaves a
    # fresh train table next to a stale test table.
    train_raw = _read_source(source / _TRAIN_FILE, nrows=rows)
    test_raw = _read_source(source / _TEST_FILE, nrows=None if rows is None else rows // 2)
    train = _enrich(train_raw, seed=seed, reserved_ssns=np.empty(0, dtype=np.int64))
    train_ssns = train["ssn"].str.replace("-", "", regex=False).astype(np.int64).to_numpy()
    test = _enrich(test_raw, seed=_derive_test_seed(seed), reserved_ssns=train_ssns)

    out_dir.mkdir(parents=True, exist_ok=True)
    train_path = out_dir / "adult_train.csv"
    test_path = out_dir / "adult_test.csv"
    _write_csv_atomically(train, train_path)
    _write_csv_atomically(test, test_path)
    return train_path, test_path


# --------------------------------------------------------------------------- orchestration


def _enrich(frame: pd.DataFrame, *, seed: int, reserved_ssns: IntArray) -> pd.DataFrame:
    """Enrich `frame` as `enrich_adult` does, never drawing an SSN in `reserved_ssns`."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    _check_frame(frame)
    rngs = {
        name: np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        for index, name in enumerate(_STREAMS)
    }
    n = len(frame)
    ages = pd.to_numeric(frame["age"]).to_numpy(dtype=np.int64)
    sex = frame["sex"].astype("string").str.strip().str.casefold().to_numpy(na_value="")

    dob = _draw_birth_dates(rngs["dob"], ages)
    first, first_slug, last, last_slug = _draw_names(rngs["locale"], rngs["names"], sex)
    full_name = _concat(first, " ", last)
    birth_years = dob.astype("datetime64[Y]").astype(np.int64) + 1970
    email = _draw_emails(rngs["email"], first_slug, last_slug, birth_years)
    phone = _draw_phones(rngs["phone"], n)
    ssn = _format_ssns(_draw_ssn_codes(rngs["ssn"], n, reserved=reserved_ssns))
    notes = _draw_notes(rngs["notes"], {"full_name": full_name, "phone": phone, "email": email})

    columns: dict[str, Any] = {
        "full_name": full_name,
        "email": email,
        "phone": phone,
        "ssn": ssn,
        "street_address": _draw_street_addresses(rngs["address"], n),
        "zip_code": _draw_zip_codes(rngs["zip"], n),
        "date_of_birth": np.datetime_as_string(dob, unit="D").astype(object),
        "notes": notes,
    }
    return frame.assign(**{name: columns[name] for name in IDENTIFIER_COLUMNS})


def _check_frame(frame: pd.DataFrame) -> None:
    """Raise `DataError` unless `frame` has usable `age` and `sex` and no identifiers."""
    missing = [column for column in _REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(
            f"the table lacks column(s) {missing}; enriching needs 'age' (years) and "
            "'sex' (Male/Female) to draw a matching birth date and first name"
        )
    clashing = [column for column in IDENTIFIER_COLUMNS if column in frame.columns]
    if clashing:
        raise DataError(
            f"the table already has identifier column(s) {clashing}; enrich the raw "
            "Adult table, not an enriched one"
        )
    ages = pd.to_numeric(frame["age"], errors="coerce")
    bad = int((ages.isna() | (ages % 1 != 0) | (ages < 0) | (ages > _MAX_AGE)).sum())
    if bad:
        raise DataError(
            f"column 'age' must hold whole years between 0 and {_MAX_AGE}; "
            f"{bad} of {len(frame)} rows do not"
        )


def _derive_test_seed(seed: int) -> int:
    """Return the test table's seed, a fixed function of the train table's."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    state = np.random.SeedSequence([seed, _TEST_TABLE_TAG])
    return int(state.generate_state(1, dtype=np.uint64)[0])


# --------------------------------------------------------------------------- source files


def _read_source(path: Path, *, nrows: int | None) -> pd.DataFrame:
    """Read a source table, as `DataError` when it is missing, unreadable or lacking."""
    try:
        table = pd.read_csv(path, nrows=nrows)
    except FileNotFoundError:
        raise DataError(
            f"source table {path} not found; pass source_dir= a folder holding "
            f"{_TRAIN_FILE} and {_TEST_FILE}"
        ) from None
    except (OSError, EOFError, ValueError) as exc:
        # Parser messages can quote the offending line; only the error kind is shown.
        raise DataError(
            f"source table {path} could not be read as CSV ({type(exc).__name__})"
        ) from None
    missing = [column for column in _REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise DataError(f"source table {path} lacks required column(s) {missing}")
    return table


def _write_csv_atomically(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` as CSV without an index."""
    # Written aside then renamed: an interrupted run never leaves a truncated table that
    # a later pipeline run would read as complete.
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False)
    os.replace(partial, path)


# --------------------------------------------------------------------------- vocabulary


@functools.cache
def _name_locales() -> tuple[tuple[_NameLocale, ...], npt.NDArray[np.float64]]:
    """Load the Faker name lists once; US first, then the other locales this Faker ships."""
    locales: list[_NameLocale] = []
    shares: list[float] = []
    for code, share in _NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{code}").Provider
        except ImportError:
            # The US lists are the base (street names come from them too); the others
            # only add variety, so a Faker without one still works.
            if code == _NAME_LOCALES[0][0]:
                raise
            continue
        locales.append(
            _NameLocale(
                male=_words(provider.first_names_male),
                female=_words(provider.first_names_female),
                last=_words(provider.last_names),
            )
        )
        shares.append(share)
    weights = np.array(shares, dtype=np.float64)
    return tuple(locales), weights / weights.sum()


def _words(source: Any) -> _Words:
    """Build a vocabulary from a Faker list: a tuple, or a mapping of name to weight."""
    pairs = source.items() if hasattr(source, "items") else ((item, 1.0) for item in source)
    merged: dict[str, float] = {}
    for name, weight in pairs:
        if _NAME_PATTERN.match(name) and all(word[0].isupper() for word in name.split()):
            merged[name] = merged.get(name, 0.0) + float(weight)
    texts = list(merged)
    weight = np.array([merged[name] for name in texts], dtype=np.float64)
    return _Words(
        text=np.array(texts, dtype=object),
        slug=np.array([_ascii_slug(name) for name in texts], dtype=object),
        weight=weight / weight.sum(),
    )


def _ascii_slug(text: str) -> str:
    """Fold a name to the lowercase ASCII letters an email address would use."""
    folded = unicodedata.normalize("NFKD", text.casefold().translate(_ASCII_FOLD))
    return re.sub(r"[^a-z0-9]", "", folded.encode("ascii", "ignore").decode("ascii"))


def _draw_indices(rng: np.random.Generator, words: _Words, n: int) -> npt.NDArray[np.intp]:
    """Draw `n` positions into a vocabulary, by its weights."""
    return rng.choice(words.text.size, size=n, p=words.weight)


def _concat(*parts: ObjectArray | str) -> ObjectArray:
    """Join strings and string arrays element-wise, like `str.__add__` per row."""
    joined: Any = ""
    for part in parts:
        # Object arrays add element-wise as Python str, in one C loop over the rows.
        joined = joined + part
    return np.asarray(joined, dtype=object)


@functools.cache
def _zero_padded(width: int) -> ObjectArray:
    """Return every number below 10**width as a zero-padded string, for lookups."""
    return np.array([f"{value:0{width}d}" for value in range(10**width)], dtype=object)


def _draw_weighted(
    rng: np.random.Generator, options: tuple[tuple[str, float], ...], n: int
) -> ObjectArray:
    """Draw `n` values from `(value, weight)` options."""
    values = np.array([value for value, _ in options], dtype=object)
    weights = np.array([weight for _, weight in options], dtype=np.float64)
    return values[rng.choice(values.size, size=n, p=weights / weights.sum())]


# --------------------------------------------------------------------------- columns


def _draw_names(
    locale_rng: np.random.Generator, name_rng: np.random.Generator, sex: npt.NDArray[Any]
) -> tuple[ObjectArray, ObjectArray, ObjectArray, ObjectArray]:
    """Draw first and last names (and their slugs), first names matching `sex`."""
    n = sex.size
    locales, shares = _name_locales()
    locale = locale_rng.choice(len(locales), size=n, p=shares)
    is_male = sex == "male"
    # A row with no usable sex gets a first name of either sex rather than failing.
    unknown = ~is_male & (sex != "female")
    is_male = is_male | (unknown & (locale_rng.random(n) < 0.5))

    first = np.empty(n, dtype=object)
    first_slug = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    last_slug = np.empty(n, dtype=object)
    for index, names in enumerate(locales):
        in_locale = locale == index
        for words, rows in (
            (names.male, in_locale & is_male),
            (names.female, in_locale & ~is_male),
        ):
            picked = _draw_indices(name_rng, words, int(rows.sum()))
            first[rows] = words.text[picked]
            first_slug[rows] = words.slug[picked]
        picked = _draw_indices(name_rng, names.last, int(in_locale.sum()))
        last[in_locale] = names.last.text[picked]
        last_slug[in_locale] = names.last.slug[picked]
    return first, first_slug, last, last_slug


def _draw_emails(
    rng: np.random.Generator, first: ObjectArray, last: ObjectArray, birth_years: IntArray
) -> ObjectArray:
    """Derive addresses from the name: first.last, flast, first_last, firstlast."""
    n = first.size
    initial = np.array([slug[:1] for slug in first], dtype=object)
    styles = (
        _concat(first, ".", last),
        _concat(initial, last),
        _concat(first, "_", last),
        _concat(first, last),
    )
    style = rng.choice(len(styles), size=n, p=[0.45, 0.25, 0.15, 0.15])
    local = np.choose(style, styles)

    # A third add a number, as people do when their name is taken: the birth year's two
    # digits or a small number.
    number = rng.random(n)
    two_digit_year = _zero_padded(2)[birth_years % 100]
    small = np.array([str(value) for value in rng.integers(1, 100, size=n)], dtype=object)
    local = np.where(number < 0.18, _concat(local, two_digit_year), local)
    local = np.where((number >= 0.18) & (number < 0.33), _concat(local, small), local)

    # Plus-addressing (first.last+news) is common, and trips naive email patterns.
    tag = np.array(_EMAIL_TAGS, dtype=object)[rng.integers(len(_EMAIL_TAGS), size=n)]
    local = np.where(rng.random(n) < 0.1, _concat(local, "+", tag), local)
    return _concat(local, "@", _draw_weighted(rng, _EMAIL_DOMAINS, n))


def _draw_phones(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw US numbers, written in the four formats people actually use."""
    area = _zero_padded(3)[np.array(_AREA_CODES)[rng.integers(len(_AREA_CODES), size=n)]]
    exchange = _zero_padded(3)[np.array(_EXCHANGES)[rng.integers(len(_EXCHANGES), size=n)]]
    line = _zero_padded(4)[rng.integers(10_000, size=n)]
    formats = (
        _concat("(", area, ") ", exchange, "-", line),
        _concat(area, "-", exchange, "-", line),
        _concat(area, ".", exchange, ".", line),
        _concat("+1 ", area, " ", exchange, " ", line),
    )
    choice = rng.choice(len(formats), size=n, p=_PHONE_FORMAT_SHARES)
    return np.asarray(np.choose(choice, formats), dtype=object)


def _draw_ssn_codes(rng: np.random.Generator, n: int, *, reserved: IntArray) -> IntArray:
    """Draw `n` distinct valid SSNs as 9-digit integers, none of them in `reserved`."""
    taken = np.concatenate([reserved.astype(np.int64), _SSN_BLOCKLIST])
    chosen = np.empty(0, dtype=np.int64)
    while chosen.size < n:
        need = n - chosen.size
        # A few spares cover the blocklist and collisions with `reserved`; the loop only
        # repeats in the astronomically rare case they do not.
        index = rng.choice(_SSN_SPACE, size=need + 64, replace=False).astype(np.int64)
        area = _SSN_AREAS[index // _SSN_PER_AREA]
        group = (index % _SSN_PER_AREA) // 9999 + 1
        serial = index % 9999 + 1
        codes = area * 1_000_000 + group * 10_000 + serial
        fresh = codes[~np.isin(codes, taken)][:need]
        chosen = np.concatenate([chosen, fresh])
        taken = np.concatenate([taken, fresh])
    return chosen


def _format_ssns(codes: IntArray) -> ObjectArray:
    """Write 9-digit SSN integers as "AAA-GG-SSSS"."""
    area = _zero_padded(3)[codes // 1_000_000]
    group = _zero_padded(2)[(codes // 10_000) % 100]
    serial = _zero_padded(4)[codes % 10_000]
    return _concat(area, "-", group, "-", serial)


def _draw_street_addresses(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw "1234 Maple Ave" style addresses."""
    # Log-uniform: one- to four-digit house numbers about equally often, where a uniform
    # draw would give four digits nine times in ten.
    number = np.exp(rng.uniform(0.0, np.log(10_000), size=n)).astype(np.int64).clip(1, 9999)
    numbers = np.array([str(value) for value in number], dtype=object)
    curated = np.array(_STREET_NAMES, dtype=object)[rng.integers(len(_STREET_NAMES), size=n)]
    us_last = _name_locales()[0][0].last
    surname = us_last.text[_draw_indices(rng, us_last, n)]
    street = np.where(rng.random(n) < _STREET_FROM_SURNAME_SHARE, surname, curated)
    return _concat(numbers, " ", street, " ", _draw_weighted(rng, _STREET_SUFFIXES, n))


def _draw_zip_codes(rng: np.random.Generator, n: int) -> ObjectArray:
    """Draw five-digit ZIPs, most around populous areas; leading zeros are kept."""
    populous = np.array(_ZIP_PREFIXES)[rng.integers(len(_ZIP_PREFIXES), size=n)]
    anywhere = rng.integers(10, 999, size=n)
    prefix = np.where(rng.random(n) < _ZIP_POPULOUS_SHARE, populous, anywhere)
    # Suffixes 01-99 (few delivery ZIPs end in 00) keep every code within 01001-99899.
    return _concat(_zero_padded(3)[prefix], _zero_padded(2)[rng.integers(1, 100, size=n)])


def _draw_birth_dates(rng: np.random.Generator, ages: IntArray) -> npt.NDArray[np.datetime64]:
    """Draw a birth date that makes each person exactly `age` at the reference date."""
    years_back = np.int64(REFERENCE_DATE.year - 1970) - ages
    # Born on the reference day `age` years back at the latest, and the day after the
    # reference day `age + 1` years back at the earliest.
    latest = _reference_day_in(years_back)
    earliest = _reference_day_in(years_back - 1) + np.timedelta64(1, "D")
    span = (latest - earliest).astype(np.int64) + 1
    offset = rng.integers(0, span)
    return np.asarray(earliest + offset.astype("timedelta64[D]"))


def _reference_day_in(years_since_1970: IntArray) -> npt.NDArray[np.datetime64]:
    """Return the reference month and day in each given year, as dates."""
    # Whole months, then days: adding a fixed day count from January 1 would land a day
    # early in leap years.
    months = years_since_1970.astype("datetime64[Y]").astype("datetime64[M]")
    days = (months + (REFERENCE_DATE.month - 1)).astype("datetime64[D]")
    return days + (REFERENCE_DATE.day - 1)


def _draw_notes(rng: np.random.Generator, fields: dict[str, ObjectArray]) -> ObjectArray:
    """Draw notes, half of them quoting the row's own name, phone or email."""
    n = next(iter(fields.values())).size
    # Exactly half rather than a coin flip per row, so that a small table has the stated
    # share too.
    quotes_pii = rng.permutation(n) < round(n * _NOTE_PII_SHARE)
    templates = _PII_NOTE_TEMPLATES + _PLAIN_NOTE_TEMPLATES
    choice = np.where(
        quotes_pii,
        rng.integers(len(_PII_NOTE_TEMPLATES), size=n),
        len(_PII_NOTE_TEMPLATES) + rng.integers(len(_PLAIN_NOTE_TEMPLATES), size=n),
    )
    notes = np.empty(n, dtype=object)
    for index, template in enumerate(templates):
        rows = np.flatnonzero(choice == index)
        if rows.size == 0:
            continue
        parts: list[ObjectArray | str] = []
        for literal, field, _, _ in string.Formatter().parse(template):
            parts.append(literal)
            if field:
                parts.append(fields[field][rows])
        notes[rows] = _concat(np.full(rows.size, "", dtype=object), *parts)
    return notes
