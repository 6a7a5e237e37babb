"""The regroup moved the flat core into subpackages; the old names keep working.

Model versions logged before the move carry pyfunc code that imports
`privgate.features` and `privgate.training`, users import
`privgate.consumer.load_approved_model`, and cached task results are pickles naming the
old modules. Each old name must be the moved module itself, not a copy.
"""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys

import pytest

import privgate
import privgate.pii
import privgate.registry
from privgate.pii import _ENGINE_NAMES
from privgate.registry import _VERSIONS_NAMES


def _fresh(code: str) -> str:
    """Run code in a new interpreter (nothing imported yet); return its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize("old", sorted(privgate.MOVED))
def test_an_old_name_is_the_moved_module(old: str) -> None:
    moved = importlib.import_module(privgate.MOVED[old])
    assert importlib.import_module(old) is moved
    assert sys.modules[old] is moved
    # The module still says where it lives, whichever name imported it first.
    assert moved.__name__ == moved.__spec__.name == privgate.MOVED[old]


def test_when_the_old_name_is_imported_first_then_the_new_name_is_the_same_module() -> None:
    out = _fresh(
        "import privgate.kanon as old, privgate.pii.kanon as new, sys;"
        "print(old is new, old.__spec__.name, sys.modules['privgate.kanon'] is new)"
    )
    assert out == "True privgate.pii.kanon True"


def test_a_model_logged_before_the_move_imports_its_serving_code() -> None:
    # The import lines of the pre-regroup `privgate/serving.py`, which every model version
    # logged as code until then carries.
    out = _fresh(
        "from privgate.features import encode\n"
        "from privgate.training import build_network, predict_proba\n"
        "import privgate.data.features as f, privgate.dp.training as t\n"
        "print(encode is f.encode, build_network is t.build_network)"
    )
    assert out == "True True"


def test_the_consumer_api_is_importable_by_its_old_and_new_names() -> None:
    from privgate.consumer import load_approved_model as old

    from privgate.registry.consumer import load_approved_model as new

    assert old is new


def test_patching_through_the_old_name_patches_the_moved_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import privgate.ledger

    import privgate.dp.ledger

    monkeypatch.setattr(privgate.ledger, "PrivacyLedger", "patched")
    assert privgate.dp.ledger.PrivacyLedger == "patched"


def test_a_pickle_naming_an_old_module_loads() -> None:
    from privgate.pii.kanon import KAnonymityResult

    # Protocol 0 spells the global's module out: what a result cached before the move holds.
    assert pickle.loads(b"cprivgate.kanon\nKAnonymityResult\n.") is KAnonymityResult


@pytest.mark.parametrize(
    ("package", "names", "target"),
    [
        (privgate.pii, _ENGINE_NAMES, "privgate.pii.engine"),
        (privgate.registry, _VERSIONS_NAMES, "privgate.registry.versions"),
    ],
    ids=["pii", "registry"],
)
def test_a_former_module_package_forwards_its_old_names(
    package: object, names: frozenset[str], target: str
) -> None:
    module = importlib.import_module(target)
    for name in sorted(names):
        assert getattr(package, name) is getattr(module, name), name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        package.nothing_here  # noqa: B018


def test_old_style_from_imports_of_the_former_modules_work() -> None:
    from privgate.pii import PiiEngine, redact_texts
    from privgate.pii.engine import PiiEngine as EnginePiiEngine
    from privgate.registry import list_models
    from privgate.registry.versions import list_models as versions_list

    assert PiiEngine is EnginePiiEngine
    assert callable(redact_texts)
    assert list_models is versions_list


def test_the_forwarding_is_lazy() -> None:
    # k-anonymity and the feature encoding (which the served model imports) must not load
    # Presidio or spaCy; attestations must not load MLflow.
    out = _fresh(
        "import sys\n"
        # A from-import asks the package for the name before it imports the submodule.
        "from privgate.pii import kanon\n"
        "from privgate.registry import attestation\n"
        "import privgate.data.features\n"
        "heavy = ('privgate.pii.engine', 'presidio_analyzer', 'spacy', 'mlflow',"
        " 'privgate.registry.versions')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    assert out == "[]"
