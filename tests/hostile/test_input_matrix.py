"""Each hostile input gets its outcome, and no value from it reaches a message or log.

The real CLI in this process (`privgate.cli.main`): real pandas, GX, Presidio and the
pre-training checks, on the demo table with canaries planted. `check` is what a
scheduled run does before it trains (the flow runs the same ingest, validation and
checks); `scan` and `anonymize` read any file. Each row's time is in pytest's
`--durations` report and in the README table.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest

from audits.residual_pii import fold
from privgate.cli import main
from privgate.data.demo_data import write_demo_data
from tests.hostile.cases import CASES, FORMULA, NEEDLES, Case

ROWS = 4000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    home = tmp_path_factory.mktemp("hostile-home")
    train, _ = write_demo_data(home / "demo", rows=ROWS)
    return home, pd.read_csv(train, dtype=str, keep_default_na=False)


def _arguments(case: Case, path: Path, out: Path) -> list[str]:
    sets = [arg for override in case.overrides for arg in ("--set", override)]
    if case.command == "check":
        return ["check", "--json", "--set", f"data.train_path={path}", *sets]
    if case.command == "scan":
        return ["scan", str(path), "--json", *sets]
    return ["anonymize", str(path), str(out), *sets]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_when_the_input_is_hostile_then_the_answer_is_clear_and_nothing_leaks(
    case: Case,
    demo: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    home, frame = demo
    monkeypatch.setenv("PRIVGATE_HOME", str(home))
    path = case.build(frame, tmp_path / "train.csv")
    out = tmp_path / "anonymized.csv"
    caplog.set_level(logging.DEBUG)

    code = main(_arguments(case, path, out))

    captured = capfd.readouterr()
    said = captured.out + captured.err + caplog.text
    assert code == case.code, said[-3000:]
    assert case.says in said, said[-3000:]
    assert [needle for needle in NEEDLES if needle in said] == []
    if out.exists():
        written = fold(out.read_text())
        assert [needle for needle in NEEDLES if fold(needle) in written] == []


def test_when_formulas_are_written_then_each_cell_starts_with_a_quote(
    demo: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    home, frame = demo
    monkeypatch.setenv("PRIVGATE_HOME", str(home))
    case = next(c for c in CASES if c.id == "spreadsheet formulas in cells")
    path = case.build(frame, tmp_path / "train.csv")
    out = tmp_path / "anonymized.csv"

    assert main(_arguments(case, path, out)) == 0

    capfd.readouterr()
    column = pd.read_csv(out, dtype=str, keep_default_na=False)["workclass"]
    assert (column == "'" + FORMULA).sum() >= 1
    assert not column.str.startswith("=").any()
