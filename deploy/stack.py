#!/usr/bin/env python3
"""The local stack without Docker: Apache Kafka (KRaft, one node) and PostgreSQL, on 127.0.0.1 only.

    python deploy/stack.py up|down|status|env|clean      (up, down and running accept: kafka, postgres)

- Kafka 4.1.1: its jars come from Maven Central through Maven and deploy/kafka/pom.xml, into
  <stack>/kafka/libs (fetched once); one JVM is broker and controller (KRaft), started detached, stopped by PID.
- PostgreSQL: the server binaries installed on the machine (initdb, pg_ctl, psql on PATH), a data folder under
  <stack>/postgres; as root the server runs as the unprivileged `postgres` user. Role and database `worker`.

Settings (environment): STACK_DIR (default <repo>/.stack), STACK_KAFKA_PORT (19092),
STACK_KAFKA_CONTROLLER_PORT (19093), STACK_PG_PORT (15432), STACK_WAIT_S (90: the deadline for each server to
answer), STACK_PG_DURABLE (unset: fsync, synchronous_commit and full_page_writes off for speed; 1: on, as the
chaos test and benchmarks want them; read on every start); `up` accepts service names too. Standard library only:
it runs before the virtual environment exists. It uses confluent_kafka for the readiness check when that is
importable, and a raw ApiVersions request otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
POM = ROOT / "deploy" / "kafka" / "pom.xml"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"stack: {name}={raw!r} is not a number") from None


STACK = (ROOT / (os.environ.get("STACK_DIR", "").strip() or ".stack")).resolve()  # relative: to the repo
KAFKA_PORT = _int_env("STACK_KAFKA_PORT", 19092)
CONTROLLER_PORT = _int_env("STACK_KAFKA_CONTROLLER_PORT", 19093)
PG_PORT = _int_env("STACK_PG_PORT", 15432)
WAIT_S = float(_int_env("STACK_WAIT_S", 90))
PG_DURABLE = _int_env("STACK_PG_DURABLE", 0) != 0

KAFKA_DIR = STACK / "kafka"
LIBS = KAFKA_DIR / "libs"
LIBS_COMPLETE = LIBS / ".complete"  # written after Maven succeeded: a half-finished download is redone
KAFKA_DATA = KAFKA_DIR / "data"
KAFKA_PROPS = KAFKA_DIR / "server.properties"
KAFKA_LOG4J = KAFKA_DIR / "log4j2.properties"
KAFKA_FORMATTED = KAFKA_DIR / "formatted-for"  # the controller endpoint the storage was formatted with
KAFKA_PID = KAFKA_DIR / "kafka.pid"
KAFKA_OUT = KAFKA_DIR / "kafka.log"  # the JVM's stdout/stderr
KAFKA_GC_LOG = KAFKA_DIR / "gc.log"  # the broker's garbage-collection pauses (a crowded heap shows here first)
KAFKA_SERVER_LOG = KAFKA_DIR / "server.log"  # log4j2 (INFO for Kafka, WARN for the rest), rolled at 10 MB x 3


def log(message: str) -> None:
    print(f"stack: {message}", flush=True)


# -- processes, ports, waits ---------------------------------------------------------------------------------------


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
        pass
    with contextlib.suppress(OSError, IndexError):  # a zombie (not reaped yet) is dead for us
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def cmdline(pid: int) -> str | None:
    """The process's command line, or None where /proc cannot tell."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def pid_from(path: Path, *marks: str) -> int | None:
    """The PID in `path` when that process is alive and (where /proc tells) its command line has every mark:
    a PID file left behind after a reboot must not make us signal whatever process reuses that number."""
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid <= 1 or not alive(pid):
        return None
    line = cmdline(pid)
    if line is not None and not all(mark in line for mark in marks):
        return None
    return pid


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def tail(path: Path, lines: int = 30) -> None:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    if text:
        print(f"--- last {len(text)} lines of {path}", file=sys.stderr)
        print("\n".join(text), file=sys.stderr, flush=True)


