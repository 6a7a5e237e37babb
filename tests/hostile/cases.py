"""The hostile-input matrix: each row a file built from the demo table, and its outcome.

Every file carries canary values (a person's name, email, phone, SSN, a category nobody
declared): whatever privgate says about the file, none of them may appear in it. A case
says which command reads the file, what it must answer (exit code and a fragment of the
message), and which of its values are canaries. `README.md` ("What privgate survives")
lists the same rows.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

NAME, EMAIL, PHONE, SSN = (
    "Quorvath Zelbrandt",
    "quorvath.canary7731@example.net",
    "(415) 555-7731",
    "371-44-7731",
)
NOTE = f"Spoke with {NAME}; reach {EMAIL} or call {PHONE}, SSN {SSN}."
BAD_CATEGORY = "Zorblax-CANARY-9931"
FORMULA = '=HYPERLINK("http://evil.example/x","open")'
# Searched for in everything a command printed or logged.
NEEDLES = ("Quorvath", "Zelbrandt", "canary7731", "555-7731", "371-44-7731", "Zorblax", "CANARY")

Build = Callable[[pd.DataFrame, Path], Path]


@dataclass(frozen=True)
class Case:
    """One row of the matrix.

    Attributes:
        id: The row's name (the test id and the README row).
        build: Writes the hostile file from the clean demo table; returns its path.
        command: `check` (ingest, validation and every pre-training check), `scan` or
            `anonymize` (which writes an output file when the gates pass).
        code: The exit code expected (0 ok, 1 refused, 2 blocked by a gate).
        says: A fragment the message (or the JSON output) must hold.
        overrides: `--set` options for the command.
    """

    id: str
    build: Build
    command: str
    code: int
    says: str
    overrides: tuple[str, ...] = field(default=())


def planted(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the demo table with the canary person in row 10 and in the notes of 10-15."""
    frame = frame.copy()
    frame.loc[frame.index[10], ["full_name", "email", "phone", "ssn"]] = [NAME, EMAIL, PHONE, SSN]
    frame.loc[frame.index[10:16], "notes"] = NOTE
    return frame


def _csv(frame: pd.DataFrame, path: Path, **kwargs: object) -> Path:
    frame.to_csv(path, index=False, **kwargs)  # type: ignore[call-overload]
    return path


def _bytes(data: bytes) -> Build:
    def build(frame: pd.DataFrame, path: Path) -> Path:
        path.write_bytes(data)
        return path

    return build


def _text(
    transform: Callable[[str], str], *, encoding: str = "utf-8", prefix: bytes = b""
) -> Build:
    def build(frame: pd.DataFrame, path: Path) -> Path:
        path.write_bytes(prefix + transform(planted(frame).to_csv(index=False)).encode(encoding))
        return path

    return build


def _frame(transform: Callable[[pd.DataFrame], pd.DataFrame], suffix: str = ".csv") -> Build:
    def build(frame: pd.DataFrame, path: Path) -> Path:
        out = transform(planted(frame))
        path = path.with_suffix(suffix)
        if suffix == ".parquet":
            out.to_parquet(path, index=False)
            return path
        return _csv(out, path)

    return build


def _insert_line(text: str, line: str, at: int = 20) -> str:
    lines = text.splitlines(keepends=True)
    return "".join([*lines[:at], line, *lines[at:]])


def _headerless(text: str) -> str:
    lines = text.splitlines(keepends=True)
    return "".join(lines[11:])  # the first line is a canary row


