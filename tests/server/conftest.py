"""One real stack for the server tests: PostgreSQL, Prefect and MLflow servers, a worker."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from privgate.data.demo_data import write_demo_data
from tests.server.stack import Stack, postgres_bin, running_stack

# Every deployment the tests start runs on this much demo data (the e2e tests' size:
# enough rows for the audit's canary control to see a model trained without DP).
ROWS = 4000


CHROMIUM = os.environ.get("PRIVGATE_CHROMIUM", "/usr/bin/chromium")


def require(what: str, found: bool) -> None:
    """Skip without `what` on a developer's machine; fail in CI, which installs it."""
    if found:
        return
    message = f"the server tests need {what}"
    if os.environ.get("PRIVGATE_REQUIRE_SERVER_TESTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium() -> str:
    require(f"Chromium at {CHROMIUM} (`apt-get install chromium`)", bool(shutil.which(CHROMIUM)))
    return CHROMIUM


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        postgres_bin()
    except RuntimeError as missing:
        require(str(missing), False)
    root = tmp_path_factory.mktemp("stack", numbered=True)
    with running_stack(
        root, ["manual-training", "champion-reaudit", "nightly-training", "approved-training"]
    ) as live:
        write_demo_data(live.home / "demo", rows=ROWS)
        yield live
