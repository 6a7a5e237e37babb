"""Unit tests for the synthetic identifiers of the Adult demo tables."""

from __future__ import annotations

import gzip
import re
import shutil
import unicodedata
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faker.providers.person import de_DE, en_US, es_ES, fr_FR, it_IT

from privgate.data.demo_data import (
    IDENTIFIER_COLUMNS,
    REFERENCE_DATE,
    enrich_adult,
    write_demo_data,
)
from privgate.errors import DataError
from privgate.home import PROJECT_ROOT

ADULT_DIR = PROJECT_ROOT / "data" / "adult"
TEXT_DTYPES = {"zip_code": str, "phone": str, "ssn": str}
# The Faker locales the module draws names from; a new locale there belongs here too.
NAME_PROVIDERS = (en_US.Provider, es_ES.Provider, de_DE.Provider, fr_FR.Provider, it_IT.Provider)
PII_COLUMNS = ("full_name", "phone", "email")

PHONE_PATTERN = re.compile(
    r"^(?:\((?P<a1>\d{3})\) (?P<e1>\d{3})-\d{4}"
    r"|(?P<a2>\d{3})-(?P<e2>\d{3})-\d{4}"
    r"|(?P<a3>\d{3})\.(?P<e3>\d{3})\.\d{4}"
    r"|\+1 (?P<a4>\d{3}) (?P<e4>\d{3}) \d{4})$"
)


@pytest.fixture(scope="module")
def adult_head() -> pd.DataFrame:
    """Return the first 600 rows of the bundled Adult training table."""
    return pd.read_csv(ADULT_DIR / "adult.train.csv.gz", nrows=600)


@pytest.fixture(scope="module")
def enriched(adult_head: pd.DataFrame) -> pd.DataFrame:
    """Return the Adult head enriched with seed 7."""
    return enrich_adult(adult_head, seed=7)


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.casefold().replace("ß", "ss"))
    return re.sub(r"[^a-z0-9]", "", folded.encode("ascii", "ignore").decode("ascii"))


def _first_names(attribute: str) -> set[str]:
    return {name for provider in NAME_PROVIDERS for name in getattr(provider, attribute)}


def _age_at(birth: date, reference: date) -> int:
    before_birthday = (reference.month, reference.day) < (birth.month, birth.day)
    return reference.year - birth.year - int(before_birthday)


def _quoted_pii(frame: pd.DataFrame) -> pd.Series:
    """Return, per row, whether its note contains that row's name, phone or email."""
    return pd.Series(
        [any(row[column] in row["notes"] for column in PII_COLUMNS) for _, row in frame.iterrows()],
        index=frame.index,
    )


def _copy_source(source: Path, target: Path, names: tuple[str, ...]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / name, target / name)
    return target


# --------------------------------------------------------------------------- determinism


def test_when_seed_is_fixed_then_output_is_identical(adult_head: pd.DataFrame) -> None:
    # given a table and a seed
    seed = 11

    # when it is enriched twice
    first = enrich_adult(adult_head, seed=seed)
    second = enrich_adult(adult_head, seed=seed)

    # then both results are the same, value for value
    pd.testing.assert_frame_equal(first, second)


def test_when_seed_differs_then_every_identifier_column_differs(adult_head: pd.DataFrame) -> None:
    # given two seeds
    # when the same table is enriched with each
    first = enrich_adult(adult_head, seed=1)
    second = enrich_adult(adult_head, seed=2)

    # then no identifier column comes out the same
    for column in IDENTIFIER_COLUMNS:
        assert not first[column].equals(second[column]), column


# --------------------------------------------------------------------------- shape


def test_when_enriched_then_original_columns_are_kept_and_identifiers_are_text(
    adult_head: pd.DataFrame, enriched: pd.DataFrame
) -> None:
    # given the Adult head and its enrichment (fixtures)
    # when the columns are compared
    original = enriched[list(adult_head.columns)]

    # then the source columns are untouched, followed by the identifiers as str, no NaN
    pd.testing.assert_frame_equal(original, adult_head)
    assert tuple(enriched.columns[len(adult_head.columns) :]) == IDENTIFIER_COLUMNS
    for column in IDENTIFIER_COLUMNS:
        assert enriched[column].map(type).eq(str).all(), column


def test_when_frame_is_empty_then_result_is_empty_with_identifier_columns() -> None:
    # given an empty table with the needed columns
    frame = pd.DataFrame({"age": pd.Series([], dtype="int64"), "sex": pd.Series([], dtype=str)})

    # when it is enriched
    result = enrich_adult(frame, seed=7)

    # then it has no rows but every identifier column
    assert result.empty
    assert list(result.columns) == ["age", "sex", *IDENTIFIER_COLUMNS]


# --------------------------------------------------------------------------- consistency


