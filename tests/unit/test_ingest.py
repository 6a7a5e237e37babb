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

from privgate.data.ingest import InputLimits, column_label, read_table, sha256_file, write_table
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


# --------------------------------------------------------------------------- limits


def _limits(**kwargs: int) -> InputLimits:
    return InputLimits(**kwargs)  # type: ignore[arg-type]


def test_when_a_file_is_over_the_byte_limit_then_it_is_refused_before_parsing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + f"{CANARY},2\n" * 100)

    exc = _raises_data_error(path, limits=_limits(max_file_bytes=100))

    _assert_safe(exc, path)
    assert "data.limits.max_file_bytes=100 bytes" in str(exc)


def test_when_a_gzip_inflates_past_the_byte_limit_then_it_is_refused(tmp_path: Path) -> None:
    # 10 MB of one repeated row compresses to about 10 kB: a small file, a large table.
    path = tmp_path / "bomb.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" + f"{CANARY},1\n".encode() * 600_000))
    assert path.stat().st_size < 100_000

    exc = _raises_data_error(path, limits=_limits(max_file_bytes=1_000_000))

    _assert_safe(exc, path)
    assert "once decompressed is over data.limits.max_file_bytes=1,000,000" in str(exc)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_when_a_table_has_too_many_rows_or_columns_then_the_limit_is_named(
    tmp_path: Path, suffix: str
) -> None:
    frame = pd.DataFrame({f"c{i}": [CANARY] * 50 for i in range(12)})
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        _write_parquet(path, frame)

    rows = _raises_data_error(path, limits=_limits(max_rows=49))
    columns = _raises_data_error(path, limits=_limits(max_columns=11))

    _assert_safe(rows, path)
    _assert_safe(columns, path)
    assert "more than data.limits.max_rows=49 data rows" in str(rows)
    assert "12 columns, over data.limits.max_columns=11" in str(columns)
    assert len(read_table(path, limits=_limits(max_rows=50, max_columns=12))) == 50


def test_when_a_cell_is_over_the_length_limit_then_column_row_and_limit_are_named(
    tmp_path: Path,
) -> None:
    path = tmp_path / "notes.csv"
    pd.DataFrame({"id": [1, 2, 3], "notes": ["short", CANARY * 100, None]}).to_csv(
        path, index=False
    )

    exc = _raises_data_error(path, limits=_limits(max_cell_chars=1000), known_columns={"notes"})

    _assert_safe(exc, path)
    assert "column 2 ('notes') has a cell of 1,400 characters in data row 2" in str(exc)
    assert "data.limits.max_cell_chars=1,000" in str(exc)


def test_when_a_headerless_file_has_a_long_cell_then_its_columns_show_by_position_only(
    tmp_path: Path,
) -> None:
    # No header row: the "names" are a person's name, SSN and note.
    path = tmp_path / "headerless.csv"
    path.write_text(f"Mary {CANARY},078-05-1120,short note\nJo Bo,123-45-6789,{'x' * 50}\n")

    exc = _raises_data_error(path, limits=_limits(max_cell_chars=20), known_columns={"notes"})

    _assert_safe(exc, path)
    assert "column 3 has a cell of 50 characters" in str(exc)
    assert "078-05" not in str(exc)
    assert "short note" not in str(exc)
    assert column_label("notes", 3, {"notes"}) == "column 3 ('notes')"
    assert column_label("Mary Ng", 3) == "column 3"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a\nb", "name holds a control or formatting character"),
        ("a\x00b", "name holds a control or formatting character"),
        ("abc\u202edef", "name holds a control or formatting character"),
        ("x" * 300, "name has 300 characters, over data.limits.max_column_name_chars=128"),
    ],
    ids=["line break", "NUL", "bidi override", "300 characters"],
)
def test_when_a_column_name_is_hostile_then_it_is_refused_by_position(
    tmp_path: Path, name: str, expected: str
) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"ok": [1], name: [2]}).to_csv(path, index=False)

    exc = _raises_data_error(path)

    _assert_safe(exc, path)
    assert f"column 2's {expected}" in str(exc)
    assert name not in str(exc)


