"""The import rule, enforced on the source: data moves forward only (domain <- application <- adapters <-
bootstrap <- CLI; see docs/architecture.md)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "worker"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}

# package -> allowed import roots besides the standard library
ALLOWED = {
    "domain": {"worker.domain"},
    "application": {"worker.domain", "worker.application", "pydantic"},
}
FORBIDDEN_FOR_ADAPTERS = ("worker.entrypoints", "worker.bootstrap", "worker.roles")
FORBIDDEN_FOR_ROLES = ("worker.entrypoints", "worker.bootstrap")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _allowed(name: str, allowed: set[str]) -> bool:
    root = name.split(".")[0]
    return root in STDLIB or any(name == a or name.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_inner_layers_import_only_what_the_design_allows(layer: str) -> None:
    files = sorted((ROOT / layer).rglob("*.py"))
    assert files, f"no modules found in worker/{layer}"
    offenders = [
        f"{path.relative_to(ROOT.parent)} imports {name}"
        for path in files
        for name in _imports(path)
        if not _allowed(name, ALLOWED[layer])
    ]
    assert offenders == []


def test_adapters_never_import_entrypoints_or_bootstrap() -> None:
    offenders = [
        f"{path.relative_to(ROOT.parent)} imports {name}"
        for path in sorted((ROOT / "adapters").rglob("*.py"))
        for name in _imports(path)
        if name.startswith(FORBIDDEN_FOR_ADAPTERS)
    ]
    assert offenders == []


def test_roles_never_import_bootstrap_or_the_cli() -> None:
    """Roles sit below bootstrap: it builds them and the CLI runs them, never the other way round."""
    offenders = [
        f"{path.relative_to(ROOT.parent)} imports {name}"
        for path in sorted((ROOT / "roles").rglob("*.py"))
        for name in _imports(path)
        if name.startswith(FORBIDDEN_FOR_ROLES)
    ]
    assert offenders == []


def test_bootstrap_never_imports_the_cli() -> None:
    assert [n for n in _imports(ROOT / "bootstrap.py") if n.startswith("worker.entrypoints")] == []


def test_the_rule_catches_a_forbidden_import() -> None:
    assert not _allowed("psycopg", ALLOWED["domain"])
    assert not _allowed("worker.application.commands", ALLOWED["domain"])
    assert _allowed("dataclasses", ALLOWED["domain"])
