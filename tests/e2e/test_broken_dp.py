"""End to end: a DP-SGD that breaks its claim is blocked by `dp_consistency` in the pipeline.

The real CLI, flow and audit on a demo sample, with a breach planted in the production
training code (`tests/broken_dp.py`): the optimizer adds no noise, or the clipper sums
the first layer's gradients unclipped. The white-box audit's gradient canaries go
through the same clipper and optimizer, so its lower bound rises above the claim and
the model is never approved. Not here: half the noise, which no one-run audit with
these canaries can refute at the demo's claim (its idealized limit is below the claim:
`benchmarks/audit_power.py` prints both); `tests/unit/test_gradient_canaries.py`
checks that the audit reaches that limit.
"""

from __future__ import annotations

import pytest

from privgate.data.demo_data import write_demo_data
from tests.e2e.cli_runner import run_cli

pytestmark = pytest.mark.e2e

ROWS = 4000


@pytest.mark.parametrize("bug", ["noise_off", "unclipped_layer"])
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
