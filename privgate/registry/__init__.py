"""The registry: MLflow model versions, aliases and promotion (`versions`), signed
attestations (`attestation`), the checks every consumer runs before loading
(`consumer`), the served pyfunc model (`serving`) and its card (`model_card`).

Before the regroup, `privgate.registry` was the versions module. Its names are still
reached here, lazily, so importing `privgate.registry.attestation` loads no MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

# The public names of the flat `privgate.registry` module, as they were when it moved.
_VERSIONS_NAMES = frozenset(
    {
        "DEMOTED_REASON_TAG",
        "DEMOTED_TAG",
        "GATE_REPORT_PATH",
        "GATE_TAG_PREFIX",
        "PromotionLock",
        "RUN_KEY_TAG",
        "RUN_TAG",
        "Registration",
        "SIGNATURE_TAG",
        "STATUS_TAG",
        "artifact_url",
        "attestation_path",
        "champion_version",
        "configure_mlflow",
        "demote",
        "experiment_id",
        "list_models",
        "log_and_register",
        "log_run_file",
        "log_run_text",
        "show_model",
    }
)


def __getattr__(name: str) -> Any:
    if name in _VERSIONS_NAMES:
        return getattr(importlib.import_module("privgate.registry.versions"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