def test_when_enriched_then_date_of_birth_gives_back_age_at_reference_date() -> None:
    # given every age from 0 to 100 many times over (leap-year births included)
    ages = np.tile(np.arange(101), 40)
    frame = pd.DataFrame({"age": ages, "sex": np.where(ages % 2 == 0, "Male", "Female")})

    # when birth dates are drawn
    births = enrich_adult(frame, seed=3)["date_of_birth"]

    # then each is ISO formatted and the age at the census date is exactly the row's age
    assert births.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    computed = [_age_at(date.fromisoformat(text), REFERENCE_DATE) for text in births]
    assert computed == ages.tolist()


def test_when_sex_is_given_then_first_name_comes_from_that_sex_list(
    enriched: pd.DataFrame,
) -> None:
    # given Faker's first names by sex, over the locales drawn from
    allowed = {
        "Male": _first_names("first_names_male"),
        "Female": _first_names("first_names_female"),
    }

    # when each full name is split into a known first name and the rest
    def first_name_matches(full_name: str, sex: str) -> bool:
        words = full_name.split(" ")
        return any(" ".join(words[:k]) in allowed[sex] for k in range(1, len(words)))

    matches = [first_name_matches(row.full_name, row.sex) for row in enriched.itertuples()]

    # then every first name belongs to the row's sex
    assert all(matches)


def test_when_email_is_drawn_then_it_is_derived_from_the_name(enriched: pd.DataFrame) -> None:
    # given the enriched rows
    # when each email's local part is reduced to its letters
    for full_name, email in zip(enriched["full_name"], enriched["email"], strict=True):
        local, _, domain = email.partition("@")
        letters = re.sub(r"[^a-z]", "", local.split("+")[0])

        # then it is lowercase ASCII, starts with the first initial and ends with the
        # last word of the surname
        assert re.fullmatch(r"[a-z0-9._+]+@[a-z0-9.-]+\.[a-z]+", email), email
        assert "." in domain
        assert letters.startswith(_ascii_slug(full_name)[0]), (full_name, email)
        assert letters.endswith(_ascii_slug(full_name.split(" ")[-1])), (full_name, email)


def test_when_email_styles_vary_then_several_styles_and_plus_addressing_appear(
    enriched: pd.DataFrame,
) -> None:
    # given the enriched emails
    locals_ = enriched["email"].str.split("@").str[0]

    # when the styles are counted
    # then dotted, underscored, numbered and plus-addressed addresses all occur
    assert locals_.str.contains(".", regex=False).any()
    assert locals_.str.contains("_", regex=False).any()
    assert locals_.str.contains(r"\d", regex=True).any()
    assert locals_.str.contains("+", regex=False).any()


def test_when_ssns_are_drawn_then_each_is_valid_and_unique() -> None:
    # given a larger table
    frame = pd.DataFrame({"age": np.full(5000, 40), "sex": "Female"})

    # when SSNs are drawn
    ssns = enrich_adult(frame, seed=5)["ssn"]

    # then each has the issued structure and none repeats
    parts = ssns.str.extract(r"^(\d{3})-(\d{2})-(\d{4})$")
    assert parts.notna().all().all()
    area, group, serial = (parts[i].astype(int) for i in range(3))
    assert ((area > 0) & (area != 666) & (area < 900)).all()
    assert (group > 0).all()
    assert (serial > 0).all()
    assert ssns.is_unique


def test_when_phones_are_drawn_then_they_use_us_formats_with_valid_codes(
    enriched: pd.DataFrame,
) -> None:
    # given the enriched phones
    # when each is parsed against the four formats
    matches = [PHONE_PATTERN.match(phone) for phone in enriched["phone"]]

    # then all parse, area code and exchange start with 2-9, and every format occurs
    assert all(matches)
    formats_seen = set()
    for match in matches:
        assert match is not None
        number = next(i for i in range(1, 5) if match.group(f"a{i}"))
        formats_seen.add(number)
        assert match.group(f"a{number}")[0] in "23456789"
        assert match.group(f"e{number}")[0] in "23456789"
    assert formats_seen == {1, 2, 3, 4}


def test_when_addresses_are_drawn_then_they_read_number_street_suffix(
    enriched: pd.DataFrame,
) -> None:
    # given the enriched addresses
    # when they are matched against "1234 Maple Ave"
    # then every one has a house number, a capitalized street name and a suffix
    assert (
        enriched["street_address"]
        .str.fullmatch(r"[1-9]\d{0,3} [A-Z][A-Za-z' -]* [A-Z][a-z]+")
        .all()
    )


# --------------------------------------------------------------------------- notes


def test_when_notes_are_drawn_then_about_half_quote_the_rows_own_pii(
    enriched: pd.DataFrame,
) -> None:
    # given the enriched rows
    # when each note is checked for that row's name, phone or email
    quoted = _quoted_pii(enriched)

    # then between 40% and 60% quote one, exactly as written in its column
    assert 0.4 <= quoted.mean() <= 0.6
    for column in PII_COLUMNS:
        assert any(row[column] in row["notes"] for _, row in enriched.iterrows()), column


