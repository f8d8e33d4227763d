"""`worker run ingest|resync|relay|projector|all [--exit-when-idle SECONDS]`."""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable

from worker import bootstrap, logs
from worker.bootstrap_operations import Operations
from worker.entrypoints.commands import CliError, add_connection_options
from worker.roles.runtime import IdleClock, Stopper

log = logging.getLogger("worker.run")
ROLES = ("ingest", "resync", "relay", "projector", "all")
# `run all` starts them in this order; with --exit-when-idle each stops only after the one before it.
PIPELINE = ROLES[:-1]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run a role of the worker until stopped (SIGTERM: graceful)")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument(
        "--exit-when-idle", type=float, metavar="SECONDS",
        help="stop cleanly after SECONDS with nothing to do (demo, batch jobs, tests)",
    )
    add_connection_options(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace, ops: Operations) -> int:
    from worker.observability import start_metrics
    from worker.tracing import start_tracing

    settings = ops.settings
    obs = settings.observability
    logs.configure(obs.log_level, obs.log_format)
    start_tracing(obs)
    try:
        metrics = start_metrics(obs)
    except OSError as exc:
        raise CliError(f"cannot serve metrics on {obs.bind_address}:{obs.metrics_port}: {exc.strerror} "
                       "(set WORKER_OBSERVABILITY__METRICS_PORT, 0 turns it off)") from None
    app = bootstrap.bootstrap(settings, metrics=metrics)
    bootstrap.tune_gc(settings.gc_threshold)  # a long-running role: start-up done, its objects set aside
    disabled = bootstrap.resync_disabled_reason(settings, app.client_source)
    if args.role == "resync" and disabled:
        app.close()
        raise CliError(f"worker run resync cannot read Salesforce: {disabled}")
    if obs.health_port:
        try:
            app.health.serve(obs.bind_address, obs.health_port)
        except OSError as exc:
            app.close()
            raise CliError(f"cannot serve health on {obs.bind_address}:{obs.health_port}: {exc.strerror} "
                           "(set WORKER_OBSERVABILITY__HEALTH_PORT, 0 turns it off)") from None
    stopper = Stopper()
    stopper.install()
    builders: dict[str, Callable[..., object]] = {
        "ingest": bootstrap.ingest_loop,
        "resync": bootstrap.resync_role,
        "relay": bootstrap.relay,
        "projector": bootstrap.projector_loop,
    }
    roles = [r for r in PIPELINE if args.role in (r, "all")]
    try:
        if len(roles) == 1:
            loop = builders[roles[0]](app, stopper, IdleClock(args.exit_when_idle))
            return int(loop.run())  # type: ignore[attr-defined]
        return _run_together(roles, builders, app, stopper, args.exit_when_idle)
    finally:
        app.health.close()
        app.close()


def _run_together(roles: list[str], builders: dict[str, Callable[..., object]], app: object,
                  stopper: Stopper, idle_s: float | None) -> int:
    """`run all`: each role in a thread; with --exit-when-idle a role stops only after the one upstream."""
    finished: dict[str, threading.Event] = {role: threading.Event() for role in roles}
    codes: dict[str, int] = {}

    def target(role: str, upstream: str | None) -> None:
        after = finished[upstream].is_set if upstream else None
        try:
            loop = builders[role](app, stopper, IdleClock(idle_s, after))
            codes[role] = int(loop.run())  # type: ignore[attr-defined]
        except Exception:
            log.exception("%s stopped on an error", role)
            codes[role] = 1
        finally:
            finished[role].set()
            if codes.get(role):
                stopper.stop()  # one role failing stops the process non-zero

    threads = [
        threading.Thread(target=target, args=(role, roles[i - 1] if i else None), name=role, daemon=True)
        for i, role in enumerate(roles)
    ]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return max(codes.values(), default=0)


