"""A 10 MB note, once the cell limit allows it: redacted whole, in bounded time.

The file that stalled `privgate scan` for more than 300 s: one note of `Name Surname `
repeated, here among five short notes so that k-anonymity lets the output be written.
The real CLI in a subprocess; the timeout is a stall guard, not a measurement
(`make bench-pii`, section E, measures it; this test took 22 s here).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from audits.residual_pii import fold
from tests.e2e.cli_runner import run_cli
from tests.hostile.cases import NAME

pytestmark = pytest.mark.e2e


def test_when_the_limit_allows_a_10_mb_note_then_it_is_scanned_and_redacted_whole(
    tmp_path: Path,
) -> None:
    notes = [(NAME + " ") * 950_000, *[f"Seen on day {i}, no changes." for i in range(5)]]
    table = tmp_path / "notes.csv"
    pd.DataFrame({"visit": range(6), "notes": notes}).to_csv(table, index=False)
    out = tmp_path / "out.csv"
    allow = ("--set", "data.limits.max_cell_chars=20000000")
    no_qis = ("--set", "anonymization.quasi_identifiers={}")

    scanned = run_cli(tmp_path, "scan", str(table), "--json", *allow, timeout=180)
    anonymized = run_cli(tmp_path, "anonymize", str(table), str(out), *allow, *no_qis, timeout=180)

    assert scanned.code == 0, scanned.stderr[-2000:]
    notes_found = {c["name"]: c for c in scanned.json()["columns"]}["notes"]
    assert notes_found["kind"] == "free_text"
    assert anonymized.code == 0, anonymized.stderr[-2000:]
    written = pd.read_csv(out)["notes"]
    assert written[0].startswith("<PERSON>")
    assert "zelbrandt" not in fold(out.read_text())