def test_when_a_note_quotes_no_pii_then_it_holds_none_of_the_rows_identifiers(
    enriched: pd.DataFrame,
) -> None:
    # given the notes that quote neither name, phone nor email
    plain = enriched[~_quoted_pii(enriched)]
    others = [column for column in IDENTIFIER_COLUMNS if column != "notes"]

    # when they are searched for any of the row's identifiers
    leaks = [
        row.Index for row in plain.itertuples() if any(getattr(row, c) in row.notes for c in others)
    ]

    # then none is found, and (for a NER-based scan) they hold no digit and no
    # capitalized word but the first
    assert not leaks
    assert not plain["notes"].str.contains(r"\d").any()
    assert not plain["notes"].str.contains(r"\s[A-Z]").any()


def test_when_notes_are_drawn_then_they_are_short_free_text(enriched: pd.DataFrame) -> None:
    # given the enriched notes
    # when their words are counted
    words = enriched["notes"].str.split().str.len()

    # then each is a sentence of roughly 10 to 25 words
    assert words.between(10, 28).all()


# --------------------------------------------------------------------------- files


def test_when_demo_data_is_written_then_both_files_have_the_expected_rows(tmp_path: Path) -> None:
    # given an output folder that does not exist yet
    out_dir = tmp_path / "demo" / "nested"

    # when a quick demo set is written
    train_path, test_path = write_demo_data(out_dir, seed=7, rows=300)

    # then the train table has 300 rows, the test table 150, and they share no SSN
    assert (train_path, test_path) == (out_dir / "adult_train.csv", out_dir / "adult_test.csv")
    train = pd.read_csv(train_path, dtype=TEXT_DTYPES)
    test = pd.read_csv(test_path, dtype=TEXT_DTYPES)
    assert (len(train), len(test)) == (300, 150)
    assert not set(train["ssn"]) & set(test["ssn"])
    assert not list(out_dir.glob("*.partial"))


def test_when_written_and_read_as_text_then_table_round_trips_with_leading_zeros(
    tmp_path: Path, enriched: pd.DataFrame
) -> None:
    # given the first 600 train rows enriched with seed 7 (fixture)
    # when the same rows are written and read back with the text columns as str
    train_path, _ = write_demo_data(tmp_path, seed=7, rows=len(enriched))
    read_back = pd.read_csv(train_path, dtype=TEXT_DTYPES)

    # then the file holds exactly that table, ZIPs five digits with leading zeros intact
    pd.testing.assert_frame_equal(read_back, enriched)
    assert read_back["zip_code"].str.fullmatch(r"\d{5}").all()
    assert read_back["zip_code"].str.startswith("0").any()


def test_when_a_source_file_is_missing_then_data_error_names_it(tmp_path: Path) -> None:
    # given a source folder holding the train file only
    source = _copy_source(ADULT_DIR, tmp_path / "source", ("adult.train.csv.gz",))

    # when the demo data is written from it
    with pytest.raises(DataError, match=r"adult\.test\.csv\.gz"):
        write_demo_data(tmp_path / "out", source_dir=source, rows=10)

    # then nothing was written
    assert not (tmp_path / "out").exists()


def test_when_source_lacks_sex_column_then_data_error_names_column_not_values(
    tmp_path: Path,
) -> None:
    # given source files whose train table has no `sex` column
    source = _copy_source(ADULT_DIR, tmp_path / "source", ("adult.test.csv.gz",))
    with gzip.open(source / "adult.train.csv.gz", "wt") as handle:
        handle.write("age,income\n39,<=50K\n")

    # when the demo data is written from it
    with pytest.raises(DataError, match=r"adult\.train\.csv\.gz.*'sex'") as caught:
        write_demo_data(tmp_path / "out", source_dir=source)

    # then the message names the file and column, never a cell value
    assert "<=50K" not in str(caught.value)


def test_when_frame_lacks_age_then_enrich_raises_data_error() -> None:
    # given a table without `age`
    frame = pd.DataFrame({"sex": ["Male", "Female"]})

    # when it is enriched, then the error names the column
    with pytest.raises(DataError, match="'age'"):
        enrich_adult(frame, seed=7)


def test_when_age_is_not_whole_years_then_data_error_counts_rows_without_values() -> None:
    # given a table with one fractional and one missing age
    frame = pd.DataFrame({"age": [30.0, 41.5, None], "sex": ["Male", "Female", "Male"]})

    # when it is enriched
    with pytest.raises(DataError, match="2 of 3 rows") as caught:
        enrich_adult(frame, seed=7)

    # then the offending values are not in the message
    assert "41.5" not in str(caught.value)
