"""The layout's rules, read off the source (no import runs).

- The core (`privgate/`, every subpackage) and the audits never import Prefect: they run
  and are tested without an orchestrator. Neither imports `tasks/` or `flows/`, except the
  CLI, which is where a flow is started.
- The concern subpackages (`privgate.data`, `.pii`, `.dp`, `.registry`, and those still to
  come) sit below the stages: they never import `stages`, `sweep`, `reaudit`, `summary`
  or the CLI.
- No first-party module imports another package's private (`_`) names: what one
  subpackage needs from another is public.
- The README's project tree lists every module of the core and the audits, where it is.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = sorted((ROOT / "privgate").rglob("*.py")) + sorted((ROOT / "audits").glob("*.py"))
FIRST_PARTY = ("privgate", "audits", "flows", "tasks")
# Capabilities built on the whole pipeline (federated training) use the stages, as the
# sweep does; the concern subpackages (data, pii, dp, registry) sit below them.
CAPABILITIES = {"federated"}
SUBPACKAGES = sorted(
    p.parent for p in (ROOT / "privgate").glob("*/__init__.py") if p.parent.name not in CAPABILITIES
)
ORCHESTRATION = {"stages", "sweep", "reaudit", "summary", "cli"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _imported_modules(path: Path) -> set[str]:
    """Every module an `import` or absolute `from ... import` names, in full."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from privgate import stages` imports the module `privgate.stages`.
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _package_of_module(dotted: str) -> str:
    """`privgate.pii.kanon` -> `privgate.pii`; `privgate.config` -> `privgate`; `audits.suite` ->
    `audits`."""
    parts = dotted.split(".")
    if parts[0] == "privgate" and len(parts) > 1 and (ROOT / "privgate" / parts[1]).is_dir():
        return f"privgate.{parts[1]}"
    return parts[0]


def _package_of_file(path: Path) -> str:
    return _package_of_module(".".join(path.relative_to(ROOT).with_suffix("").parts))


@pytest.mark.parametrize("path", CORE, ids=_rel)
def test_core_module_does_not_import_prefect_or_the_orchestration_layer(path: Path) -> None:
    roots = {name.split(".")[0] for name in _imported_modules(path)}
    assert "prefect" not in roots
    if _rel(path) != "privgate/cli.py":
        assert not roots & {"flows", "tasks"}, "only the CLI starts a flow"


@pytest.mark.parametrize("path", sorted((ROOT / "audits").glob("*.py")), ids=_rel)
def test_audits_do_not_import_the_stages_or_a_flow(path: Path) -> None:
    imported = _imported_modules(path)
    assert not {name for name in imported if name.split(".")[0] in {"flows", "tasks"}}
    assert not {f"privgate.{name}" for name in ORCHESTRATION} & imported


@pytest.mark.parametrize("package", SUBPACKAGES, ids=_rel)
def test_concern_subpackages_sit_below_the_stages(package: Path) -> None:
    upward = {f"privgate.{name}" for name in ORCHESTRATION}
    found = {
        f"{_rel(path)} imports {name}"
        for path in sorted(package.rglob("*.py"))
        for name in _imported_modules(path)
        if name in upward
    }
    assert not found


def test_no_module_imports_another_packages_private_names() -> None:
    found: list[str] = []
    for top in FIRST_PARTY:
        for path in sorted((ROOT / top).rglob("*.py")):
            mine = _package_of_file(path)
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                    continue
                if node.module.split(".")[0] not in FIRST_PARTY:
                    continue
                for alias in node.names:
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    theirs = _package_of_module(f"{node.module}.{alias.name}")
                    if private and theirs != mine and _package_of_module(node.module) != mine:
                        found.append(f"{_rel(path)}: from {node.module} import {alias.name}")
    assert not found


def _readme_tree() -> set[str]:
    """The file paths the README's project tree names (indentation gives the folder)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## Project tree", 1)[1].split("```", 2)[1]
    paths: set[str] = set()
    folders: list[tuple[int, str]] = []
    for line in block.splitlines():
        match = re.match(r"^( *)([^\s,]+(?:, [^\s,]+)*)", line)
        if not match or not line.strip():
            continue
        indent, entry = len(match.group(1)), match.group(2)
        while folders and folders[-1][0] >= indent:
            folders.pop()
        prefix = "/".join(name for _, name in folders)
        if entry.endswith("/"):
            folders.append((indent, entry.rstrip("/")))
            continue
        for name in entry.split(", "):
            if name.endswith(".py"):
                paths.add(f"{prefix}/{name}" if prefix else name)
    return paths


def test_readme_tree_is_the_tree_on_disk() -> None:
    on_disk = {_rel(path) for path in CORE if path.name != "__init__.py"}
    listed = {path for path in _readme_tree() if path.split("/")[0] in {"privgate", "audits"}}
    assert sorted(on_disk - listed) == [], "modules the README's tree does not show"
    assert sorted(listed - on_disk) == [], "modules the README's tree shows but are gone"


def test_the_rules_see_the_layout() -> None:
    # Guards the guards: a glob that finds nothing makes every test above pass vacuously.
    assert len(CORE) >= 30
    assert {p.name for p in SUBPACKAGES} >= {"data", "pii", "dp", "registry"}
    assert "privgate/pii/kanon.py" in _readme_tree()
    assert _package_of_module("privgate.pii.kanon") == "privgate.pii"
    assert _package_of_module("privgate.config") == "privgate"