def _set(
    column: str, value: object, rows: slice = slice(0, 3)
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def transform(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[rows], column] = value
        return frame

    return transform


def _one_person_fifty_times(frame: pd.DataFrame) -> pd.DataFrame:
    person = frame.iloc[[10]]
    return pd.concat([frame, *[person] * 49], ignore_index=True)


def _rename(mapping: dict[str, str]) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda frame: frame.rename(columns=mapping)


def _big_cell(frame: pd.DataFrame, path: Path) -> Path:
    path.write_text('notes\n"' + (NAME + " ") * 550_000 + '"\n')  # 10.5 MB in one cell
    return path


def _big_note(frame: pd.DataFrame) -> pd.DataFrame:
    return _set("notes", (NAME + " ") * 550_000, slice(5, 6))(frame)


def _gzip_bomb(frame: pd.DataFrame, path: Path) -> Path:
    path = path.with_suffix(".csv.gz")
    path.write_bytes(gzip.compress(planted(frame).head(50).to_csv(index=False).encode() * 2000))
    return path


def _wide(frame: pd.DataFrame, path: Path) -> Path:
    extra = pd.DataFrame(
        np.zeros((len(frame), 5000), dtype=np.int8), columns=[f"c{i}" for i in range(5000)]
    )
    return _csv(pd.concat([planted(frame), extra], axis=1).head(200), path)


CASES: tuple[Case, ...] = (
    Case("empty file", _bytes(b""), "check", 1, "is empty (0 bytes)"),
    Case(
        "header only",
        _text(lambda t: t.splitlines(keepends=True)[0]),
        "check",
        1,
        "has column names but no data rows",
    ),
    Case("too few rows for DP", _frame(lambda f: f.head(60)), "check", 1, "batch_size"),
    Case(
        "ragged row",
        _text(
            lambda t: _insert_line(
                t, f"{NAME},{EMAIL},1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23\n"
            )
        ),
        "check",
        1,
        "malformed CSV at line",
    ),
    Case(
        "unbalanced quote",
        _text(lambda t: _insert_line(t, f'39,"{NAME} never closed,{EMAIL}\n')),
        "check",
        1,
        "a quote opened there is never closed",
    ),
    Case(
        "NUL bytes in cells",
        _frame(
            _set(
                "notes",
                NOTE.replace("Quor", "Quor\x00").replace("canary", "can\x00ary"),
                slice(20, 40),
            )
        ),
        "anonymize",
        0,
        "wrote",
    ),
    Case(
        "UTF-8 byte order mark",
        _text(lambda t: t, prefix=b"\xef\xbb\xbf"),
        "check",
        0,
        '"ok": true',
    ),
    Case("UTF-16", _text(lambda t: t, encoding="utf-16"), "check", 0, '"ok": true'),
    Case(
        "Latin-1, not declared",
        _text(lambda t: t.replace("Private", "Privé"), encoding="latin-1"),
        "check",
        1,
        "not UTF-8 text",
    ),
    Case(
        "Latin-1, declared",
        _text(lambda t: t, encoding="latin-1"),
        "check",
        0,
        '"ok": true',
        ("data.encoding=latin-1",),
    ),
    Case(
        "CR-only line ends",
        _text(lambda t: t.replace("\r\n", "\n").replace("\n", "\r")),
        "check",
        0,
        '"ok": true',
    ),
    Case("headerless, first row PII", _text(_headerless), "check", 1, "is the header row missing?"),
    Case("headerless, scanned", _text(_headerless), "scan", 1, "is the header row missing?"),
    Case("renamed column", _frame(_rename({"sex": "gender"})), "check", 1, "sex"),
    Case("missing column", _frame(lambda f: f.drop(columns=["race"])), "check", 1, "race"),
    Case(
        "extra column named by a canary",
        _frame(lambda f: f.assign(**{EMAIL: 1})),
        "check",
        1,
        "expect_table_columns_to_match_set",
    ),
    Case(
        "reordered columns",
        _frame(lambda f: f[list(reversed(f.columns))]),
        "check",
        0,
        '"ok": true',
    ),
    Case("type change", _frame(_set("age", BAD_CATEGORY)), "check", 1, "age"),
    Case(
        "all-null column",
        _frame(_set("hours_per_week", None, slice(None))),
        "check",
        1,
        "hours_per_week",
    ),
    Case(
        "new category",
        _frame(_set("sex", BAD_CATEGORY)),
        "check",
        1,
        "expect_column_values_to_be_in_set(sex)",
    ),
    Case("NaN in a number", _frame(_set("age", float("nan"))), "check", 1, "age"),
    Case("inf in a number", _frame(_set("capital_gain", float("inf"))), "check", 1, "capital_gain"),
    Case("1e308 in a number", _frame(_set("capital_gain", 1e308)), "check", 1, "capital_gain"),
    Case("10 MB cell", _big_cell, "scan", 1, "over data.limits.max_cell_chars=100,000"),
    Case(
        "10 MB cell in a note",
        _frame(_big_note),
        "check",
        1,
        "column 23 ('notes') has a cell of 10,450,000 characters in data row 6",
    ),
    Case(
        "file over the byte limit",
        _frame(lambda f: f),
        "check",
        1,
        "over data.limits.max_file_bytes=100,000 bytes",
        ("data.limits.max_file_bytes=100000",),
    ),
    Case(
        "gzip bomb",
        _gzip_bomb,
        "check",
        1,
        "once decompressed is over data.limits.max_file_bytes",
        ("data.limits.max_file_bytes=1000000",),
    ),
    Case("5,000 columns", _wide, "check", 1, "over data.limits.max_columns=1,000"),
    Case(
        "column name with HTML",
        _frame(_rename({"notes": f"<script>alert('{NAME}')</script>"})),
        "check",
        1,
        "expect_table_columns_to_match_set",
    ),
    Case(
        "column name with ../", _frame(_rename({"notes": "../../etc/passwd"})), "check", 1, "notes"
    ),
    Case(
        "column name with a line break",
        _frame(_rename({"notes": f"notes\n{NAME}"})),
        "check",
        1,
        "name holds a control",
    ),
    Case(
        "column name of 300 characters",
        _frame(_rename({"notes": "n" * 300})),
        "check",
        1,
        "name has 300 characters",
    ),
    Case(
        "duplicate column names",
        _text(lambda t: t.replace("full_name,", "email,", 1)),
        "check",
        1,
        "share a name",
    ),
    Case(
        "column name with format strings",
        _frame(_rename({"notes": "{0.__class__}%s%n{notes}"})),
        "check",
        1,
        "expect_table_columns_to_match_set",
    ),
    Case(
        "spreadsheet formulas in cells",
        _frame(_set("workclass", FORMULA)),
        "anonymize",
        0,
        "formula-like cells escaped",
    ),
    Case(
        "one person repeated 50 times",
        _frame(_one_person_fifty_times),
        "check",
        1,
        "max_rows_per_person=1",
    ),
)
