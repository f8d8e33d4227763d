"""Which Kafka + PostgreSQL the test suite runs against: `python -m tests.stack_select CMD [ARGS...]`.

1. KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL both set: those, as they are.
2. STACK=containers: testcontainers' Kafka (KRaft, topics created only on request, like the local stack) and
   PostgreSQL, when a Docker engine answers; asked for without one, a one-line error (exit 2), never a silent
   fallback.
3. Otherwise (STACK unset or `local`): the local stack, through deploy/with-stack.sh (what `make test` does).

CMD runs with the two variables set; containers started here are stopped afterwards, also when CMD fails.
`tests/e2e/test_offsets_vs_kafka.py` also needs KAFKA_LIBS, Kafka's jars: the local stack's (`make up` fetches
them once) are used when present.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
POSTGRES_IMAGE = "postgres:16-alpine"


class Stack(StrEnum):
    ENVIRONMENT = "environment"
    CONTAINERS = "containers"
    LOCAL = "local"


class StackError(Exception):
    """What was asked for cannot be had here; the message is one line saying why."""


def choose(env: Mapping[str, str], docker_answers: Callable[[], bool]) -> Stack:
    """Existing variables > containers (STACK=containers, and Docker answers) > the local stack."""
    if env.get("KAFKA_BOOTSTRAP_SERVERS") and env.get("DATABASE_URL"):
        return Stack.ENVIRONMENT
    wanted = env.get("STACK", "").strip().lower() or "local"
    if wanted == "containers":
        if not docker_answers():
            raise StackError("STACK=containers needs a Docker engine and none answers (`docker info` fails): "
                             "start Docker, or run `make test` without STACK to use the local stack")
        return Stack.CONTAINERS
    if wanted != "local":
        raise StackError(f"STACK={env['STACK']!r}: use STACK=containers, or leave it unset for the local stack")
    return Stack.LOCAL


def docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def containers() -> Iterator[dict[str, str]]:
    """Kafka and PostgreSQL in containers, on the Docker host's loopback ports; stopped on exit."""
    try:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before 4.14 kept them at the top level
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    postgres = PostgresContainer(POSTGRES_IMAGE, username="worker", password="worker", dbname="worker", driver=None)
    with kafka, postgres:
        yield {"KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
               "DATABASE_URL": postgres.get_connection_url()}


def local_kafka_libs() -> str | None:
    """The local stack's Kafka jars, when `make up` has fetched them."""
    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "stack.py"), "env"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("export KAFKA_LIBS="):
            libs = line.split("=", 1)[1].strip()
            return libs if (Path(libs) / ".complete").exists() else None
    return None


def main(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: python -m tests.stack_select CMD [ARGS...]", file=sys.stderr)
        return 2
    try:
        stack = choose(os.environ, docker_answers)
    except StackError as exc:
        print(f"stack_select: {exc}", file=sys.stderr)
        return 2
    if stack is Stack.ENVIRONMENT:
        return subprocess.run(list(argv)).returncode
    if stack is Stack.LOCAL:
        return subprocess.run([str(ROOT / "deploy" / "with-stack.sh"), *argv]).returncode
    with containers() as servers:
        env = {**os.environ, **servers}
        libs = env.get("KAFKA_LIBS") or local_kafka_libs()
        if libs:
            env["KAFKA_LIBS"] = libs
        print(f"stack_select: Kafka {servers['KAFKA_BOOTSTRAP_SERVERS']}, PostgreSQL in a container", file=sys.stderr)
        return subprocess.run(list(argv), env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
