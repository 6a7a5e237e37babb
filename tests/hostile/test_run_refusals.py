"""Hostile inputs through `privgate run`: the real flow (Prefect, GX, Presidio, MLflow).

Each file is refused before anything trains: nothing is charged to the ledger, no model
is registered, and no canary from the files reaches a file the runs wrote (Prefect's
and MLflow's databases included) or the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from privgate.data.demo_data import write_demo_data
from tests.e2e.cli_runner import Run, run_cli
from tests.hostile.cases import CASES, NEEDLES

pytestmark = pytest.mark.e2e

ROWS = 4000
REFUSED = {
    # case id: (exit code, what the run says)
    "headerless, first row PII": (1, "is the header row missing?"),
    "new category": (1, "expect_column_values_to_be_in_set(sex)"),
    "extra column named by a canary": (1, "expect_table_columns_to_match_set"),
    "one person repeated 50 times": (2, "max_rows_per_person=1 training rows"),
    "10 MB cell in a note": (1, "over data.limits.max_cell_chars=100,000"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    home = tmp_path_factory.mktemp("hostile-runs")
    train, test = write_demo_data(home / "demo", rows=ROWS)
    frame = pd.read_csv(train, dtype=str, keep_default_na=False)
    inputs, results = {Path(train), Path(test)}, {}
    for case in CASES:
        if case.id not in REFUSED:
            continue
        folder = home / "landing" / case.id.replace(" ", "-").replace(",", "")
        folder.mkdir(parents=True)
        path = case.build(frame, folder / "train.csv")
        inputs.add(path)
        results[case.id] = run_cli(home, "run", "--json", "--set", f"data.train_path={path}")
    results["check"] = run_cli(home, "check", "--json")
    results["list"] = run_cli(home, "models", "list", "--json")
    return {"home": home, "inputs": inputs, **results}


@pytest.mark.parametrize("case_id", sorted(REFUSED))
def test_when_a_hostile_file_lands_then_the_run_is_refused_before_training(
    runs: dict, case_id: str
) -> None:
    run: Run = runs[case_id]
    code, says = REFUSED[case_id]

    assert run.code == code, run.stderr[-3000:]
    assert says in run.stdout, run.stdout[-3000:]
    assert json.loads(run.stdout)["promoted"] is False


def test_when_every_hostile_run_is_refused_then_nothing_is_charged_or_registered(
    runs: dict,
) -> None:
    budget = next(f for f in runs["check"].json()["findings"] if f["check"] == "budget")

    assert budget["message"].startswith("ledger: epsilon 0 of 10 spent")
    assert runs["list"].json() == []


def test_when_hostile_runs_finish_then_no_canary_reaches_a_file_or_the_terminal(
    runs: dict,
) -> None:
    inputs = {p.resolve() for p in runs["inputs"]}
    written = [
        p for p in Path(runs["home"]).rglob("*") if p.is_file() and p.resolve() not in inputs
    ]
    assert any(p.name.startswith("prefect.db") for p in written)
    printed = "".join(r.stdout + r.stderr for r in runs.values() if isinstance(r, Run))

    leaks = [
        f"{path.relative_to(runs['home'])}: {needle}"
        for path in written
        for needle in NEEDLES
        if needle.encode() in path.read_bytes()
    ]

    assert leaks == []
    assert [needle for needle in NEEDLES if needle in printed] == []
