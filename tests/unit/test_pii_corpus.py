"""The labelled PII corpus: deterministic, structurally valid and labelled to the substring."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from tests.pii_corpus import (
    ENTITIES,
    ColumnTruth,
    LabelledTable,
    Planted,
    labelled_table,
    notes_only,
)

ROWS = 2_000
ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
STRUCTURED = (
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
)
EXTRA_DECOYS = ("plan_code", "batch_code", "visit_count")
SSN_PATTERN = re.compile(r"^(?P<area>\d{3})(?P<sep>[- ])(?P<group>\d{2})(?P=sep)(?P<serial>\d{4})$")
SSN_LIKE = re.compile(r"\b\d{3}[- ]?\d{2}[- ]?\d{4}\b")
PHONE_PATTERN = re.compile(
    r"^(?:\(\d{3}\) 555-01\d{2}|\d{3}-555-01\d{2}|\d{3}\.555\.01\d{2}|\+1 \d{3} 555 01\d{2}"
    r"|\+44 20 7946 0\d{3}|\+44 161 496 0\d{3}|\+49 30 [2-9]\d{7}|\+33 1 99 00 \d{2} \d{2}"
    r"|\+91 [6-9]\d{4} \d{5})$"
)
EMAIL_PATTERN = re.compile(r"^[a-z0-9._+]+@(?:[a-z]+\.)*example\.(?:com|org|net)$")
CARD_PATTERN = re.compile(
    r"^(?:\d{4}(?P<s>[ -]?)\d{4}(?P=s)\d{4}(?P=s)\d{4}|3[47]\d{2}(?P<a>[ -]?)\d{6}(?P=a)\d{5})$"
)
IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24}


@pytest.fixture(scope="module")
def table() -> LabelledTable:
    return labelled_table(ROWS, seed=11)


@pytest.fixture(scope="module")
def notes() -> LabelledTable:
    return notes_only(ROWS, seed=5)


def _canonical(value: str) -> str:
    return unicodedata.normalize("NFKC", value).translate(ZERO_WIDTH)


def _luhn_valid(number: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


def _iban_valid(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def _of(table: LabelledTable, entity: str) -> list[Planted]:
    return [p for p in table.planted if p.entity == entity]


# --------------------------------------------------------------------------- determinism


def test_when_the_seed_repeats_then_frame_and_planted_values_repeat() -> None:
    first = labelled_table(500, seed=3)
    second = labelled_table(500, seed=3)

    pd.testing.assert_frame_equal(first.frame, second.frame)
    assert first.planted == second.planted
    assert first.columns == second.columns


def test_when_the_seed_changes_then_every_column_differs() -> None:
    first = labelled_table(500, seed=3)
    second = labelled_table(500, seed=4)

    for column in first.frame.columns:
        assert not first.frame[column].equals(second.frame[column]), column
    assert first.planted != second.planted


def test_when_notes_or_decoys_are_switched_off_then_the_other_columns_stay_the_same(
    table: LabelledTable,
) -> None:
    bare = labelled_table(ROWS, seed=11, notes=False, decoys=False)

    assert tuple(bare.frame.columns) == STRUCTURED
    assert bare.planted == ()
    pd.testing.assert_frame_equal(bare.frame, table.frame[list(STRUCTURED)])


def test_when_notes_only_is_drawn_with_the_table_seed_then_it_equals_the_note_column(
    table: LabelledTable,
) -> None:
    alone = notes_only(ROWS, seed=11)

    pd.testing.assert_series_equal(alone.frame["note"], table.frame["note"])
    assert alone.planted == table.planted


# --------------------------------------------------------------------------- structure


def test_when_the_table_is_built_then_truth_covers_every_column_exactly_once(
    table: LabelledTable,
) -> None:
    names = [truth.name for truth in table.columns]

    assert names == list(table.frame.columns)
    assert tuple(names) == (*STRUCTURED, *EXTRA_DECOYS, "note")
    assert table.truth("ssn") == ColumnTruth("ssn", "direct_identifier", "US_SSN")
    assert table.truth("note") == ColumnTruth("note", "free_text", None)
    kinds = Counter(truth.kind for truth in table.columns)
    assert kinds == {"direct_identifier": 6, "quasi_identifier": 3, "clean": 5, "free_text": 1}
    assert {t.entity for t in table.columns if t.kind == "direct_identifier"} <= set(ENTITIES)
    assert all(t.entity is None for t in table.columns if t.kind != "direct_identifier")


def test_when_an_unknown_column_is_asked_for_then_truth_raises() -> None:
    bare = labelled_table(10, notes=False)

    with pytest.raises(KeyError, match="no column 'nope'"):
        bare.truth("nope")


def test_when_the_table_is_built_then_every_cell_is_a_non_missing_str(
    table: LabelledTable,
) -> None:
    frame = table.frame

    assert not frame.isna().any().any()
    assert list(frame.index) == list(range(ROWS))
    for column in frame.columns:
        assert pd.api.types.is_string_dtype(frame[column]), column
        assert all(type(value) is str and value for value in frame[column]), column


def test_when_entities_are_listed_then_there_are_the_twelve_named_types() -> None:
    assert len(ENTITIES) == len(set(ENTITIES)) == 12
    assert {"PERSON", "EMAIL_ADDRESS", "US_SSN", "IBAN_CODE", "UNIQUE_ID"} <= set(ENTITIES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, "rows must be between"),
        ({"rows": 10, "seed": -1}, "seed must be"),
        ({"rows": 10, "disguise_fraction": 1.5}, "disguise_fraction must be"),
    ],
)
def test_when_an_argument_is_out_of_range_then_the_table_is_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        labelled_table(**kwargs)


def test_when_pii_fraction_is_out_of_range_then_notes_are_refused() -> None:
    with pytest.raises(ValueError, match="pii_fraction must be"):
        notes_only(10, pii_fraction=-0.1)


# --------------------------------------------------------------------------- identifier columns


def test_when_cards_are_checked_then_every_number_is_luhn_valid(table: LabelledTable) -> None:
    cards = list(table.frame["card"]) + [p.canonical for p in _of(table, "CREDIT_CARD")]

    for card in cards:
        assert CARD_PATTERN.match(card), card
        digits = re.sub(r"[ -]", "", card)
        assert len(digits) == (15 if digits[0] == "3" else 16)
        assert digits[0] in "2345"
        assert _luhn_valid(digits), card


def test_when_ssns_are_checked_then_every_one_has_a_valid_structure(
    table: LabelledTable,
) -> None:
    ssns = list(table.frame["ssn"]) + [p.canonical for p in _of(table, "US_SSN")]

    for ssn in ssns:
        match = SSN_PATTERN.match(ssn)
        assert match, ssn
        area = int(match["area"])
        assert 0 < area < 900, ssn
        assert area != 666, ssn
        assert match["group"] != "00", ssn
        assert match["serial"] != "0000", ssn
    assert {match[2] for match in map(SSN_PATTERN.match, ssns) if match} == {"-", " "}


def test_when_rows_are_drawn_then_every_patient_id_is_a_unique_mrn(table: LabelledTable) -> None:
    ids = table.frame["patient_id"]

    assert ids.is_unique
    assert ids.str.fullmatch(r"MRN-\d{8}").all()


def test_when_identifier_columns_are_drawn_then_they_use_the_documented_formats(
    table: LabelledTable,
) -> None:
    frame = table.frame

    assert all(PHONE_PATTERN.match(phone) for phone in frame["phone"])
    assert frame["phone"].str.startswith("+44").any()
    assert frame["phone"].str.startswith("(").any()
    assert all(EMAIL_PATTERN.match(email) for email in frame["email"])
    assert frame["email"].str.contains("+", regex=False).any()
    names = frame["full_name"]
    assert (names.str.count(" ") >= 1).all()
    assert names.str.fullmatch(r"\S+ [A-Z]\. \S+").any()
    assert (~names.map(str.isascii)).mean() > 0.2  # accents, ł, đ, Yoruba tone marks
    assert names.str.contains("Nguyễn|Müller|Łukasz|García|Sharma|Adeyemi").any()


def test_when_quasi_and_decoy_columns_are_drawn_then_they_keep_their_formats(
    table: LabelledTable,
) -> None:
    frame = table.frame

    ages = frame["age"].astype(int)
    assert ages.between(18, 90).all()
    assert frame["zip_code"].str.fullmatch(r"\d{5}").all()
    assert frame["zip_code"].str.startswith("0").any()
    dob = frame["date_of_birth"]
    iso = dob.str.fullmatch(r"(19[3-9]\d|200[0-6])-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
    us = dob.str.fullmatch(r"(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/(19[3-9]\d|200[0-6])")
    assert (iso ^ us).all()
    assert iso.any()
    assert us.any()
    assert pd.to_datetime(dob[iso], format="%Y-%m-%d").notna().all()
    assert pd.to_datetime(dob[us], format="%m/%d/%Y").notna().all()
    assert frame["amount"].str.fullmatch(r"[1-9]\d{0,3}\.\d{2}").all()
    assert frame["diagnosis_code"].str.fullmatch(r"[A-Z]\d{2}(\.[0-9A-Z]{1,4})?").all()
    assert frame["plan_code"].str.fullmatch(r"PLN-\d{4}-[A-Z]").all()
    assert frame["batch_code"].str.fullmatch(r"BX-20(19|2[0-5])-\d{4}").all()
    assert frame["visit_count"].astype(int).between(0, 20).all()


# --------------------------------------------------------------------------- planted values


def test_when_two_thousand_notes_are_drawn_then_all_twelve_entities_are_planted(
    notes: LabelledTable,
) -> None:
    assert {p.entity for p in notes.planted} == set(ENTITIES)
    assert {p.entity for p in notes.planted if p.disguised} == set(ENTITIES)


def test_when_a_value_is_planted_then_it_is_the_exact_substring_of_its_cell(
    notes: LabelledTable, table: LabelledTable
) -> None:
    for corpus in (notes, table):
        for planted in corpus.planted:
            assert planted.column == "note"
            assert planted.value in corpus.frame.loc[planted.row, planted.column], planted


def test_when_a_planted_value_is_normalized_then_it_gives_its_canonical_form(
    notes: LabelledTable,
) -> None:
    for planted in notes.planted:
        assert _canonical(planted.value) == planted.canonical, planted
        assert _canonical(planted.canonical) == planted.canonical, planted
        if planted.disguised:
            assert planted.value != planted.canonical, planted
        else:
            assert planted.value == planted.canonical, planted


def test_when_values_are_disguised_then_every_disguise_kind_occurs(notes: LabelledTable) -> None:
    disguised = [p.value for p in notes.planted if p.disguised]

    assert any(set(value) & set("\u200b\u200c\u200d\u2060\ufeff") for value in disguised)
    assert any(re.search("[\uff10-\uff19]", value) for value in disguised)
    assert any("\uff20" in value for value in disguised)
    assert 0.05 < len(disguised) / len(notes.planted) < 0.15


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_when_disguise_fraction_is_an_extreme_then_none_or_all_are_disguised(
    fraction: float,
) -> None:
    corpus = notes_only(300, seed=2, disguise_fraction=fraction)

    assert {p.disguised for p in corpus.planted} == {bool(fraction)}


def test_when_planted_ibans_are_checked_then_every_one_passes_mod_97(notes: LabelledTable) -> None:
    ibans = [p.canonical for p in _of(notes, "IBAN_CODE")]

    assert {iban[:2] for iban in ibans} == set(IBAN_LENGTHS)
    assert any(" " in iban for iban in ibans)
    assert any(" " not in iban for iban in ibans)
    for iban in ibans:
        compact = iban.replace(" ", "")
        assert len(compact) == IBAN_LENGTHS[compact[:2]], iban
        assert _iban_valid(compact), iban
        if " " in iban:
            assert all(len(group) == 4 for group in iban.split(" ")[:-1]), iban


def test_when_network_values_are_planted_then_they_sit_in_reserved_ranges(
    notes: LabelledTable,
) -> None:
    ips = [p.canonical for p in _of(notes, "IP_ADDRESS")]
    urls = [p.canonical for p in _of(notes, "URL")]
    emails = [p.canonical for p in _of(notes, "EMAIL_ADDRESS")]

    assert any(":" in ip for ip in ips)
    assert any("." in ip for ip in ips)
    assert all(re.match(r"(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+$|2001:db8:", ip) for ip in ips)
    assert all(re.match(r"https?://([a-z]+\.)*example\.(com|org|net)/", url) for url in urls)
    assert all(EMAIL_PATTERN.match(email) for email in emails)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.8])
def test_when_pii_fraction_is_set_then_that_share_of_notes_holds_planted_values(
    fraction: float,
) -> None:
    corpus = notes_only(1_000, seed=9, pii_fraction=fraction)

    rows_with_pii = {p.row for p in corpus.planted}
    assert len(rows_with_pii) == pytest.approx(fraction * 1_000, abs=1)
    entities_per_note: dict[int, list[str]] = {}
    for planted in corpus.planted:
        entities_per_note.setdefault(planted.row, []).append(planted.entity)
    assert {len(entities) for entities in entities_per_note.values()} == {1, 2}
    assert all(len(set(entities)) == len(entities) for entities in entities_per_note.values())


def test_when_a_note_has_no_planted_value_then_it_holds_no_email_or_ssn_pattern(
    notes: LabelledTable,
) -> None:
    rows_with_pii = {p.row for p in notes.planted}
    clean = [text for row, text in notes.frame["note"].items() if row not in rows_with_pii]

    assert len(clean) == ROWS // 2
    for text in clean:
        assert "@" not in text, text
        assert "\uff20" not in text, text
        assert not SSN_LIKE.search(text), text
        assert not re.search(r"https?://|\b\d{5}\b|[\u200b-\u200d\u2060\ufeff]", text), text


def test_when_notes_are_drawn_then_they_run_about_twenty_words(notes: LabelledTable) -> None:
    words = notes.frame["note"].str.split().str.len()

    assert 15 <= words.mean() <= 25
    assert words.min() >= 10
