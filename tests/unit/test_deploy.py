"""The deployment artefacts under deploy/ checked against the CLI and the settings, without Docker or a cluster.

Every container command must be one the `worker` CLI accepts, every WORKER_* variable must name a real setting
(and its value must load), probes and ports must match the defaults of worker/config.py, and the scaling limits
must respect the partition count.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from worker.config import KafkaSettings, ObservabilitySettings, Settings, SettingsError, load_settings
from worker.entrypoints.cli import build_parser
from worker.observability import MeterInventory, Metrics
from worker.reconcile_metrics import ReconcileMetrics
from worker.resync_metrics import ResyncMetrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KUSTOMIZATION = K8S / "kustomization.yaml"
GRAFANA = DEPLOY / "grafana"

PREFIX = "WORKER_"
CONSUMER_ROLES = ("ingest", "projector")  # the roles that join a consumer group
ROLES = ("ingest", "resync", "relay", "projector")
MIN_GRACE_S = 30

KAFKA = KafkaSettings()
OBS = ObservabilitySettings()


# --- helpers -------------------------------------------------------------------------------------------------


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@cache
def load_docs(path: Path) -> list[Any]:
    """The documents of a YAML file, parsed once per run (the tests only read them)."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


@cache
def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every Kubernetes document in deploy/k8s, the kustomization excluded."""
    out = []
    for path in sorted(K8S.glob("*.y*ml")):
        if path == KUSTOMIZATION:
            continue
        for doc in load_docs(path):
            out.append((path.name, doc))
    return out


def of_kind(kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, doc in manifests() if doc.get("kind") == kind]


def workloads() -> list[tuple[str, dict[str, Any]]]:
    """The long-running roles: Deployments (relay) and StatefulSets (consumers: stable static-membership ids)."""
    return of_kind("Deployment") + of_kind("StatefulSet")


def where(file: str, doc: Mapping[str, Any]) -> str:
    return f"{file}: {doc.get('kind')} {doc.get('metadata', {}).get('name')!r}"


@cache
def parser() -> Any:
    return build_parser()


def cli_error(argv: Any) -> str | None:
    """None when `worker <argv>` parses, else why not (argparse's own message)."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return f"must be a list of strings (exec form), got {argv!r}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser().parse_args(argv)
    except SystemExit as exc:
        message = stderr.getvalue().strip().splitlines()
        return f"`worker {shlex.join(argv)}` is rejected by the CLI (exit {exc.code}): {message[-1] if message else ''}"
    return None


def role_of(argv: list[str]) -> str | None:
    return argv[1] if len(argv) >= 2 and argv[0] == "run" else None


def setting_problem(variable: str) -> str | None:
    """None when WORKER_A__B__C names a field of Settings (through its nested sections), else what is wrong."""
    if not variable.startswith(PREFIX):
        return f"{variable}: does not start with {PREFIX}"
    parts = variable[len(PREFIX):].lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            known = ", ".join(sorted(model.model_fields))
            return f"{variable}: {model.__name__} has no field {part!r} (fields: {known})"
        if i == len(parts) - 1:
            return None
        annotation = field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return f"{variable}: {model.__name__}.{part} is a plain setting, not a section: nothing below it"
        model = annotation
    return None


def assert_settings(variables: Mapping[str, Any], source: str) -> None:
    problems = [p for name in variables if name.startswith(PREFIX) if (p := setting_problem(name))]
    assert not problems, f"{source}: WORKER_* variables that name no setting in worker/config.py:\n" + "\n".join(
        problems
    )


def assert_values_load(variables: Mapping[str, Any], source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in variables.items():
        if name.startswith(PREFIX):
            monkeypatch.setenv(name, str(value).lower() if isinstance(value, bool) else str(value))
    try:
        load_settings()
    except SettingsError as exc:
        pytest.fail(f"{source}: the settings do not load: {exc}", pytrace=False)


def compose() -> dict[str, Any]:
    (doc,) = load_docs(COMPOSE)
    assert isinstance(doc, dict), f"{rel(COMPOSE)}: not a mapping"
    return doc


def worker_services() -> dict[str, dict[str, Any]]:
    """The compose services built from the worker's Dockerfile."""
    services = compose().get("services") or {}
    return {name: svc for name, svc in services.items() if "build" in svc}


def compose_env(service: Mapping[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return dict(env)


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def containers(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def container_args(container: Mapping[str, Any]) -> Any:
    """What follows the ENTRYPOINT `worker`: `args`; a `command` would replace the entrypoint."""
    return container.get("args")


def deployments_by_role() -> dict[str, tuple[str, dict[str, Any]]]:
    out = {}
    for file, doc in workloads():
        for c in pod_spec(doc).get("containers") or []:
            args = container_args(c)
            if isinstance(args, list) and (role := role_of(args)):
                out[role] = (file, doc)
    return out


def config_map_data() -> dict[str, str]:
    data: dict[str, str] = {}
    for _, doc in of_kind("ConfigMap"):
        data.update(doc.get("data") or {})
    return data


def secret_data() -> dict[str, str]:
    data: dict[str, str] = {}
    for _, doc in of_kind("Secret"):
        data.update(doc.get("stringData") or {})
        for key, value in (doc.get("data") or {}).items():
            data[key] = base64.b64decode(value).decode()
    return data


def seconds(duration: Any) -> float:
    """A compose duration (60s, 1m30s, 90) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    assert parts, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            instr, _, args = full.partition(" ")
            out.append((instr.upper(), args.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (instr, _) in enumerate(instructions) if instr == "FROM")
    return instructions[last_from:]


# --- the helpers themselves ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable",
    ["WORKER_KAFKA__BOOTSTRAP_SERVERS", "WORKER_POSTGRES__URL", "WORKER_SNAPSHOT_INTERVAL",
     "WORKER_OBSERVABILITY__HEALTH_PORT", "WORKER_KAFKA__GROUP_INSTANCE_ID"],
)
def test_setting_lookup_accepts_real_settings(variable: str) -> None:
    assert setting_problem(variable) is None


@pytest.mark.parametrize(
    "variable",
    ["WORKER_KAFKA__BOOTSTRAP_SERVER", "WORKER_KAFKA_BOOTSTRAP_SERVERS", "WORKER_KAFKA__BOOTSTRAP_SERVERS__X",
     "WORKER_NOPE", "KAFKA__BOOTSTRAP_SERVERS"],
)
def test_setting_lookup_rejects_typos(variable: str) -> None:
    problem = setting_problem(variable)
    assert problem and problem.startswith(variable)


def test_cli_check_rejects_unknown_commands() -> None:
    assert cli_error(["run", "ingest"]) is None
    assert "rejected" in (cli_error(["run", "ingester"]) or "")
    assert "exec form" in (cli_error("run ingest") or "")


# --- every YAML file -----------------------------------------------------------------------------------------


def test_deploy_has_yaml_files() -> None:
    names = {rel(p) for p in yaml_files()}
    assert {"deploy/compose.yaml", "deploy/k8s/kustomization.yaml"} <= names, names


@pytest.mark.parametrize("path", yaml_files(), ids=rel)
def test_yaml_parses(path: Path) -> None:
    try:
        docs = load_docs(path)
    except yaml.YAMLError as exc:
        pytest.fail(f"{rel(path)} is not valid YAML: {exc}", pytrace=False)
    assert docs, f"{rel(path)} holds no document"
    for i, doc in enumerate(docs):
        assert isinstance(doc, dict), f"{rel(path)}: document {i} is a {type(doc).__name__}, not a mapping"


# --- compose -------------------------------------------------------------------------------------------------


def test_compose_runs_every_role_and_the_setup() -> None:
    commands = {name: svc.get("command") for name, svc in worker_services().items()}
    found = {tuple(c) for c in commands.values() if isinstance(c, list)}
    wanted = {("migrate",), ("topics", "create"), *(("run", role) for role in ROLES)}
    assert wanted <= found, f"{rel(COMPOSE)}: missing worker services for {sorted(wanted - found)}; have {commands}"


def test_compose_commands_parse() -> None:
    problems = []
    for name, svc in worker_services().items():
        if "command" not in svc:
            problems.append(f"service {name!r}: no command (the image's default `run all` is not meant here)")
        elif error := cli_error(svc["command"]):
            problems.append(f"service {name!r}: command {error}")
    assert not problems, f"{rel(COMPOSE)}:\n" + "\n".join(problems)


def test_compose_ingest_is_scalable() -> None:
    services = compose()["services"]
    assert "ingest" in services, f"{rel(COMPOSE)}: no service 'ingest'"
    ingest = services["ingest"]
    assert "container_name" not in ingest, (
        f"{rel(COMPOSE)}: service 'ingest' sets container_name {ingest['container_name']!r}: "
        "`--scale ingest=N` needs generated names"
    )
    assert not ingest.get("ports"), (
        f"{rel(COMPOSE)}: service 'ingest' maps host ports {ingest['ports']!r}: replicas would collide under --scale"
    )


def test_compose_environment_names_real_settings() -> None:
    for name, svc in (compose().get("services") or {}).items():
        assert_settings(compose_env(svc), f"{rel(COMPOSE)} service {name!r}")


def test_compose_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, svc in worker_services().items():
        with monkeypatch.context() as m:
            assert_values_load(compose_env(svc), f"{rel(COMPOSE)} service {name!r}", m)


def test_compose_roles_wait_for_setup_and_stop_gracefully() -> None:
    problems = []
    health_url = f"127.0.0.1:{OBS.health_port}/healthz"
    for name, svc in worker_services().items():
        if not (isinstance(svc.get("command"), list) and role_of(svc["command"])):
            continue
        depends = svc.get("depends_on") or {}
        for setup in ("migrate", "topics"):
            condition = depends.get(setup, {}).get("condition") if isinstance(depends, dict) else None
            if condition != "service_completed_successfully":
                problems.append(f"service {name!r}: depends_on {setup!r} must be service_completed_successfully, "
                                f"got {condition!r}")
        grace = svc.get("stop_grace_period")
        if grace is None or seconds(grace) < MIN_GRACE_S:
            problems.append(f"service {name!r}: stop_grace_period {grace!r} (>= {MIN_GRACE_S}s: a batch must finish)")
        test = (svc.get("healthcheck") or {}).get("test")
        if health_url not in json.dumps(test):
            problems.append(f"service {name!r}: healthcheck {test!r} does not probe http://{health_url}")
    assert not problems, f"{rel(COMPOSE)}:\n" + "\n".join(problems)


# --- Kubernetes ----------------------------------------------------------------------------------------------


def test_k8s_has_a_deployment_per_role() -> None:
    found = deployments_by_role()
    assert set(ROLES) <= set(found), f"deploy/k8s: no Deployment running `worker run` {sorted(set(ROLES) - set(found))}"


def test_k8s_container_args_parse() -> None:
    problems = []
    for file, doc in workloads() + of_kind("Job"):
        for c in containers(doc):
            if "command" in c:
                problems.append(f"{where(file, doc)} container {c['name']!r}: `command` replaces the `worker` "
                                "entrypoint; pass the subcommand as `args`")
            if error := cli_error(container_args(c)):
                problems.append(f"{where(file, doc)} container {c['name']!r}: args {error}")
    assert not problems, "\n".join(problems)


def test_k8s_setup_jobs_migrate_and_create_topics() -> None:
    found = {tuple(container_args(c) or ()) for _, doc in of_kind("Job") for c in containers(doc)}
    for wanted in (("migrate",), ("topics", "create")):
        assert wanted in found, f"deploy/k8s: no Job runs `worker {' '.join(wanted)}` (Job args: {sorted(found)})"


def test_k8s_deployments_probe_health_and_metrics_ports() -> None:
    problems = []
    for file, doc in workloads():
        for c in pod_spec(doc)["containers"]:
            at = f"{where(file, doc)} container {c['name']!r}"
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            if ports.get("health") != OBS.health_port:
                problems.append(f"{at}: port 'health' is {ports.get('health')!r}, the health server listens on "
                                f"{OBS.health_port}")
            if ports.get("metrics") != OBS.metrics_port:
                problems.append(f"{at}: port 'metrics' is {ports.get('metrics')!r}, /metrics is on {OBS.metrics_port}")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = (c.get(probe) or {}).get("httpGet")
                if not get:
                    problems.append(f"{at}: no {probe} with httpGet")
                    continue
                port = ports.get(get.get("port")) if isinstance(get.get("port"), str) else get.get("port")
                if get.get("path") != path or port != OBS.health_port:
                    problems.append(f"{at}: {probe} probes {get.get('path')!r} on port {get.get('port')!r} "
                                    f"(= {port!r}); expected {path} on {OBS.health_port}")
    assert not problems, "\n".join(problems)


def test_k8s_deployments_resources_grace_and_security() -> None:
    problems = []
    for file, doc in workloads():
        spec = pod_spec(doc)
        grace = spec.get("terminationGracePeriodSeconds")
        if not isinstance(grace, int) or grace < MIN_GRACE_S:
            problems.append(f"{where(file, doc)}: terminationGracePeriodSeconds {grace!r} (>= {MIN_GRACE_S}: "
                            "SIGTERM lets the batch finish and commit)")
        pod_security = spec.get("securityContext") or {}
        for c in spec["containers"]:
            at = f"{where(file, doc)} container {c['name']!r}"
            resources = c.get("resources") or {}
            for part in ("requests", "limits"):
                if not resources.get(part):
                    problems.append(f"{at}: no resources.{part}")
            security = c.get("securityContext") or {}
            if security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is not True:
                problems.append(f"{at}: runAsNonRoot is not true (pod or container securityContext)")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: readOnlyRootFilesystem is not true")
    assert not problems, "\n".join(problems)


def test_k8s_consumers_use_static_membership_from_the_pod_name() -> None:
    problems = []
    deployments = deployments_by_role()
    for role in CONSUMER_ROLES:
        if role not in deployments:
            problems.append(f"no Deployment for {role!r}")
            continue
        file, doc = deployments[role]
        for c in pod_spec(doc)["containers"]:
            env = {e["name"]: e for e in c.get("env") or []}
            var = env.get("WORKER_KAFKA__GROUP_INSTANCE_ID")
            ref = (var or {}).get("valueFrom", {}).get("fieldRef", {})
            if ref.get("fieldPath") != "metadata.name":
                problems.append(f"{where(file, doc)} container {c['name']!r}: WORKER_KAFKA__GROUP_INSTANCE_ID "
                                f"must come from fieldRef metadata.name (one id per replica), got {var!r}")
    assert not problems, "\n".join(problems)


def test_k8s_env_from_refers_to_existing_objects() -> None:
    config_maps = {doc["metadata"]["name"] for _, doc in of_kind("ConfigMap")}
    secrets = {doc["metadata"]["name"] for _, doc in of_kind("Secret")}
    problems = []
    for file, doc in workloads() + of_kind("Job"):
        for c in containers(doc):
            refs = c.get("envFrom") or []
            cm = {r["configMapRef"]["name"] for r in refs if "configMapRef" in r}
            sec = {r["secretRef"]["name"] for r in refs if "secretRef" in r}
            if not cm or not cm <= config_maps:
                problems.append(f"{where(file, doc)}: envFrom ConfigMaps {sorted(cm)} (defined: {sorted(config_maps)})")
            if not sec or not sec <= secrets:
                problems.append(f"{where(file, doc)}: envFrom Secrets {sorted(sec)} (defined: {sorted(secrets)})")
    assert not problems, "\n".join(problems)


def test_k8s_environment_names_real_settings() -> None:
    assert config_map_data(), "deploy/k8s: no ConfigMap data"
    assert_settings(config_map_data(), "deploy/k8s ConfigMap")
    assert_settings(secret_data(), "deploy/k8s Secret")
    for file, doc in workloads() + of_kind("Job"):
        for c in containers(doc):
            names = {e["name"]: None for e in c.get("env") or []}
            assert_settings(names, f"{where(file, doc)} container {c['name']!r} env")


def test_k8s_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    literal: dict[str, Any] = {**config_map_data(), **secret_data()}
    for _, doc in workloads():
        for c in containers(doc):
            literal.update({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
    assert_values_load(literal, "deploy/k8s ConfigMap + Secret + env values", monkeypatch)


def test_k8s_secret_holds_the_secrets() -> None:
    secrets = secret_data()
    assert "WORKER_POSTGRES__URL" in secrets, "deploy/k8s Secret: WORKER_POSTGRES__URL belongs in the Secret"
    leaked = [k for k in config_map_data() if re.search("PASSWORD|SECRET|TOKEN|SESSION_ID|POSTGRES__URL", k)]
    assert not leaked, f"deploy/k8s ConfigMap holds secrets {leaked}: move them to the Secret"


def test_k8s_pdb_covers_each_consumer_deployment() -> None:
    pdbs = of_kind("PodDisruptionBudget")
    problems = []
    for role, (file, doc) in sorted(deployments_by_role().items()):
        if role not in CONSUMER_ROLES:
            continue
        labels = doc["spec"]["template"]["metadata"].get("labels") or {}
        matching = [
            (f, pdb) for f, pdb in pdbs
            if (sel := pdb["spec"].get("selector", {}).get("matchLabels")) and sel.items() <= labels.items()
        ]
        if not matching:
            problems.append(f"{where(file, doc)}: no PodDisruptionBudget selects its pod labels {labels}")
        for f, pdb in matching:
            if pdb["spec"].get("maxUnavailable") != 1:
                problems.append(f"{where(f, pdb)}: maxUnavailable {pdb['spec'].get('maxUnavailable')!r}, expected 1")
    assert not problems, "\n".join(problems)


def test_k8s_selectors_match_pod_labels() -> None:
    problems = []
    for file, doc in workloads():
        selector = doc["spec"]["selector"]["matchLabels"]
        labels = doc["spec"]["template"]["metadata"].get("labels") or {}
        if not selector.items() <= labels.items():
            problems.append(f"{where(file, doc)}: selector {selector} does not match the pod labels {labels}")
    assert not problems, "\n".join(problems)


def test_keda_scales_ingest_within_the_partitions() -> None:
    scaled = of_kind("ScaledObject")
    assert scaled, "deploy/k8s: no KEDA ScaledObject"
    ingest_file, ingest = deployments_by_role()["ingest"]
    config = config_map_data()
    partitions = min(KAFKA.partitions, int(config.get("WORKER_KAFKA__PARTITIONS", KAFKA.partitions)))
    for file, doc in scaled:
        at = where(file, doc)
        spec = doc["spec"]
        assert spec["scaleTargetRef"]["name"] == ingest["metadata"]["name"], (
            f"{at}: scaleTargetRef {spec['scaleTargetRef']['name']!r} is not the ingest Deployment "
            f"{ingest['metadata']['name']!r} ({ingest_file})"
        )
        maximum, minimum = spec.get("maxReplicaCount"), spec.get("minReplicaCount", 0)
        assert isinstance(maximum, int) and maximum <= partitions, (
            f"{at}: maxReplicaCount {maximum!r} exceeds the {partitions} partitions of {KAFKA.cdc_topic}: "
            "replicas beyond them sit idle"
        )
        assert minimum <= maximum, f"{at}: minReplicaCount {minimum} > maxReplicaCount {maximum}"
        kafka = [t for t in spec.get("triggers") or [] if t.get("type") == "kafka"]
        assert kafka, f"{at}: no trigger of type kafka"
        for trigger in kafka:
            meta = trigger["metadata"]
            assert meta.get("consumerGroup") == KAFKA.ingest_group, (
                f"{at}: consumerGroup {meta.get('consumerGroup')!r}, the ingest group is {KAFKA.ingest_group!r}"
            )
            assert meta.get("topic") == KAFKA.cdc_topic, (
                f"{at}: topic {meta.get('topic')!r}, the CDC topic is {KAFKA.cdc_topic!r}"
            )
            if "WORKER_KAFKA__BOOTSTRAP_SERVERS" in config:
                assert meta.get("bootstrapServers") == config["WORKER_KAFKA__BOOTSTRAP_SERVERS"], (
                    f"{at}: bootstrapServers {meta.get('bootstrapServers')!r} differs from the ConfigMap's "
                    f"{config['WORKER_KAFKA__BOOTSTRAP_SERVERS']!r}"
                )
            assert str(meta.get("allowIdleConsumers", "false")).lower() == "false", (
                f"{at}: allowIdleConsumers must stay false (idle replicas beyond the partitions)"
            )
            assert isinstance(meta.get("lagThreshold"), str), f"{at}: lagThreshold must be a quoted string"


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_docs(KUSTOMIZATION)
    listed = kustomization.get("resources") or []
    files = {p.name for p in K8S.glob("*.y*ml")} - {KUSTOMIZATION.name}
    missing = sorted(files - set(listed))
    unknown = sorted(set(listed) - files)
    assert not missing, f"{rel(KUSTOMIZATION)}: resources do not list {missing}"
    assert not unknown, f"{rel(KUSTOMIZATION)}: resources list files that do not exist: {unknown}"
    assert len(listed) == len(set(listed)), f"{rel(KUSTOMIZATION)}: resources listed twice: {listed}"


def test_k8s_is_namespace_agnostic() -> None:
    pinned = [where(f, d) for f, d in manifests() if "namespace" in (d.get("metadata") or {})]
    assert not pinned, f"manifests pin a namespace (set it in kustomization.yaml or with -n): {pinned}"


# --- Dockerfile ----------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage() -> None:
    stages = [args for instr, args in dockerfile_instructions() if instr == "FROM"]
    assert len(stages) >= 2, f"{rel(DOCKERFILE)}: {len(stages)} FROM line(s); a builder and a final stage expected"


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for instr, args in final_stage() if instr == "USER"]
    assert users, f"{rel(DOCKERFILE)}: the final stage has no USER line (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{rel(DOCKERFILE)}: the final stage runs as {users[-1]!r}"
    if user.isdigit():
        problems = [
            where(f, d) for f, d in workloads() + of_kind("Job")
            if pod_spec(d).get("securityContext", {}).get("runAsUser", int(user)) != int(user)
        ]
        assert not problems, f"runAsUser differs from the image's USER {user}: {problems}"


def test_dockerfile_entrypoint_and_cmd() -> None:
    final = dict(final_stage())
    assert "ENTRYPOINT" in final, f"{rel(DOCKERFILE)}: no ENTRYPOINT in the final stage"
    assert json.loads(final["ENTRYPOINT"]) == ["worker"], (
        f"{rel(DOCKERFILE)}: ENTRYPOINT {final['ENTRYPOINT']}, expected [\"worker\"] (exec form)"
    )
    if "CMD" in final:
        error = cli_error(json.loads(final["CMD"]))
        assert error is None, f"{rel(DOCKERFILE)}: CMD {error}"


def test_dockerfile_exposes_metrics_and_health() -> None:
    exposed = {p.split("/")[0] for instr, args in final_stage() if instr == "EXPOSE" for p in args.split()}
    wanted = {str(OBS.metrics_port), str(OBS.health_port)}
    assert wanted <= exposed, f"{rel(DOCKERFILE)}: EXPOSE {sorted(exposed)}, expected {sorted(wanted)}"


def test_dockerfile_ships_the_schemas() -> None:
    # worker/adapters/avro.py and adapters/salesforce/schemas.py read `schemas/` next to the installed package.
    copies = [args for instr, args in dockerfile_instructions() if instr == "COPY" and "schemas" in args.split()[:-1]]
    assert copies, f"{rel(DOCKERFILE)}: no COPY of schemas/ (the Avro writer schemas the adapters load)"


def test_dockerfile_env_names_real_settings() -> None:
    env: dict[str, str] = {}
    for instr, args in dockerfile_instructions():
        if instr == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args) if "=" in item)
    assert_settings(env, f"{rel(DOCKERFILE)} ENV")


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")}
    for excluded in (".venv", ".git", ".stack"):
        assert excluded in patterns, f"{rel(DOCKERIGNORE)}: does not exclude {excluded}"
    for needed in ("worker", "schemas", "pyproject.toml", "README.md"):
        assert needed not in patterns, f"{rel(DOCKERIGNORE)}: excludes {needed}, which the image build needs"


def test_consumers_are_statefulsets_so_static_membership_ids_survive_rollouts() -> None:
    services = {doc["metadata"]["name"]: doc for _, doc in of_kind("Service")}
    for role in ("ingest", "projector"):
        file, doc = deployments_by_role()[role]
        at = where(file, doc)
        assert doc["kind"] == "StatefulSet", f"{at}: a consumer role needs stable pod names (StatefulSet)"
        service = services.get(doc["spec"].get("serviceName"))
        assert service is not None and service["spec"].get("clusterIP") == "None", (
            f"{at}: serviceName must name a headless Service in deploy/k8s")
        env = {e["name"]: e for c in pod_spec(doc)["containers"] for e in c.get("env") or []}
        source = env.get("WORKER_KAFKA__GROUP_INSTANCE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
        assert source.get("fieldPath") == "metadata.name", f"{at}: group.instance.id must be the pod name"
    ingest = deployments_by_role()["ingest"][1]
    for file, scaled in of_kind("ScaledObject"):
        assert scaled["spec"]["scaleTargetRef"].get("kind") == ingest["kind"], where(file, scaled)


# --- dashboard and alert rules -------------------------------------------------------------------------------

# Series that come from outside the worker: Prometheus itself and kube-state-metrics.
EXTERNAL_METRICS = {"up", "kube_pod_container_status_restarts_total"}
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                 "offset", "inf", "nan"}


def promql_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are no function, keyword, label or variable."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", expr)  # strings
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)  # label matchers, ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)  # label lists
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return {n for n in names if n.lower() not in _PROMQL_WORDS and not re.fullmatch(r"\d.*|e\d+", n)}


def dashboards() -> list[Path]:
    return sorted(GRAFANA.glob("*.json"))


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of a dashboard, rows' nested panels included."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    panels = list(doc.get("panels") or [])
    panels += [inner for p in panels for inner in p.get("panels") or []]
    return [(p.get("title", "?"), t["expr"]) for p in panels for t in p.get("targets") or [] if "expr" in t]


def alert_rules() -> list[tuple[str, dict[str, Any]]]:
    return [(where(file, doc), rule) for file, doc in of_kind("PrometheusRule")
            for group in doc["spec"]["groups"] for rule in group["rules"]]


def test_promql_metric_extraction_sees_metrics_only() -> None:
    expr = ('sum by (group, le) (rate(worker_x_total{topic="a b", pod=~"w-.*"}[$__rate_interval])) / '
            'ignoring(le) max(up) > 0.95 and on (pod) histogram_quantile(0.5, y_bucket) offset 5m')
    assert promql_metrics(expr) == {"worker_x_total", "up", "y_bucket"}


def test_the_dashboard_is_valid_and_every_panel_queries_something() -> None:
    assert dashboards(), "deploy/grafana: no dashboard"
    for path in dashboards():
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc.get("uid") and doc.get("title"), f"{rel(path)}: no uid or title"
        graphs = [p for p in doc["panels"] if p.get("type") != "row"]
        empty = [p.get("title") for p in graphs if not p.get("targets")]
        assert graphs and not empty, f"{rel(path)}: panels without a query: {empty}"
        variables = {v["name"] for v in doc.get("templating", {}).get("list", [])}
        unknown = {m for _, e in dashboard_exprs(path) for m in re.findall(r"\$\{?(\w+)", e)} - variables - {
            "__rate_interval", "__interval", "__range"}
        assert not unknown, f"{rel(path)}: queries use undefined variables {sorted(unknown)}"


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    assert rules, "deploy/k8s: no PrometheusRule"
    problems = []
    for at, rule in rules:
        for key in ("alert", "expr"):
            if not rule.get(key):
                problems.append(f"{at}: a rule without {key}: {rule}")
        if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
            problems.append(f"{at}: {rule.get('alert')}: severity must be warning or critical")
        if not rule.get("annotations", {}).get("summary"):
            problems.append(f"{at}: {rule.get('alert')}: no summary annotation")
    assert not problems, "\n".join(problems)


def exported_metrics() -> set[str]:
    """Every series the worker's /metrics can show: the Metrics facade's and the resync role's."""
    metrics = Metrics()
    resync = MeterInventory(metrics.provider.get_meter("resync"))
    ResyncMetrics(resync)  # type: ignore[arg-type]
    reconcile = MeterInventory(metrics.provider.get_meter("reconcile"))
    ReconcileMetrics(reconcile)  # type: ignore[arg-type]
    return metrics.prometheus_names() | resync.prometheus_names() | reconcile.prometheus_names()


def test_dashboard_and_alerts_use_only_metrics_the_worker_exports() -> None:
    exported = exported_metrics() | EXTERNAL_METRICS
    used = [(rel(path), title, expr) for path in dashboards() for title, expr in dashboard_exprs(path)]
    used += [(at, rule.get("alert"), rule["expr"]) for at, rule in alert_rules()]
    unknown = [f"{source} {title!r}: {sorted(names)}" for source, title, expr in used
               if (names := promql_metrics(str(expr)) - exported)]
    assert not unknown, "metrics that nothing exports (typo, or a renamed metric):\n" + "\n".join(unknown)


@pytest.mark.parametrize("metric", [
    "worker_consumer_lag", "worker_dead_letters_total", "worker_outbox_oldest_age_seconds",
    "worker_resync_oldest_age_seconds", "worker_resync_backlog", "worker_database_durable",
    "kube_pod_container_status_restarts_total",
])
def test_operators_are_alerted_on_and_shown(metric: str) -> None:
    assert any(metric in promql_metrics(str(rule["expr"])) for _, rule in alert_rules()), f"no alert reads {metric}"
    assert any(metric in promql_metrics(expr) for path in dashboards() for _, expr in dashboard_exprs(path)), (
        f"no dashboard panel shows {metric}")


# --- reconciliation on a schedule ------------------------------------------------------------------------------


def cron_jobs() -> list[tuple[str, dict[str, Any]]]:
    return of_kind("CronJob")


def cron_containers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return containers


def test_k8s_reconcile_runs_on_a_schedule_one_at_a_time_and_parses() -> None:
    found = {tuple(c.get("args") or ()): doc for _, doc in cron_jobs() for c in cron_containers(doc)}
    assert any(args[:1] == ("reconcile",) and "--full" not in args for args in found), (
        f"deploy/k8s: no CronJob runs an incremental `worker reconcile` (CronJob args: {sorted(found)})")
    assert any(args[:2] == ("reconcile", "--full") for args in found), "deploy/k8s: no CronJob for a full reconcile"
    problems = []
    for file, doc in cron_jobs():
        spec = doc["spec"]
        if spec.get("concurrencyPolicy") != "Forbid":
            problems.append(f"{where(file, doc)}: concurrencyPolicy must be Forbid (two reconciles repair twice)")
        if len(str(spec.get("schedule", "")).split()) != 5:
            problems.append(f"{where(file, doc)}: schedule {spec.get('schedule')!r} is not a 5-field cron line")
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"{where(file, doc)}: restartPolicy {pod.get('restartPolicy')!r}")
        for c in cron_containers(doc):
            if "command" in c:
                problems.append(f"{where(file, doc)}: `command` replaces the `worker` entrypoint")
            if error := cli_error(c.get("args")):
                problems.append(f"{where(file, doc)}: args {error}")
            refs = c.get("envFrom") or []
            if not any("secretRef" in r for r in refs) or not any("configMapRef" in r for r in refs):
                problems.append(f"{where(file, doc)}: needs the worker ConfigMap and Secret (Salesforce credentials)")
            if not (c.get("resources") or {}).get("limits") or not c.get("securityContext"):
                problems.append(f"{where(file, doc)}: resources.limits and securityContext wanted")
    assert not problems, "\n".join(problems)


def test_compose_has_a_reconcile_service_behind_a_profile() -> None:
    services = worker_services()
    reconcile = [svc for svc in services.values() if (svc.get("command") or [None])[0] == "reconcile"]
    assert reconcile, f"{rel(COMPOSE)}: no service runs `worker reconcile`"
    for svc in reconcile:
        assert svc.get("profiles"), f"{rel(COMPOSE)}: the reconcile service must not start with `up` (profile)"
        assert svc.get("restart") == "no", f"{rel(COMPOSE)}: the reconcile service is one run (restart: no)"


@pytest.mark.parametrize("metric", [
    "worker_reconcile_drift", "worker_retention_lost_offsets_total", "worker_reconcile_last_run_timestamp_seconds",
])
def test_convergence_is_alerted_on(metric: str) -> None:
    assert any(metric in promql_metrics(str(rule["expr"])) for _, rule in alert_rules()), f"no alert reads {metric}"
