"""privgate: a training pipeline where privacy is a gate, not a promise.

The core is grouped by concern (see the README's project tree):

- `privgate.data`: reading, validating and encoding the table (ingest, validation,
  demo data, features);
- `privgate.pii`: finding and removing identifiers (the Presidio engine, privgate's
  recognizers and name lexicon, anonymization, k-anonymity);
- `privgate.dp`: differentially private training (DP-SGD, the book-keeping clipper, the
  noise step, the privacy ledger);
- `privgate.registry`: MLflow versions, signed attestations, the consumer's checks, the
  served model and its card;

with the configuration, errors, home, stages and CLI at the top, where a reader looks
first.

Until the regroup the modules were flat (`privgate.kanon`, `privgate.consumer`, ...).
Code written against those names keeps working: each old name is an alias of the moved
module, the same object, so `import privgate.consumer` and
`import privgate.registry.consumer` give one module, and patching one patches both.
This matters beyond convenience: a model version logged before the regroup carries its
pyfunc code, which imports `privgate.features` and `privgate.training`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

# Old flat name -> the module's home since the regroup. `privgate.pii` and
# `privgate.registry` are packages now; their old contents are forwarded by the packages
# themselves (`privgate/pii/__init__.py`, `privgate/registry/__init__.py`).
MOVED: dict[str, str] = {
    "privgate.ingest": "privgate.data.ingest",
    "privgate.validation": "privgate.data.validation",
    "privgate.demo_data": "privgate.data.demo_data",
    "privgate.features": "privgate.data.features",
    "privgate.recognizers": "privgate.pii.recognizers",
    "privgate.names": "privgate.pii.names",
    "privgate.anonymize": "privgate.pii.anonymize",
    "privgate.kanon": "privgate.pii.kanon",
    "privgate.training": "privgate.dp.training",
    "privgate.clipping": "privgate.dp.clipping",
    "privgate.dp_optimizer": "privgate.dp.optimizer",
    "privgate.ledger": "privgate.dp.ledger",
    "privgate.attestation": "privgate.registry.attestation",
    "privgate.consumer": "privgate.registry.consumer",
    "privgate.serving": "privgate.registry.serving",
    "privgate.model_card": "privgate.registry.model_card",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolve an old flat name to the moved module itself (not a copy, not a wrapper)."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        home = MOVED.get(fullname)
        if home is None:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(home))


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, home: str) -> None:
        self.home = home
        self._spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.home)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias' spec on the real module; give it back its
        # own, so `__spec__.name`, reloads and pickling still name where it lives.
        module.__spec__ = self._spec


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
