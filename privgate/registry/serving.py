"""The MLflow pyfunc model of a privgate classifier, logged as code (models-from-code).

Logging the model as this file plus plain artifacts (weights as a tensor state dict,
the feature spec as JSON) means loading it unpickles nothing: weights load with
`torch.load(weights_only=True)`. Input is raw records with the feature columns; the
model applies the same generalization and encoding as training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

from privgate.data.features import encode
from privgate.dp.training import build_network, predict_proba


class PrivgateClassifier(PythonModel):
    """Score raw records: P(positive) and the 0/1 prediction."""

    def load_context(self, context: Any) -> None:
        """Load the feature spec and the weights (no unpickling)."""
        spec = json.loads(Path(context.artifacts["model_spec"]).read_text())
        self.feature_spec = spec["feature_spec"]
        self.network = build_network(
            model=spec["model"], input_width=spec["input_width"], hidden_units=spec["hidden_units"]
        )
        state = torch.load(context.artifacts["weights"], weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Return a frame with `probability` and `prediction` per input row."""
        x = encode(pd.DataFrame(model_input), self.feature_spec, generalized=False)
        probability = predict_proba(self.network, x)
        return pd.DataFrame(
            {
                "probability": probability.astype(float),
                "prediction": (probability >= 0.5).astype(int),
            }
        )


mlflow.models.set_model(PrivgateClassifier())