def test_when_a_csv_is_utf16_with_a_mark_then_it_is_read_and_latin1_needs_the_setting(
    tmp_path: Path,
) -> None:
    text = "name,city\nRenée,Zürich\n"
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes(text.encode("utf-16"))
    latin1 = tmp_path / "l1.csv"
    latin1.write_bytes(text.encode("latin-1"))

    assert read_table(utf16).iloc[0].tolist() == ["Renée", "Zürich"]
    assert read_table(latin1, encoding="latin-1").iloc[0].tolist() == ["Renée", "Zürich"]
    exc = _raises_data_error(latin1)
    _assert_safe(exc, latin1)
    assert "set data.encoding" in str(exc)
    unknown = _raises_data_error(latin1, encoding="klingon-8")
    assert "unknown text encoding 'klingon-8' (data.encoding)" in str(unknown)


def test_when_a_table_is_written_as_csv_then_formula_cells_cannot_run(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "note": ['=HYPERLINK("http://x")', "+1+1", "@SUM(A1)", "-12.5", "plain", None],
            "=cmd": [1, 2, 3, 4, 5, 6],
        }
    )
    path = tmp_path / "out.csv"

    escaped = write_table(frame, path)

    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert escaped == 4  # three cells and one column name
    assert back["note"].tolist() == [
        '\'=HYPERLINK("http://x")',
        "'+1+1",
        "'@SUM(A1)",
        "-12.5",
        "plain",
        "",
    ]
    assert list(back.columns) == ["note", "'=cmd"]
    assert write_table(frame, tmp_path / "out.parquet") == 0
    assert pd.read_parquet(tmp_path / "out.parquet")["note"][0].startswith("=")


def test_when_a_quote_swallows_whole_rows_then_the_row_is_named_not_quoted(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.csv"
    rows = [f"{i},a{i},b{i},c{i}" for i in range(10)]
    rows.insert(4, f'99,"{CANARY} opens a quote')
    path.write_text("id,a,b,c\n" + "\n".join(rows) + '\nthe next quote",q,r\n')

    exc = _raises_data_error(path)

    _assert_safe(exc, path)
    assert "column 2 of data row 5 holds whole lines of rows" in str(exc)


def test_when_a_note_spans_lines_then_it_is_not_mistaken_for_a_broken_quote(
    tmp_path: Path,
) -> None:
    path = tmp_path / "t.csv"
    note = "Seen today.\nFollow up in two weeks, with labs.\nCall if worse."
    pd.DataFrame({"id": [1, 2], "a": ["x", "y"], "b": [note, "ok"], "c": [1, 2]}).to_csv(
        path, index=False
    )

    assert read_table(path)["b"][0] == note


def test_when_a_parquet_holds_dates_categories_and_bytes_then_cells_are_bounded_by_type(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(
        {
            "seen": pd.to_datetime(["2024-01-02", "2024-03-04"]),
            "ward": pd.Categorical(["A", "B" * 50]),
            "blob": [b"x", b"y" * 50],
            "score": [1.5, None],
        }
    )
    path = _write_parquet(tmp_path / "t.parquet", frame)

    assert len(read_table(path, limits=InputLimits(max_cell_chars=60))) == 2
    exc = _raises_data_error(path, limits=InputLimits(max_cell_chars=40), known_columns={"ward"})
    assert "column 2 ('ward') has a cell of 50 characters in data row 2" in str(exc)


def test_when_a_small_parquet_decodes_past_the_byte_limit_then_it_is_refused(
    tmp_path: Path,
) -> None:
    # 2,000 copies of one 20,000-character string: about 1 kB on disk, 40 MB decoded.
    path = tmp_path / "bomb.parquet"
    pq.write_table(pa.table({"note": [CANARY * 2000] * 2000}), path, compression="zstd")
    assert path.stat().st_size < 10_000

    exc = _raises_data_error(path, limits=_limits(max_file_bytes=10_000_000))

    _assert_safe(exc, path)
    assert "once decoded is over data.limits.max_file_bytes=10,000,000" in str(exc)
