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
    return _module_imports(path.read_text(encoding="utf-8"))


def _module_imports(source: str) -> list[str]:
    tree = ast.parse(source)
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
    for name in ("bootstrap.py", "bootstrap_operations.py"):
        assert [n for n in _imports(ROOT / name) if n.startswith("worker.entrypoints")] == []


def test_the_rule_catches_a_forbidden_import() -> None:
    assert not _allowed("psycopg", ALLOWED["domain"])
    assert not _allowed("worker.application.commands", ALLOWED["domain"])
    assert _allowed("dataclasses", ALLOWED["domain"])


# -- only bootstrap builds adapters ---------------------------------------------------------------------------

# What the rest of the worker (the CLI and the roles above all) may import from worker.adapters: values, error
# types and pure functions; never a class or function that opens a Kafka, PostgreSQL or Salesforce client. Those
# are built by worker/bootstrap.py, and handed over (the roles take ports, the commands bootstrap's Operations).
ADAPTER_VALUES: dict[str, set[str] | None] = {  # module -> names allowed (None: the whole module)
    # KafkaMessage (a Protocol) and header helpers over a message: no client in that module
    "worker.adapters.kafka.types": None,
    # offset-reset planning and time parsing: pure functions over numbers (`offsets`, `dlq --since`)
    "worker.adapters.kafka.reset_plan": None,
    # what a role hands to the dead-letter publisher, the error the failure classifier knows, and the header
    # names `dlq show` prints
    "worker.adapters.kafka.dlq": {"DeadLetter", "Stage", "DeadLetterNotDelivered", "DeadLetterTopicUnusable",
                                  "H_ATTEMPTS", "H_GROUP", "H_MESSAGE", "H_STACKTRACE", "H_WORKER_VERSION"},
    "worker.adapters.kafka.dlq_reader": {"DeadLetterFilter"},  # which dead letters a command selects
    "worker.adapters.postgres.outbox": {"OutboxRow"},  # one outbox row, as the relay encodes it
    # error types the failure classifier sorts into poison and transient
    "worker.adapters.kafka.producer": {"PublishFailed", "TopicUnusable",
                                       # how long a delivery report may take: the relay waits that long
                                       "DELIVERY_MARGIN_S", "MESSAGE_TIMEOUT_MS"},
    "worker.adapters.salesforce.errors": {"ChangeEventParseError"},
    # errors that need an operator: a role stops on them with one line
    "worker.adapters.salesforce.schemas": {"SchemaRegistryRefused"},
    "worker.adapters.avro": {"UnknownEventSchema"},  # a row the relay parks (no writer schema in this version)
    "worker.adapters.salesforce.api_errors": {"SalesforceUnavailable"},
}
# Known debts, each to be removed, never added to: ConsumerLoop's and OutboxRelay's constructors still name
# their concrete collaborators (as types only; bootstrap builds them). Those constructors are being reworked
# on another branch: when they take ports, delete these entries.
KNOWN_DEBTS = {
    ("roles/loop.py", "worker.adapters.kafka.consumer", "BatchConsumer"),
    ("roles/loop.py", "worker.adapters.kafka.dlq", "DeadLetterPublisher"),
    ("roles/relay.py", "worker.adapters.postgres.outbox", "PostgresOutbox"),
}


def adapter_imports(source: str) -> list[tuple[str, str | None]]:
    """(module, name) of every import from worker.adapters (name None for `import worker.adapters.x`); a
    module imported by name (`from worker.adapters.kafka import dlq`) counts as the whole module."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("worker.adapters")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("worker.adapters"):
            module = node.module or ""
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                path = ROOT.parent / submodule.replace(".", "/")
                is_module = path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
                found.append((submodule, None) if is_module else (module, alias.name))
    return found


def forbidden_adapter_imports(source: str, where: str = "") -> list[str]:
    problems = []
    for module, name in adapter_imports(source):
        allowed = ADAPTER_VALUES.get(module, set())
        if allowed is None or (name is not None and name in allowed) or (where, module, name) in KNOWN_DEBTS:
            continue
        problems.append(f"{where} imports {module}{'.' + name if name else ''}")
    return problems


# The composition root: bootstrap.py builds the roles' parts, bootstrap_operations.py the operator commands'.
COMPOSITION_ROOT = ("bootstrap.py", "bootstrap_operations.py")


def test_only_bootstrap_imports_concrete_adapters() -> None:
    """The CLI, the roles and every other module outside worker/adapters get what they need from bootstrap."""
    files = [path for path in sorted(ROOT.rglob("*.py"))
             if path.relative_to(ROOT).parts[0] != "adapters" and path.name not in COMPOSITION_ROOT]
    assert any(path.parent.name == "commands" for path in files) and any(p.parent.name == "roles" for p in files)
    offenders = [problem for path in files
                 for problem in forbidden_adapter_imports(path.read_text(encoding="utf-8"),
                                                         path.relative_to(ROOT).as_posix())]
    assert offenders == []


def test_the_known_debts_are_still_debts() -> None:
    """An entry of KNOWN_DEBTS that no longer matches an import must go (the list only shrinks)."""
    for where, module, name in sorted(KNOWN_DEBTS):
        assert (module, name) in adapter_imports((ROOT / where).read_text(encoding="utf-8")), (where, module, name)


def test_the_adapter_rule_catches_a_forbidden_import() -> None:
    assert forbidden_adapter_imports("from worker.adapters.postgres.event_store import make_pool", "x.py") == [
        "x.py imports worker.adapters.postgres.event_store.make_pool"]
    assert forbidden_adapter_imports("def f():\n    from worker.adapters.kafka import groups\n", "x.py") == [
        "x.py imports worker.adapters.kafka.groups"]
    assert forbidden_adapter_imports("import worker.adapters.kafka.dlq", "x.py") == [
        "x.py imports worker.adapters.kafka.dlq"]
    assert forbidden_adapter_imports("from worker.adapters.kafka.dlq import DeadLetterPublisher", "x.py") != []
    assert forbidden_adapter_imports("from worker.adapters.kafka.dlq import DeadLetter, Stage\n"
                                     "from worker.adapters.kafka.types import where", "x.py") == []
