"""The full Adult demo table, anonymized and encoded exactly as the demo pipeline does.

Shared by the benchmarks: a fresh state home, the demo data, and `privgate.stages` up to
`training_data` (scan, anonymize, data gates), so every benchmark measures the same rows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def prepare(rows: int | None) -> tuple[Any, Any, Any, float]:
    """Return (config, anonymized and encoded TrainingData, tables, seconds it took)."""
    home = Path(tempfile.mkdtemp(prefix="privgate-bench-"))
    os.environ["PRIVGATE_HOME"] = str(home)
    from privgate.home import configure_state_environment

    configure_state_environment()
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")

    from privgate import stages
    from privgate.config import load_config, load_policy
    from privgate.data.demo_data import write_demo_data

    started = time.perf_counter()
    write_demo_data(home / "demo", rows=rows)
    config = load_config(ROOT / "configs" / "demo.yaml")
    tables = stages.ingest(config)
    stages.validate(tables, config)
    anonymized = stages.anonymize(tables, stages.scan(tables, config), config)
    stages.judge_data(stages.verify(anonymized, config, load_policy()), load_policy())
    data = stages.training_data(anonymized, tables, config)
    return config, data, tables, time.perf_counter() - started
