"""End to end: a DP-SGD that breaks its claim is blocked by `dp_consistency` in the pipeline.

The real CLI, flow and audit on a demo sample, with a breach planted in the production
training code (`tests/broken_dp.py`): the optimizer adds no noise. The white-box audit's
gradient canaries go through the same clipper and optimizer, so its lower bound rises
above the claim and the model is never approved. Not here: a first layer left
unclipped is caught on the full demo table (`benchmarks/audit_power.py`) and in
`tests/unit/test_gradient_canaries.py`, but on this sample's 2,000-row audit population
the audit's ceiling is too close to the claim to catch it every time; half the noise is
beyond any one-run audit of the final weights at this claim.
"""

from __future__ import annotations

import pytest

from privgate.demo_data import write_demo_data
from tests.e2e.cli_runner import run_cli

pytestmark = pytest.mark.e2e

ROWS = 4000


@pytest.mark.parametrize("bug", ["noise_off"])
def test_when_dp_sgd_breaks_its_claim_then_dp_consistency_blocks_promotion(
    bug: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp(f"privgate-{bug}")
    write_demo_data(home / "demo", rows=ROWS)

    run = run_cli(home, "run", "--json", module=("tests.broken_dp", bug))

    assert run.code == 2, run.stderr[-3000:]
    summary = run.json()
    assert "dp_consistency" in summary["blocked_by"]
    assert summary["promoted"] is False
    listed = run_cli(home, "models", "list", "--json")
    assert "champion" not in listed.stdout
