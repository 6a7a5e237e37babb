"""One real stack for the server tests: PostgreSQL, Prefect and MLflow servers, a worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from privgate.demo_data import write_demo_data
from tests.server.stack import Stack, running_stack

# Every deployment the tests start runs on this much demo data (the e2e tests' size:
# enough rows for the audit's canary control to see a model trained without DP).
ROWS = 4000


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack", numbered=True)
    with running_stack(root, ["manual-training", "champion-reaudit", "nightly-training"]) as live:
        write_demo_data(live.home / "demo", rows=ROWS)
        yield live
