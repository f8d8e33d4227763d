#!/usr/bin/env python3
"""The local stack without Docker: Apache Kafka (KRaft, one node) and PostgreSQL, on 127.0.0.1 only.

    python deploy/stack.py up|down|status|env

Kafka's jars come from Maven Central through deploy/kafka/pom.xml; PostgreSQL comes from the server binaries
installed on the machine (initdb/pg_ctl). Both run under a project-local folder (STACK_DIR, default .stack/)
and are stopped by PID. Ports: STACK_KAFKA_PORT (19092), STACK_KAFKA_CONTROLLER_PORT (19093), STACK_PG_PORT
(15432). Standard library only: it runs before the virtual environment exists.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK = Path(os.environ.get("STACK_DIR", ROOT / ".stack")).resolve()
KAFKA_PORT = int(os.environ.get("STACK_KAFKA_PORT", "19092"))
CONTROLLER_PORT = int(os.environ.get("STACK_KAFKA_CONTROLLER_PORT", "19093"))
PG_PORT = int(os.environ.get("STACK_PG_PORT", "15432"))
HOST = "127.0.0.1"

KAFKA_DIR = STACK / "kafka"
LIBS = KAFKA_DIR / "libs"
KAFKA_PID = KAFKA_DIR / "kafka.pid"
KAFKA_LOG = KAFKA_DIR / "kafka.log"
PG_DIR = STACK / "postgres"
PG_DATA = PG_DIR / "data"
PG_LOG = PG_DIR / "postgres.log"


def log(message: str) -> None:
    print(f"stack: {message}", flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def wait_until(check, timeout_s: float, what: str) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    log(f"timed out after {timeout_s:.0f}s waiting for {what}")
    return False


# -- Kafka --------------------------------------------------------------------------------------------------


def kafka_jars() -> None:
    if LIBS.is_dir() and any(LIBS.glob("kafka_2.13-*.jar")):
        return
    log("fetching Apache Kafka's jars from Maven Central (deploy/kafka/pom.xml)")
    LIBS.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(ROOT / "deploy/kafka/pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={LIBS}", "-DincludeScope=runtime"],
        check=True,
    )


def kafka_config() -> Path:
    data = KAFKA_DIR / "data"
    props = KAFKA_DIR / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={HOST}:{CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=false",
                "log.retention.check.interval.ms=60000",
                "",
            ]
        )
    )
    (KAFKA_DIR / "log4j2.properties").write_text(
        "\n".join(
            [
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = file",
                f"appender.file.fileName = {KAFKA_DIR / 'server.log'}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = WARN",
                "rootLogger.appenderRef.file.ref = file",
                "logger.kafka.name = kafka",
                "logger.kafka.level = INFO",
                "",
            ]
        )
    )
    return props


def java(*args: str) -> list[str]:
    logging = f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}"
    return ["java", "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", logging, "-cp", f"{LIBS}/*", *args]


def kafka_up() -> bool:
    if read_pid(KAFKA_PID) and port_open(KAFKA_PORT):
        log(f"kafka already running (pid {read_pid(KAFKA_PID)}) on {HOST}:{KAFKA_PORT}")
        return True
    if port_open(KAFKA_PORT):
        log(f"port {KAFKA_PORT} is taken by another process: set STACK_KAFKA_PORT")
        return False
    kafka_jars()
    props = kafka_config()
    if not (KAFKA_DIR / "data" / "meta.properties").exists():
        cluster_id = subprocess.run(java("kafka.tools.StorageTool", "random-uuid"), check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1]
        subprocess.run(java("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props), "--standalone"),
                       check=True, capture_output=True, text=True)
    with open(KAFKA_LOG, "ab") as out:
        process = subprocess.Popen(java("kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    KAFKA_PID.write_text(str(process.pid))
    log(f"kafka starting (pid {process.pid}) on {HOST}:{KAFKA_PORT}")
    if not wait_until(lambda: process.poll() is not None or kafka_answers(), 120, "the Kafka broker"):
        tail(KAFKA_LOG)
        return False
    if process.poll() is not None:
        log(f"kafka exited with {process.returncode}")
        tail(KAFKA_LOG)
        return False
    log("kafka answers metadata requests")
    return True


def kafka_answers() -> bool:
    """A metadata request through the real client when the venv has it, else an open port."""
    if not port_open(KAFKA_PORT):
        return False
    try:
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return True
    try:
        AdminClient({"bootstrap.servers": f"{HOST}:{KAFKA_PORT}"}).list_topics(timeout=2)
    except Exception:
        return False
    return True


def kafka_down() -> None:
    pid = read_pid(KAFKA_PID)
    if pid is None:
        log("kafka not running")
        return
    os.kill(pid, signal.SIGTERM)
    if not wait_until(lambda: not alive(pid), 30, "kafka to stop"):
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not alive(pid), 10, "kafka to die")
    KAFKA_PID.unlink(missing_ok=True)
    log(f"kafka stopped (pid {pid})")


# -- PostgreSQL -------------------------------------------------------------------------------------------------


def as_postgres_user(cmd: list[str]) -> list[str]:
    """initdb refuses root: run the server binaries as the unprivileged `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", pg_user(), "--", *cmd]


def pg_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise SystemExit("stack: no unprivileged user to run PostgreSQL as")


def pg_ctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_postgres_user(["pg_ctl", "-D", str(PG_DATA), *args]), capture_output=True, text=True)


def pg_running() -> bool:
    return pg_ctl("status").returncode == 0


def pg_up() -> bool:
    if pg_running() and port_open(PG_PORT):
        log(f"postgres already running on {HOST}:{PG_PORT}")
        return True
    if port_open(PG_PORT):
        log(f"port {PG_PORT} is taken by another process: set STACK_PG_PORT")
        return False
    for binary in ("initdb", "pg_ctl"):
        if shutil.which(binary) is None:
            log(f"{binary} not found: install the PostgreSQL server binaries")
            return False
    PG_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam(pg_user())
        os.chown(PG_DIR, user.pw_uid, user.pw_gid)
        make_traversable(PG_DIR)
    if not (PG_DATA / "PG_VERSION").exists():
        result = subprocess.run(
            as_postgres_user(["initdb", "-D", str(PG_DATA), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                              "--no-instructions"]),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            log(f"initdb failed: {result.stderr.strip()[-500:]}")
            return False
        # A dev/test server: durability is traded for speed (fsync off), loopback only, trust auth.
        with open(PG_DATA / "postgresql.conf", "a") as conf:
            conf.write(
                f"\nlisten_addresses = '{HOST}'\nport = {PG_PORT}\nunix_socket_directories = '{PG_DIR}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n"
                "shared_buffers = 128MB\n"
            )
        (PG_DATA / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )
    result = pg_ctl("start", "-w", "-t", "60", "-l", str(PG_LOG), "-o", f"-p {PG_PORT}")
    if result.returncode != 0:
        log(f"pg_ctl start failed: {result.stderr.strip() or result.stdout.strip()}")
        tail(PG_LOG)
        return False
    for statement in ("CREATE ROLE worker LOGIN SUPERUSER", "CREATE DATABASE worker OWNER worker"):
        subprocess.run(
            ["psql", "-h", HOST, "-p", str(PG_PORT), "-U", "postgres", "-d", "postgres", "-q", "-c", statement],
            capture_output=True, text=True,
        )
    log(f"postgres running on {HOST}:{PG_PORT}")
    return True


def make_traversable(path: Path) -> None:
    """The postgres user must reach the data folder: every parent needs the x bit for others."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def pg_down() -> None:
    if not (PG_DATA / "PG_VERSION").exists() or not pg_running():
        log("postgres not running")
        return
    result = pg_ctl("stop", "-m", "fast", "-w", "-t", "60")
    log("postgres stopped" if result.returncode == 0 else f"pg_ctl stop failed: {result.stderr.strip()}")


# -- commands -------------------------------------------------------------------------------------------------


def tail(path: Path, lines: int = 30) -> None:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    print("\n".join(f"  | {line}" for line in text), file=sys.stderr)


def env_lines() -> str:
    return (
        f"export KAFKA_BOOTSTRAP_SERVERS={HOST}:{KAFKA_PORT}\n"
        f"export DATABASE_URL=postgresql://worker@{HOST}:{PG_PORT}/worker\n"
    )


def status() -> int:
    kafka = read_pid(KAFKA_PID)
    print(f"kafka     {'running' if kafka and port_open(KAFKA_PORT) else 'stopped':8} "
          f"pid={kafka or '-'} {HOST}:{KAFKA_PORT}")
    pg = pg_running() if (PG_DATA / "PG_VERSION").exists() else False
    pid = (PG_DATA / "postmaster.pid").read_text().split()[0] if pg else "-"
    print(f"postgres  {'running' if pg else 'stopped':8} pid={pid} {HOST}:{PG_PORT}")
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    STACK.mkdir(parents=True, exist_ok=True)
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    if command == "up":
        ok = pg_up() and kafka_up()
        return 0 if ok else 1
    if command == "down":
        kafka_down()
        pg_down()
        return 0
    if command == "status":
        return status()
    if command == "env":
        sys.stdout.write(env_lines())
        return 0
    if command == "running":  # exit 0 when both answer (used by with-stack.sh)
        return 0 if (read_pid(KAFKA_PID) and port_open(KAFKA_PORT) and port_open(PG_PORT)) else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
