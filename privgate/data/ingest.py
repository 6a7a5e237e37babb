"""Read the raw input table and fingerprint it for lineage.

The raw table holds personal data, so nothing read here may surface in an error: pandas
and pyarrow quote offending rows and bytes in their messages, and those messages reach
logs and Prefect state. Every failure is re-raised as a `DataError` that names the file,
the kind of problem and, where the parser reports one, the line number.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from privgate.errors import DataError

_Format = Literal["csv", "csv.gz", "parquet"]
_SUFFIXES: dict[str, _Format] = {".csv.gz": "csv.gz", ".csv": "csv", ".parquet": "parquet"}
ACCEPTED_SUFFIXES: tuple[str, ...] = tuple(sorted(_SUFFIXES))

# pandas phrases positions as "... in line 7, saw 16" or "... starting at row 5"; only the
# number is kept, never the text around it.
_POSITION = re.compile(r"\b(line|row) (\d+)\b")


def read_table(
    path: Path, *, string_columns: Sequence[str] = (), require_string_columns: bool = True
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

    Returns:
        The table, with at least one row and unique column names.

    Raises:
        DataError: When the file is missing, a directory, empty, header-only, malformed,
            has duplicate column names or lacks a `string_columns` column. The message
            names the file and never quotes its content.
    """
    path = Path(path)
    fmt = _format_of(path)
    _check_is_readable_file(path)
    if fmt == "parquet":
        frame = _read_parquet(path)
    else:
        frame = _read_csv(path, compressed=fmt == "csv.gz", string_columns=string_columns)

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
    return frame


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


def _read_csv(path: Path, *, compressed: bool, string_columns: Sequence[str]) -> pd.DataFrame:
    compression = "gzip" if compressed else None
    try:
        # pandas renames a repeated header to `name.1`, which would hide the duplicate;
        # the raw header row is read on its own first to catch it.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, compression=compression)
        _reject_duplicate_names(
            path,
            header.iloc[0].tolist() if len(header) else [],
            hint=" (is the header row missing?)",
        )
        return pd.read_csv(path, dtype=dict.fromkeys(string_columns, str), compression=compression)
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no header row (empty after decompression)") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} is malformed CSV{_position(exc)}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text (binary or wrongly encoded file)") from None
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


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        # Checked on the footer schema: pandas' reader fails on duplicates with a message
        # that does not say which file or column.
        _reject_duplicate_names(path, pq.ParquetFile(path).schema_arrow.names)
        return pd.read_parquet(path)
    except DataError:
        raise
    except PermissionError:
        raise DataError(f"{path} cannot be read: permission denied") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise DataError(f"{path} is not a readable Parquet file ({type(exc).__name__})") from None


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
