"""Run the real `privgate` CLI in a subprocess against one state home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Run:
    """One CLI invocation."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(
    home: Path, *args: str, timeout: float = 900, module: tuple[str, ...] = ("privgate.cli",)
) -> Run:
    """Run `python -m privgate.cli ARGS` with PRIVGATE_HOME=home and no outside servers.

    `module` replaces `privgate.cli` with another entry point and its first arguments
    (`("tests.broken_dp", "noise_off")` runs the CLI with a planted DP bug).
    """
    env = {**os.environ, "PRIVGATE_HOME": str(home)}
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, "-m", *module, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def leaks(home: Path, files: list[Path], needles: list[str]) -> list[str]:
    """Return `file: needle` for every planted needle found in the given files' bytes."""
    return [
        f"{path.relative_to(home)}: {needle}"
        for path in files
        for needle in needles
        if needle.encode() in path.read_bytes()
    ]
