"""Read the raw input table and fingerprint it for lineage.

The raw table holds personal data, so nothing read here may surface in an error: pandas
and pyarrow quote offending rows and bytes in their messages, and those messages reach
logs and Prefect state. Every failure is re-raised as a `DataError` that names the file,
the kind of problem and, where the parser reports one, the line number.

A landing zone anyone can drop files into must not stall a scheduled run either, so
every table is held to `InputLimits` (file bytes, decompressed bytes, rows, columns,
cell length, column-name length) before it is parsed or analyzed: the bytes from the
file's size, the columns from its header row, the rows by parsing at most one more than
allowed, the cells' lengths before any stage reads them.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from privgate.errors import DataError

_Format = Literal["csv", "csv.gz", "parquet"]
_SUFFIXES: dict[str, _Format] = {".csv.gz": "csv.gz", ".csv": "csv", ".parquet": "parquet"}
ACCEPTED_SUFFIXES: tuple[str, ...] = tuple(sorted(_SUFFIXES))

# pandas phrases positions as "... in line 7, saw 16" or "... starting at row 5"; only the
# number is kept, never the text around it.
_POSITION = re.compile(r"\b(line|row) (\d+)\b")
_GZIP_CHUNK = 1 << 20
_PARQUET_BATCH_ROWS = 4096
# Cells a spreadsheet would run as a formula, and the plain numbers among them.
_FORMULA_START = r"[=+\-@\t\r]"
_PLAIN_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# Unicode categories a column name may not hold: controls, formats (bidi overrides,
# zero-width), line and paragraph separators, unassigned and private-use code points.
_CONTROL = frozenset({"Cc", "Cf", "Zl", "Zp", "Cn", "Co", "Cs"})


@dataclass(frozen=True)
class InputLimits:
    """What an input table may hold; beyond it, the table is refused before analysis.

    The defaults are the config's (`data.limits`): generous for real tables (the 1M-row
    benchmark table is 0.2 GB; a long discharge summary is about 30,000 characters),
    small enough that nothing a file holds makes a run take hours.

    Attributes:
        max_file_bytes: File size, and for `.csv.gz` its decompressed size too.
        max_rows: Data rows.
        max_columns: Columns.
        max_cell_chars: Characters in one text cell.
        max_column_name_chars: Characters in one column name.
        key: Config key named in the messages.
    """

    max_file_bytes: int = 2 * 1024**3
    max_rows: int = 20_000_000
    max_columns: int = 1_000
    max_cell_chars: int = 100_000
    max_column_name_chars: int = 128
    key: str = "data.limits"


def read_table(
    path: Path,
    *,
    string_columns: Sequence[str] = (),
    require_string_columns: bool = True,
    limits: InputLimits | None = None,
    encoding: str = "utf-8",
    known_columns: Collection[str] = (),
) -> pd.DataFrame:
    """Read a raw table from CSV, gzipped CSV or Parquet, chosen by the file suffix.

    CSV keeps pandas' defaults, under which Adult's `?` stays a category of its own
    rather than a missing value. `string_columns` are read as text so that ZIP codes
    and phone numbers keep their leading zeros. Parquet keeps its stored types and
    `string_columns` are cast to text afterwards; a ZIP code stored as a number has
    lost its zeros before it gets here.

    Args:
        path: The table file (`.csv`, `.csv.gz` or `.parquet`).
        string_columns: Columns to read as text even when they look numeric.
        require_string_columns: Whether a `string_columns` column missing from the table
            is an error (the pipeline's tables) or is skipped (`privgate scan` of any file).
        limits: What the table may hold (`InputLimits()` when None).
        encoding: The CSV files' text encoding (`data.encoding`).
        known_columns: Column names the config or the suite declares: messages may name
            these; any other column is named by its position alone.

    Returns:
        The table, with at least one row and unique column names.

    Raises:
        DataError: When the file is missing, a directory, empty, header-only, malformed,
            over a limit, has duplicate or unprintable column names or lacks a
            `string_columns` column. The message names the file, the column by position
            and the limit, and never quotes the file's content.
    """
    path = Path(path)
    limits = limits or InputLimits()
    fmt = _format_of(path)
    _check_is_readable_file(path)
    _check_bytes(path, path.stat().st_size, limits)
    if fmt == "parquet":
        frame = _read_parquet(path, limits)
    else:
        if fmt == "csv.gz":
            _check_decompressed_bytes(path, limits)
        frame = _read_csv(
            path,
            compressed=fmt == "csv.gz",
            string_columns=string_columns,
            limits=limits,
            encoding=encoding,
            known_columns=known_columns,
        )

    _reject_duplicate_names(path, [str(c) for c in frame.columns])
    missing = [c for c in string_columns if c not in frame.columns]
    if missing and require_string_columns:
        raise DataError(
            f"{path}: string column(s) {missing} from `data.string_columns` are not in the table"
        )
    if len(frame) == 0:
        raise DataError(f"{path} has column names but no data rows")
    if fmt == "parquet":
        for column in string_columns:
            if column in frame.columns:
                frame[column] = frame[column].astype("str")
    check_cells(frame, limits, where=str(path), known_columns=known_columns)
    return frame


def check_cells(
    frame: pd.DataFrame,
    limits: InputLimits,
    *,
    where: str,
    known_columns: Collection[str] = (),
) -> None:
    """Refuse a table whose text cells exceed `limits.max_cell_chars`.

    Raises:
        DataError: naming `where`, the column (by position, and by name only when it is
            one of `known_columns`), the longest cell's row and length, and the limit.
    """
    for position, column in enumerate(frame.columns, start=1):
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = values.astype(object)
        if pd.api.types.is_string_dtype(values) and values.dtype != object:
            lengths = values.str.len()
        elif values.dtype == object:  # text, or Parquet's bytes and lists
            lengths = values.astype("str").str.len().where(values.notna())
        else:  # numbers, booleans, timestamps: no text to bound
            continue
        longest = lengths.max(skipna=True)
        if pd.notna(longest) and int(longest) > limits.max_cell_chars:
            row = int(lengths.to_numpy(dtype=float, na_value=0).argmax()) + 1
            raise DataError(
                f"{where}: {column_label(column, position, known_columns)} has a cell of "
                f"{int(longest):,} "
                f"characters in data row {row}, over {limits.key}.max_cell_chars="
                f"{limits.max_cell_chars:,}; raise the limit in the config if such cells are "
                "expected (long texts are analyzed in bounded windows)"
            )


def column_label(name: object, position: int, known: Collection[str] = ()) -> str:
    """Return how a message names a column: its position, and its name when declared.

    A column name is the table's own text: in a file without a header row it is a
    person's data (`Mary Ng`, `078-05-1120`). Only a name the config or the suite
    declares (`known`) is shown, since a reviewer wrote it; any other column is named by
    its position alone.
    """
    text = str(name)
    if text in known:
        return f"column {position} ({text!r})"
    return f"column {position}"


def write_table(frame: pd.DataFrame, path: Path) -> int:
    """Write `frame` as CSV or Parquet (by suffix); return how many cells were escaped.

    A spreadsheet runs a CSV cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage
    return as a formula (CSV injection: `=HYPERLINK(...)` in a free-text note). Such text
    cells and column names get a leading `'` in CSV, as OWASP advises, which spreadsheets
    show and do not run; a cell that is a plain number (`-12.5`) is left alone. Parquet
    stores types, not formulas, and is written as it is.

    Raises:
        DataError: for another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame.to_parquet(path, index=False)
        return 0
    if suffix != ".csv":
        raise DataError(f"{path}: write .csv or .parquet")
    safe, escaped = escape_formulas(frame)
    safe.to_csv(path, index=False)
    return escaped


def escape_formulas(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Return a copy of `frame` whose formula-like text cells and names start with `'`."""
    out = frame.copy()
    escaped = 0
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = values.astype("str")
        risky = (
            values.notna() & text.str.match(_FORMULA_START) & ~text.str.fullmatch(_PLAIN_NUMBER)
        ).to_numpy(dtype=bool)
        if risky.any():
            out[column] = values.astype(object).where(~risky, "'" + text)
            escaped += int(risky.sum())
    names = [str(c) for c in out.columns]
    risky_names = [
        bool(re.match(_FORMULA_START, n)) and not re.fullmatch(_PLAIN_NUMBER, n) for n in names
    ]
    out.columns = ["'" + n if r else n for n, r in zip(names, risky_names, strict=True)]
    return out, escaped + sum(risky_names)


def sha256_file(path: Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes, read in chunks.

    Raises:
        DataError: When the file is missing, a directory or unreadable.
    """
    path = Path(path)
    _check_is_readable_file(path, allow_empty=True)
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError as exc:
        raise DataError(f"{path} could not be read ({type(exc).__name__})") from None


# --------------------------------------------------------------------------- helpers


def _format_of(path: Path) -> _Format:
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    raise DataError(f"{path}: unsupported table format; use one of {', '.join(ACCEPTED_SUFFIXES)}")


def _check_is_readable_file(path: Path, *, allow_empty: bool = False) -> None:
    if not path.exists():
        raise DataError(f"table file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected a table file")
    if not allow_empty and path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes)")


def _read_csv(
    path: Path,
    *,
    compressed: bool,
    string_columns: Sequence[str],
    limits: InputLimits,
    encoding: str,
    known_columns: Collection[str],
) -> pd.DataFrame:
    compression = "gzip" if compressed else None
    encoding = _sniff_utf16(path, compressed, encoding)
    try:
        # pandas renames a repeated header to `name.1`, which would hide the duplicate;
        # the raw header row is read on its own first to catch it.
        header = pd.read_csv(
            path, header=None, nrows=1, dtype=str, compression=compression, encoding=encoding
        )
        names = header.iloc[0].tolist() if len(header) else []
        _check_names(path, names, limits)
        _reject_duplicate_names(path, names, hint=" (is the header row missing?)")
        frame = pd.read_csv(
            path,
            dtype=dict.fromkeys(string_columns, str),
            compression=compression,
            encoding=encoding,
            encoding_errors="strict",
            nrows=limits.max_rows + 1,
        )
        _check_rows(path, len(frame), limits)
        _check_swallowed_rows(path, frame, known_columns)
        return frame
    except DataError:
        raise
    except LookupError:
        raise DataError(f"{path}: unknown text encoding {encoding!r} (data.encoding)") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no header row (empty after decompression)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is malformed CSV{_position(exc)}") from None
    except UnicodeError:
        shown = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        raise DataError(
            f"{path} is not {shown} text (binary, or another encoding: set data.encoding, "
            "e.g. latin-1 or utf-16)"
        ) from None
    except (EOFError, zlib.error):
        raise DataError(f"{path} is a truncated or corrupt gzip file") from None
    except PermissionError:
        raise DataError(f"{path} cannot be read: permission denied") from None
    except OSError as exc:
        # gzip.BadGzipFile quotes the file's first bytes, hence the name only.
        what = "not a valid gzip file" if compressed else f"unreadable ({type(exc).__name__})"
        raise DataError(f"{path} is {what}") from None
    except MemoryError:
        raise
    except Exception as exc:
        # Unforeseen parser failures may quote cells too: keep the exception type only.
        raise DataError(f"{path} could not be read as CSV ({type(exc).__name__})") from None


def _read_parquet(path: Path, limits: InputLimits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        # Checked on the footer: pandas' reader fails on duplicates with a message that
        # does not say which file or column, and the footer knows the size up front.
        footer = pq.ParquetFile(path)
        names = footer.schema_arrow.names
        _check_names(path, names, limits)
        _reject_duplicate_names(path, names)
        _check_rows(path, footer.metadata.num_rows, limits)
        _check_decoded_bytes(path, footer, limits)
        return pd.read_parquet(path)
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"{path} cannot be read: permission denied") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is not a readable Parquet file ({type(exc).__name__})") from None


def _sniff_utf16(path: Path, compressed: bool, encoding: str) -> str:
    """Return `utf-16` for a file that opens with a UTF-16 byte order mark, else `encoding`.

    Spreadsheet programs save "Unicode text" as UTF-16 with a mark, which says so
    unambiguously; a UTF-8 mark is read through by the UTF-8 codec itself.
    """
    if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return encoding
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as handle:
            start = handle.read(2)
    except (OSError, EOFError, zlib.error):
        return encoding  # the reader reports it
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else encoding


def _check_bytes(path: Path, size: int, limits: InputLimits, *, what: str = "") -> None:
    if size > limits.max_file_bytes:
        raise DataError(
            f"{path}{what} is over {limits.key}.max_file_bytes={limits.max_file_bytes:,} bytes"
            f"{'' if what else f' ({size:,} bytes)'}; raise the limit in the config if such "
            "files are expected"
        )


def _check_decompressed_bytes(path: Path, limits: InputLimits) -> None:
    """Refuse a gzip file that inflates past the byte limit, reading at most that much."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_GZIP_CHUNK):
                total += len(chunk)
                if total > limits.max_file_bytes:
                    _check_bytes(path, total, limits, what=" once decompressed")
    except DataError:
        raise
    except (EOFError, zlib.error):
        raise DataError(f"{path} is a truncated or corrupt gzip file") from None
    except OSError:
        raise DataError(f"{path} is not a valid gzip file") from None


def _check_swallowed_rows(path: Path, frame: pd.DataFrame, known: Collection[str]) -> None:
    """Refuse a CSV in which a quote opened and ran on over whole rows.

    A quote that is never closed does not always fail the parser: it pairs with the next
    quote in the file, and every line between becomes one cell. Such a cell holds a line
    break followed by a line with a row's worth of commas; a multi-line note rarely does.
    """
    commas = max(len(frame.columns) - 1, 1)
    if commas < 3:
        return
    # Linear: each repetition eats up to its own comma (`[^\n]*` twice would backtrack
    # exponentially in the number of commas under Python's `re`).
    row_like = rf"\n(?:[^,\n]*,){{{commas}}}"
    for position, column in enumerate(frame.columns, start=1):
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = values.astype("str")
        suspect = text.str.contains("\n", regex=False).to_numpy(dtype=bool)
        if not suspect.any():
            continue
        swallowed = text[suspect].str.contains(row_like, regex=True).to_numpy(dtype=bool)
        if swallowed.any():
            row = int(suspect.nonzero()[0][swallowed.nonzero()[0][0]]) + 1
            raise DataError(
                f"{path} is malformed CSV: {column_label(column, position, known)} of data row "
                f"{row} "
                "holds whole lines of rows (a quote opened there is never closed)"
            )


def _check_decoded_bytes(path: Path, footer: Any, limits: InputLimits) -> None:
    """Refuse a Parquet file that decodes past the byte limit, decoding a batch at a time.

    Compression and dictionaries make a kilobyte file decode to gigabytes (2,000 rows of
    one 20,000-character string: 1.2 kB on disk, 40 MB decoded), and the footer's sizes
    can say anything: the batches are measured, each dropped before the next.
    """
    decoded = 0
    for batch in footer.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
        decoded += batch.nbytes
        if decoded > limits.max_file_bytes:
            _check_bytes(path, decoded, limits, what=" once decoded")


def _check_rows(path: Path, rows: int, limits: InputLimits) -> None:
    if rows > limits.max_rows:
        raise DataError(
            f"{path} has more than {limits.key}.max_rows={limits.max_rows:,} data rows; "
            "raise the limit in the config, or use data.sample_rows for a quick run"
        )


def _check_names(path: Path, names: Sequence[object], limits: InputLimits) -> None:
    """Refuse too many columns, and column names too long or holding control characters."""
    if len(names) > limits.max_columns:
        raise DataError(
            f"{path} has {len(names):,} columns, over {limits.key}.max_columns="
            f"{limits.max_columns:,}"
        )
    for position, name in enumerate(names, start=1):
        if not isinstance(name, str):
            continue
        if len(name) > limits.max_column_name_chars:
            raise DataError(
                f"{path}: column {position}'s name has {len(name):,} characters, over "
                f"{limits.key}.max_column_name_chars={limits.max_column_name_chars}"
            )
        if any(unicodedata.category(ch) in _CONTROL for ch in name):
            raise DataError(
                f"{path}: column {position}'s name holds a control or formatting character "
                "(a line break, NUL, tab or bidirectional override); rename the column"
            )


def _reject_duplicate_names(path: Path, names: Sequence[object], *, hint: str = "") -> None:
    # Positions, not names: in a file without a header row the "names" are the first
    # record's cells.
    counts = Counter(name for name in names if isinstance(name, str))
    positions = [
        i for i, name in enumerate(names, start=1) if isinstance(name, str) and counts[name] > 1
    ]
    if positions:
        raise DataError(
            f"{path}: columns {positions} (1-based) share a name; each column needs a unique "
            f"name{hint}"
        )


def _position(exc: Exception) -> str:
    match = _POSITION.search(str(exc))
    return f" at {match.group(1)} {match.group(2)}" if match else ""
