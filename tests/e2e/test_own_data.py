"""End to end: a table the repository does not ship, from `privgate init` to a signed model.

A newcomer's path: `init` proposes the config, policy and suite from a scan; the person
changes only the lines `init` marked (here: accepting each proposal and deleting the
mark); `check` finds nothing left to fix; `run` promotes a signed model through every
gate. Other columns, other names and another target than the demo (`tests/onboarding_table.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.cli_runner import run_cli
from tests.onboarding_table import clinic_table

pytestmark = pytest.mark.e2e

ROWS = 6000


def _accept_marked_lines(path: Path) -> int:
    """Delete every review mark (accept the proposal); return how many lines changed."""
    before = path.read_text(encoding="utf-8").splitlines()
    after = [
        re.sub(r"\s*# REVIEW:.*$", "", line).replace("REVIEW: derived", "reviewed: derived")
        for line in before
    ]
    path.write_text("\n".join(after) + "\n", encoding="utf-8")
    return sum(a != b for a, b in zip(before, after, strict=True))


def test_when_a_newcomer_runs_init_on_their_own_table_then_a_signed_model_is_promoted(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    home = tmp_path_factory.mktemp("privgate-own-data")
    frame = clinic_table(ROWS)
    table = home / "clinic.csv"
    frame.to_csv(table, index=False)
    out = home / "project"

    init = run_cli(home, "init", str(table), "--target", "readmitted", "--out", str(out))

    assert init.code == 0, init.stderr[-3000:]
    marked = [line for line in init.stdout.splitlines() if re.match(r"  \S+:\d+: ", line)]
    assert "charged epsilon 1, delta" in init.stdout
    changed = sum(
        _accept_marked_lines(out / name) for name in ("config.yaml", "policy.yaml", "suite.json")
    )
    assert changed == len(marked) > 0  # only the marked lines were touched

    config, policy = str(out / "config.yaml"), str(out / "policy.yaml")
    check = run_cli(home, "check", "--config", config, "--policy", policy)
    assert check.code == 0, check.stdout + check.stderr[-2000:]
    assert "[warning] review" not in check.stdout
    assert "ledger: epsilon 1 of 10 spent" in check.stdout  # init's release is charged

    run = run_cli(home, "run", "--json", "--config", config, "--policy", policy)

    assert run.code == 0, run.stdout + run.stderr[-3000:]
    summary = run.json()
    assert summary["promoted"] is True
    assert summary["blocked_by"] == []
    verified = run_cli(home, "models", "verify", "--json")
    assert verified.code == 0, verified.stdout + verified.stderr[-2000:]
    # Nobody's name, email or phone reached the output of any step.
    output = init.stdout + init.stderr + check.stdout + check.stderr + run.stdout + run.stderr
    for column in ("patient_name", "email", "phone"):
        assert not [v for v in frame[column].head(200) if v in output], column