def run(
    cmd: list[str], what: str, cwd: Path | str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command, capture its output; on failure say what failed, show the output, exit 1."""
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=cwd, env=env)
    if result.returncode != 0:
        log(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}")
        output = (result.stdout + result.stderr).strip().splitlines()[-30:]
        print("\n".join(output), file=sys.stderr, flush=True)
        raise SystemExit(1)
    return result


@contextlib.contextmanager
def stack_lock() -> Iterator[None]:
    """One up/down/clean at a time per stack folder (two `make test` runs may start together)."""
    STACK.mkdir(parents=True, exist_ok=True)
    with open(STACK / ".lock", "w") as handle:
        deadline = time.monotonic() + 2 * WAIT_S + 60
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SystemExit(f"stack: another stack.py holds {STACK / '.lock'}") from None
                time.sleep(0.5)
        yield


# -- Kafka -------------------------------------------------------------------------------------------------------


def java_cmd(*args: str, heap: str = "-Xmx512m", gc_log: Path | None = None) -> list[str]:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else "java"
    return [
        java,
        "-Xms64m",
        heap,
        "-XX:+UseSerialGC",
        *([f"-Xlog:gc:file={gc_log}:time,uptime:filecount=2,filesize=10m"] if gc_log else []),
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J}",
        "-cp",
        f"{LIBS}/*",
        *args,
    ]


def _pom_digest() -> str:
    import hashlib

    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def fetch_kafka_jars() -> None:
    # the marker names the pom it was fetched for: a changed pom (a new tool jar, another version) fetches again
    if LIBS_COMPLETE.exists() and f"pom {_pom_digest()}" in LIBS_COMPLETE.read_text():
        return
    if shutil.which("mvn") is None:
        raise SystemExit("stack: mvn not found: install Maven (it fetches Kafka's jars from Maven Central)")
    log(f"fetching Apache Kafka's jars from Maven Central with Maven ({POM.relative_to(ROOT)}) into {LIBS}")
    LIBS.mkdir(parents=True, exist_ok=True)
    mvn = ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(POM)]
    run(
        [*mvn, "dependency:copy-dependencies", f"-DoutputDirectory={LIBS}", "-DincludeScope=runtime"],
        "fetching Kafka's jars",
    )
    # Maven resolves slf4j-api 1.7.x (Kafka's own dependency), which the pom's log4j-slf4j2-impl (an SLF4J 2
    # provider) does not bind: the broker would log nothing ("Failed to load class org.slf4j.impl.StaticLoggerBinder"),
    # and both bindings together clash (NoClassDefFoundError org/slf4j/spi/LoggingEventBuilder). So swap it for the
    # SLF4J 1.x binding of the same log4j version, also fetched with Maven.
    core = sorted(LIBS.glob("log4j-core-*.jar"))
    if any(LIBS.glob("slf4j-api-1.*.jar")) and core:
        for jar in LIBS.glob("log4j-slf4j2-impl-*.jar"):
            jar.unlink()
        if not any(LIBS.glob("log4j-slf4j-impl-*.jar")):
            version = core[-1].name.removeprefix("log4j-core-").removesuffix(".jar")
            artifact = f"org.apache.logging.log4j:log4j-slf4j-impl:{version}"
            run(
                [*mvn, "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={LIBS}"], f"fetching {artifact}"
            )
    if not any(LIBS.glob("kafka_2.13-*.jar")):
        raise SystemExit(f"stack: Maven finished but {LIBS} holds no kafka_2.13 jar")
    LIBS_COMPLETE.write_text(f"{len(list(LIBS.glob('*.jar')))} jars, pom {_pom_digest()}\n")
    log(f"{len(list(LIBS.glob('*.jar')))} jars in {LIBS}")


def write_kafka_config() -> None:
    KAFKA_PROPS.write_text(
        "\n".join(
            [
                "# Generated by deploy/stack.py on every start: edit that script, not this file.",
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers={HOST}:{CONTROLLER_PORT}",
                f"listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT}",
                f"advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={KAFKA_DATA}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=10",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )
    )
    KAFKA_LOG4J.write_text(
        "\n".join(
            [
                "# Generated by deploy/stack.py.",
                "status = warn",
                "shutdownHook = disable",
                "appender.file.type = RollingFile",
                "appender.file.name = file",
                f"appender.file.fileName = {KAFKA_SERVER_LOG}",
                f"appender.file.filePattern = {KAFKA_SERVER_LOG}.%i",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "appender.file.policies.type = Policies",
                "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
                "appender.file.policies.size.size = 10MB",
                "appender.file.strategy.type = DefaultRolloverStrategy",
                "appender.file.strategy.max = 3",
                "rootLogger.level = WARN",
                "rootLogger.appenderRef.file.ref = file",
                "logger.kafka.name = kafka",
                "logger.kafka.level = INFO",
                "logger.apache.name = org.apache.kafka",
                "logger.apache.level = INFO",
                "logger.request.name = kafka.request.logger",
                "logger.request.level = WARN",
                "",
            ]
        )
    )


def format_kafka_storage() -> None:
    endpoint = f"{HOST}:{CONTROLLER_PORT}"
    if (KAFKA_DATA / "meta.properties").exists():
        formatted = KAFKA_FORMATTED.read_text().strip() if KAFKA_FORMATTED.exists() else endpoint
        if formatted != endpoint:
            # The standalone format writes the controller's endpoint into the metadata log.
            raise SystemExit(
                f"stack: Kafka's storage in {KAFKA_DATA} was formatted for controller {formatted}, not {endpoint}: "
                f"set STACK_KAFKA_CONTROLLER_PORT={formatted.rsplit(':', 1)[1]} or run `make clean`"
            )
        return
    # A Kafka Uuid as kafka-storage random-uuid prints it: 16 random bytes, URL-safe base64 without padding
    # (Kafka avoids ids that start with "-"). Saves a JVM start.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            break
    KAFKA_DATA.mkdir(parents=True, exist_ok=True)
    log(f"formatting Kafka storage (cluster id {cluster_id}, standalone KRaft controller)")
    run(
        java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_id,
            "-c",
            str(KAFKA_PROPS),
            heap="-Xmx256m",
        ),
        "formatting Kafka's storage",
        cwd=KAFKA_DIR,
    )
    KAFKA_FORMATTED.write_text(endpoint + "\n")


def kafka_pid() -> int | None:
    return pid_from(KAFKA_PID, "kafka.Kafka", str(KAFKA_PROPS))


def api_versions_answer(timeout_s: float = 2.0) -> bool:
    """A raw ApiVersions v0 request (every broker answers it, even to say the version is unsupported)."""
    client_id = b"stack.py"
    request = struct.pack(">hhih", 18, 0, 0x5743, len(client_id)) + client_id
    try:
        with socket.create_connection((HOST, KAFKA_PORT), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            data = b""
            while len(data) < 10:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    _size, correlation_id, error_code = struct.unpack(">iih", data[:10])
    return correlation_id == 0x5743 and error_code in (0, 35)  # 35: UNSUPPORTED_VERSION, still an answer


def kafka_answers() -> bool:
    """The broker answers a metadata request (confluent_kafka when importable, else a raw ApiVersions)."""
    if not port_open(KAFKA_PORT):
        return False
    try:
        from confluent_kafka.admin import AdminClient  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return api_versions_answer()
    try:
        admin = AdminClient({"bootstrap.servers": f"{HOST}:{KAFKA_PORT}", "log_level": 0})
        return bool(admin.list_topics(timeout=3).brokers)
    except Exception:
        return False


def stop_pid(pid: int, name: str, term_s: float = 30) -> None:
    """SIGTERM, a bounded wait, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not alive(pid), term_s):
        return
    log(f"{name} (pid {pid}) still alive after {term_s:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(pid), 10)


def kafka_up() -> bool:
    address = f"{HOST}:{KAFKA_PORT}"
    pid = kafka_pid()
    if pid is not None:
        if wait_until(kafka_answers, WAIT_S, 1.0):
            log(f"kafka already running (pid {pid}) on {address}")
            return True
        log(f"kafka pid {pid} runs but does not answer on {address} within {WAIT_S:.0f}s: try `make down`")
        tail(KAFKA_OUT)
        tail(KAFKA_SERVER_LOG)
        return False
    for port in (KAFKA_PORT, CONTROLLER_PORT):
        if port_open(port):
            log(
                f"port {HOST}:{port} is taken by a process that is not this stack's Kafka: "
                "set STACK_KAFKA_PORT / STACK_KAFKA_CONTROLLER_PORT"
            )
            return False
    fetch_kafka_jars()
    write_kafka_config()
    format_kafka_storage()
    with open(KAFKA_OUT, "ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} stack.py starts kafka.Kafka\n".encode())
        out.flush()
        process = subprocess.Popen(
            java_cmd("kafka.Kafka", str(KAFKA_PROPS), gc_log=KAFKA_GC_LOG),
            cwd=KAFKA_DIR,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    KAFKA_PID.write_text(f"{process.pid}\n")
    log(f"kafka starting (pid {process.pid}) on {address}, log {KAFKA_SERVER_LOG}")
    started = time.monotonic()
    ready = wait_until(lambda: process.poll() is not None or kafka_answers(), WAIT_S, 0.5)
    if ready and process.poll() is None:
        log(f"kafka answers on {address} ({time.monotonic() - started:.1f}s)")
        return True
    if process.poll() is not None:
        log(f"kafka exited with {process.returncode} while starting")
    else:
        log(f"kafka did not answer on {address} within {WAIT_S:.0f}s (STACK_WAIT_S): stopping it")
        stop_pid(process.pid, "kafka", 15)
        process.poll()
    KAFKA_PID.unlink(missing_ok=True)
    tail(KAFKA_OUT)
    tail(KAFKA_SERVER_LOG)
    return False


def kafka_down() -> bool:
    pid = kafka_pid()
    if pid is None:
        KAFKA_PID.unlink(missing_ok=True)
        log("kafka not running")
        return True
    stop_pid(pid, "kafka")
    if alive(pid):
        log(f"kafka (pid {pid}) did not stop")
        return False
    KAFKA_PID.unlink(missing_ok=True)
    log(f"kafka stopped (pid {pid})")
    return True


# -- PostgreSQL ----------------------------------------------------------------------------------------------------


def pg_user() -> pwd.struct_passwd | None:
    """The user the server runs as: as root, the unprivileged `postgres` user (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise SystemExit("stack: running as root but there is no `postgres` user to run PostgreSQL as") from None


def as_pg(cmd: list[str]) -> list[str]:
    user = pg_user()
    return cmd if user is None else ["runuser", "-u", user.pw_name, "--", *cmd]


def pg_fallback_dir() -> Path:
    digest = hashlib.sha1(str(STACK).encode()).hexdigest()[:12]
    return Path("/tmp") / f"salesforce-cdc-worker-{digest}" / "postgres"


@functools.cache
def pg_dir() -> Path:
    """<stack>/postgres, unless the `postgres` user cannot reach it (a parent folder without the x bit for it)
    or the socket path would be too long: then /tmp/<project hash>/postgres. No folder's mode is changed."""
    preferred, fallback = STACK / "postgres", pg_fallback_dir()
    if (preferred / "data" / "PG_VERSION").exists():
        return preferred
    if (fallback / "data" / "PG_VERSION").exists():
        return fallback
    if len(str(preferred / f".s.PGSQL.{PG_PORT}.lock")) > 100:  # a unix socket path holds 107 bytes
        return fallback
    user = pg_user()
    if user is not None:
        STACK.mkdir(parents=True, exist_ok=True)
        probe = subprocess.run(
            ["runuser", "-u", user.pw_name, "--", "test", "-x", str(STACK)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        if probe.returncode != 0:
            return fallback
    return preferred


def pg_data() -> Path:
    return pg_dir() / "data"


def pg_log() -> Path:
    return pg_dir() / "postgres.log"


def pg_pid() -> int | None:
    return pid_from(pg_data() / "postmaster.pid", "postgres")


def psql(sql: str) -> str:
    cmd = [
        "psql",
        "-X",
        "-q",
        "-t",
        "-A",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        HOST,
        "-p",
        str(PG_PORT),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        sql,
    ]
    return run(cmd, f"psql {sql!r}", env={**os.environ, "PGCONNECT_TIMEOUT": "5"}).stdout.strip()


def ensure_worker_role_and_database() -> None:
    # A superuser: the tests create and drop a database per test. Fine for a loopback dev/test server only.
    if psql("SELECT 1 FROM pg_roles WHERE rolname = 'worker'") != "1":
        psql("CREATE ROLE worker LOGIN SUPERUSER")
        log("created role worker")
    if psql("SELECT 1 FROM pg_database WHERE datname = 'worker'") != "1":
        psql("CREATE DATABASE worker OWNER worker")
        log("created database worker")


def write_owned(path: Path, text: str) -> None:
    path.write_text(text)
    user = pg_user()
    if user is not None:
        os.chown(path, user.pw_uid, user.pw_gid)


def pg_init() -> None:
    missing = [tool for tool in ("initdb", "pg_ctl", "psql") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"stack: {', '.join(missing)} not found on PATH: install the PostgreSQL 15 server binaries")
    folder, data = pg_dir(), pg_data()
    if folder != STACK / "postgres":
        log(
            f"the postgres user cannot reach {STACK / 'postgres'} (or its socket path is too long): "
            f"PostgreSQL lives in {folder}"
        )
        folder.parent.mkdir(mode=0o755, exist_ok=True)
        if folder.parent.is_symlink() or folder.parent.stat().st_uid != os.geteuid():
            raise SystemExit(f"stack: {folder.parent} belongs to another user")
    folder.mkdir(parents=True, exist_ok=True)
    user = pg_user()
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(0o755)  # clients reach the unix socket in here
    if not (data / "PG_VERSION").exists():
        log(f"initdb {data}")
        run(
            as_pg(
                [
                    "initdb",
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-locale",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]
            ),
            "initdb",
            cwd="/",
        )
        write_owned(
            data / "pg_hba.conf",
            "# Generated by deploy/stack.py: no password, loopback only.\n"
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
    conf = data / "postgresql.conf"
    if "include_if_exists = 'stack.conf'" not in conf.read_text():
        with open(conf, "a") as handle:
            handle.write("\n# deploy/stack.py's settings, rewritten on every start:\n")
            handle.write("include_if_exists = 'stack.conf'\n")
    write_owned(
        data / "stack.conf",
        "# Generated by deploy/stack.py on every start.\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {PG_PORT}\n"
        f"unix_socket_directories = '{folder}'\n"
        "max_connections = 200\n" + pg_durability_settings(),
    )


def pg_durability_settings() -> str:
    if PG_DURABLE:
        return "# STACK_PG_DURABLE=1: a commit survives a crash of the server or the machine.\n" \
               "fsync = on\nsynchronous_commit = on\nfull_page_writes = on\n"
    return (
        "# A local dev/test server: durability is traded for speed. Never use these settings for data you keep.\n"
        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
    )


def pg_up() -> bool:
    address = f"{HOST}:{PG_PORT}"
    pid = pg_pid()
    if pid is not None:
        if wait_until(lambda: port_open(PG_PORT), WAIT_S):
            ensure_worker_role_and_database()
            log(f"postgres already running (pid {pid}) on {address}")
            return True
        log(f"postgres pid {pid} runs from {pg_data()} but does not answer on {address}: try `make down`")
        return False
    if port_open(PG_PORT):
        log(f"port {address} is taken by a process that is not this stack's PostgreSQL: set STACK_PG_PORT")
        return False
    pg_init()
    started = time.monotonic()
    result = subprocess.run(
        as_pg(["pg_ctl", "start", "-D", str(pg_data()), "-w", "-t", str(int(WAIT_S)), "-l", str(pg_log())]),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    if result.returncode != 0 or not wait_until(lambda: port_open(PG_PORT), 10):
        log(f"postgres did not start: {(result.stderr or result.stdout).strip()}")
        tail(pg_log())
        return False
    ensure_worker_role_and_database()
    log(f"postgres running (pid {pg_pid()}) on {address} ({time.monotonic() - started:.1f}s), data {pg_data()}")
    return True


def pg_down() -> bool:
    pid = pg_pid()
    if pid is None:
        log("postgres not running")
        return True
    result = subprocess.run(
        as_pg(["pg_ctl", "stop", "-D", str(pg_data()), "-m", "fast", "-w", "-t", "60"]),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )
    if result.returncode != 0 or not wait_until(lambda: not alive(pid), 10):
        log(f"pg_ctl stop failed: {(result.stderr or result.stdout).strip()}")
        return False
    log(f"postgres stopped (pid {pid})")
    return True


# -- commands --------------------------------------------------------------------------------------------------


SERVICES = ("kafka", "postgres")


def running(service: str) -> bool:
    if service == "kafka":
        return kafka_pid() is not None and port_open(KAFKA_PORT)
    return pg_pid() is not None and port_open(PG_PORT)


def status() -> None:
    kafka, pg = kafka_pid(), pg_pid()
    rows = [
        ("kafka", running("kafka"), kafka, f"{HOST}:{KAFKA_PORT} (controller {HOST}:{CONTROLLER_PORT})", KAFKA_DIR),
        ("postgres", running("postgres"), pg, f"{HOST}:{PG_PORT}", pg_data()),
    ]
    for name, up, pid, address, folder in rows:
        print(f"{name:<9} {'running' if up else 'stopped':<8} pid {pid or '-':<8} {address:<45} {folder}")


def env_lines() -> str:
    return (
        f"export KAFKA_BOOTSTRAP_SERVERS={HOST}:{KAFKA_PORT}\n"
        f"export DATABASE_URL=postgresql://worker@{HOST}:{PG_PORT}/worker\n"
        f"export KAFKA_LIBS={LIBS}\n"
    )


def clean() -> bool:
    """down, then remove the stack folder (and PostgreSQL's /tmp folder when it had to live there)."""
    if not (kafka_down() and pg_down()):
        return False
    if STACK == ROOT or STACK in ROOT.parents:
        raise SystemExit(f"stack: refusing to remove {STACK}")
    folders = [STACK] if pg_dir() == STACK / "postgres" else [STACK, pg_dir().parent]
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
            log(f"removed {folder}")
    return True


def services(args: list[str]) -> list[str]:
    unknown = [arg for arg in args if arg not in SERVICES]
    if unknown:
        raise SystemExit(f"stack: unknown service {unknown[0]!r} (kafka, postgres)")
    return args or list(SERVICES)


def main(argv: list[str]) -> int:
    command, args = (argv[1], argv[2:]) if len(argv) > 1 else ("status", [])
    if command == "up":
        with stack_lock():
            chosen = services(args)
            ok = (pg_up() if "postgres" in chosen else True) and (kafka_up() if "kafka" in chosen else True)
        if ok:
            log('up: eval "$(python3 deploy/stack.py env)" sets KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL')
        return 0 if ok else 1
    if command == "down":
        with stack_lock():
            chosen = services(args)
            results = [kafka_down() if "kafka" in chosen else True, pg_down() if "postgres" in chosen else True]
        return 0 if all(results) else 1
    if command == "status":
        status()
        return 0
    if command == "running":  # exit 0 when every named service (default: both) runs and answers its port
        return 0 if all(running(service) for service in services(args)) else 1
    if command == "env":
        sys.stdout.write(env_lines())
        return 0
    if command == "clean":
        with stack_lock():
            ok = clean()
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
