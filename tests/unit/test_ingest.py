"""Unit tests for `privgate.data.ingest`: reading raw tables without leaking their content."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from privgate.data.ingest import read_table, sha256_file
from privgate.errors import DataError

CANARY = "CANARY-ZZ-9931"


def _write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_parquet(path, index=False)
    return path


def _raises_data_error(path: Path, **kwargs: object) -> DataError:
    with pytest.raises(DataError) as caught:
        read_table(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


def _assert_safe(exc: DataError, path: Path) -> None:
    message = str(exc)
    assert str(path) in message
    assert CANARY not in message
    # Raised `from None`: the parser's own message, which may quote the row, must not
    # travel along as a chained exception in the traceback.
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


# --------------------------------------------------------------------------- round trips


@pytest.fixture
def sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [39, 50, 38],
            "workclass": ["State-gov", "?", "Private"],
            "zip_code": ["02134", "00501", "94105"],
            "phone": ["0170-555-0100", "555-0101", "555-0102"],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_when_a_csv_is_read_then_it_round_trips_with_text_columns_kept(
    tmp_path: Path, sample: pd.DataFrame, suffix: str
) -> None:
    # given
    path = tmp_path / f"table{suffix}"
    sample.to_csv(path, index=False)

    # when
    frame = read_table(path, string_columns=["zip_code", "phone"])

    # then
    assert frame.columns.tolist() == sample.columns.tolist()
    assert frame["age"].tolist() == [39, 50, 38]
    assert frame["zip_code"].tolist() == ["02134", "00501", "94105"]
    assert frame["phone"].tolist() == ["0170-555-0100", "555-0101", "555-0102"]


def test_when_a_csv_has_leading_zeros_then_string_columns_keep_them(tmp_path: Path) -> None:
    # given
    path = tmp_path / "zips.csv"
    path.write_text("zip_code,count\n00501,1\n02134,2\n", encoding="utf-8")

    # when
    frame = read_table(path, string_columns=["zip_code"])

    # then
    assert frame["zip_code"].tolist() == ["00501", "02134"]
    assert frame["count"].tolist() == [1, 2]


def test_when_a_cell_is_a_question_mark_then_it_stays_a_category(tmp_path: Path) -> None:
    # given: Adult writes unknown workclass as `?`, which the suite treats as a category
    path = tmp_path / "adult.csv"
    path.write_text("age,workclass\n39,?\n50,Private\n", encoding="utf-8")

    # when
    frame = read_table(path)

    # then
    assert frame["workclass"].tolist() == ["?", "Private"]
    assert not frame["workclass"].isna().any()


def test_when_a_parquet_is_read_then_it_round_trips_and_string_columns_become_text(
    tmp_path: Path, sample: pd.DataFrame
) -> None:
    # given: a ZIP column written as integers by some upstream tool
    written = sample.assign(zip_code=[2134, 501, 94105])
    path = _write_parquet(tmp_path / "table.parquet", written)

    # when
    frame = read_table(path, string_columns=["zip_code", "phone"])

    # then
    assert frame["age"].tolist() == [39, 50, 38]
    assert frame["workclass"].tolist() == ["State-gov", "?", "Private"]
    assert frame["zip_code"].tolist() == ["2134", "501", "94105"]
    assert pd.api.types.is_string_dtype(frame["zip_code"])


def test_when_the_adult_training_file_is_read_then_all_rows_arrive() -> None:
    # given
    path = Path(__file__).resolve().parents[2] / "data" / "adult" / "adult.train.csv.gz"

    # when
    frame = read_table(path)

    # then
    assert frame.shape == (32_561, 15)
    assert (frame["workclass"] == "?").any()


# --------------------------------------------------------------------------- errors


def test_when_the_file_is_missing_then_a_data_error_names_it(tmp_path: Path) -> None:
    # given
    path = tmp_path / "absent.csv"

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "not found" in str(exc)


def test_when_the_path_is_a_directory_then_a_data_error_says_so(tmp_path: Path) -> None:
    # given
    path = tmp_path / "table.csv"
    path.mkdir()

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "directory" in str(exc)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_when_the_file_has_zero_bytes_then_a_data_error_says_it_is_empty(
    tmp_path: Path, suffix: str
) -> None:
    # given
    path = tmp_path / f"table{suffix}"
    path.write_bytes(b"")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "empty" in str(exc)


def test_when_the_suffix_is_not_supported_then_the_accepted_ones_are_listed(
    tmp_path: Path,
) -> None:
    # given
    path = tmp_path / "table.xlsx"
    path.write_text(CANARY, encoding="utf-8")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    for suffix in (".csv", ".csv.gz", ".parquet"):
        assert suffix in str(exc)


def test_when_a_csv_has_only_a_header_then_a_data_error_says_there_are_no_rows(
    tmp_path: Path,
) -> None:
    # given
    path = tmp_path / "header.csv"
    path.write_text("age,workclass\n", encoding="utf-8")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "no data rows" in str(exc)


def test_when_a_parquet_has_no_rows_then_a_data_error_says_so(tmp_path: Path) -> None:
    # given
    path = _write_parquet(
        tmp_path / "empty.parquet", pd.DataFrame({"age": pd.Series([], dtype="int64")})
    )

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "no data rows" in str(exc)


def test_when_a_csv_row_is_ragged_then_the_error_gives_its_line_but_not_its_content(
    tmp_path: Path,
) -> None:
    # given: line 3 has one field too many, and pandas would quote nothing but the count;
    # the canary guards against any future message that quotes the row
    path = tmp_path / "ragged.csv"
    path.write_text(f"name,age\nAda,36\n{CANARY},37,extra\n", encoding="utf-8")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "malformed CSV" in str(exc)
    assert "line 3" in str(exc)


def test_when_a_quote_is_never_closed_then_the_error_does_not_echo_the_cell(
    tmp_path: Path,
) -> None:
    # given
    path = tmp_path / "quote.csv"
    path.write_text(f'name,age\n"{CANARY},36\n', encoding="utf-8")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "malformed CSV" in str(exc)


def test_when_a_csv_is_binary_garbage_then_a_data_error_says_it_is_not_text(
    tmp_path: Path,
) -> None:
    # given: invalid UTF-8 around the canary; UnicodeDecodeError would quote the bytes
    path = tmp_path / "garbage.csv"
    path.write_bytes(b"name,age\n\xff\xfe" + CANARY.encode() + b"\x00\x9c,1\n")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "not UTF-8" in str(exc)


def test_when_a_csv_gz_is_not_gzip_then_a_data_error_names_the_file(tmp_path: Path) -> None:
    # given: BadGzipFile quotes the first bytes of the file
    path = tmp_path / "plain.csv.gz"
    path.write_text(f"{CANARY},age\n1,2\n", encoding="utf-8")

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "gzip" in str(exc)


def test_when_a_csv_gz_is_truncated_then_a_data_error_says_so(tmp_path: Path) -> None:
    # given
    blob = gzip.compress(f"name,age\n{CANARY},36\n".encode() * 2000)
    path = tmp_path / "truncated.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "gzip" in str(exc)


def test_when_a_parquet_is_corrupt_then_a_data_error_names_the_file(tmp_path: Path) -> None:
    # given
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1" + CANARY.encode() * 50)

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "Parquet" in str(exc)


def _write_csv_with_repeated_name(path: Path) -> None:
    path.write_text(f"{CANARY},age,{CANARY}\n1,2,3\n", encoding="utf-8")


def _write_parquet_with_repeated_name(path: Path) -> None:
    pq.write_table(pa.table([[1], [2]], names=[CANARY, CANARY]), path)


_DUPLICATE_WRITERS: dict[str, Callable[[Path], None]] = {
    ".csv": _write_csv_with_repeated_name,
    ".parquet": _write_parquet_with_repeated_name,
}


@pytest.mark.parametrize("suffix", sorted(_DUPLICATE_WRITERS))
def test_when_column_names_repeat_then_the_error_gives_positions_not_names(
    tmp_path: Path, suffix: str
) -> None:
    # given: in a file without a header row the "names" would be the first record's cells
    path = tmp_path / f"dupes{suffix}"
    _DUPLICATE_WRITERS[suffix](path)

    # when
    exc = _raises_data_error(path)

    # then
    _assert_safe(exc, path)
    assert "share a name" in str(exc)


def test_when_a_string_column_is_absent_then_the_error_names_the_column(
    tmp_path: Path,
) -> None:
    # given
    path = tmp_path / "table.csv"
    path.write_text(f"name,age\n{CANARY},36\n", encoding="utf-8")

    # when
    exc = _raises_data_error(path, string_columns=["zip_code"])

    # then
    _assert_safe(exc, path)
    assert "zip_code" in str(exc)
    assert "data.string_columns" in str(exc)


# --------------------------------------------------------------------------- hashing


def test_when_a_file_is_hashed_then_the_digest_matches_its_bytes(tmp_path: Path) -> None:
    # given: larger than any single read chunk
    blob = bytes(range(256)) * 40_000
    path = tmp_path / "big.csv"
    path.write_bytes(blob)

    # when
    digest = sha256_file(path)

    # then
    assert digest == hashlib.sha256(blob).hexdigest()


def test_when_a_hashed_file_is_missing_then_a_data_error_names_it(tmp_path: Path) -> None:
    # given
    path = tmp_path / "absent.parquet"

    # when
    with pytest.raises(DataError) as caught:
        sha256_file(path)

    # then
    assert str(path) in str(caught.value)
