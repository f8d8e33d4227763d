"""`python -m tests.chaos`: one seeded CDC workload through a clean `worker run all` (the reference, one
partition: the workload's own order), then through 3 ingest, 2 relay and 2 projector processes on 8 partitions
under kill -9s, a PostgreSQL immediate restart, a broker kill -9 and a frozen relay connection while the input is
still produced; both must end with the same read models, events, unique dead letters, lag 0 and an empty outbox.

Settings (environment): CHAOS_CHANGES (100000), CHAOS_KILLS (40), CHAOS_SEED (7), CHAOS_PG_RESTARTS (1),
CHAOS_BROKER_RESTARTS (1), CHAOS_FREEZES (1), CHAOS_RATE (input messages/s, 2000), CHAOS_DEADLINE_S (1800: the
longest wait for any condition), CHAOS_STACK_DIR (.chaos-stack), CHAOS_KAFKA_PORT (29092),
CHAOS_KAFKA_CONTROLLER_PORT (29093), CHAOS_PG_PORT (25432), CHAOS_KEEP_STACK (unset: the stack is stopped at the
end). Exit 0 when both runs are the same, 1 on any difference, stuck condition or unexpected worker exit.
"""

from __future__ import annotations

import faulthandler
import os
import random
import sys
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.chaos.compare import compare, read_outcome
from tests.chaos.faults import Faults
from tests.chaos.fleet import Fleet
from tests.chaos.pipeline import Gate, Pipeline, Stuck, wait
from tests.chaos.stack import ROOT, ChaosStack
from tests.chaos.workload import Change, build
from tests.fakes.tcp_proxy import TcpProxy

ROLES = {"ingest": 3, "relay": 2, "projector": 2}
PARTITIONS = 8


@dataclass(frozen=True)
class Config:
    changes: int
    kills: int
    seed: int
    pg_restarts: int
    broker_restarts: int
    freezes: int
    rate: float
    deadline_s: float
    stack: ChaosStack
    keep_stack: bool

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Config:
        def number(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            try:
                return float(raw) if raw else default
            except ValueError:
                raise SystemExit(f"chaos: {name}={raw!r} is not a number") from None

        folder = Path(env.get("CHAOS_STACK_DIR", "").strip() or ROOT / ".chaos-stack")
        stack = ChaosStack((ROOT / folder).resolve(), int(number("CHAOS_KAFKA_PORT", 29092)),
                           int(number("CHAOS_KAFKA_CONTROLLER_PORT", 29093)), int(number("CHAOS_PG_PORT", 25432)))
        return cls(int(number("CHAOS_CHANGES", 100_000)), int(number("CHAOS_KILLS", 40)),
                   int(number("CHAOS_SEED", 7)), int(number("CHAOS_PG_RESTARTS", 1)),
                   int(number("CHAOS_BROKER_RESTARTS", 1)), int(number("CHAOS_FREEZES", 1)),
                   number("CHAOS_RATE", 2000), number("CHAOS_DEADLINE_S", 1800), stack,
                   bool(env.get("CHAOS_KEEP_STACK")))


class Journal:
    """Every line timestamped, wall clock and seconds since the start."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        now = time.strftime("%H:%M:%S")
        print(f"[{now} +{time.monotonic() - self.started:7.1f}s] {message}", flush=True)


def reference_run(cfg: Config, changes: list[Change], say: Journal, logs: Path) -> Pipeline:
    pipeline = Pipeline("reference", cfg.stack, 1, say)
    pipeline.prepare(logs.name)
    pipeline.produce(changes)
    say(f"reference: {len(changes):,} changes produced; `worker run all` (one process) starts")
    fleet = Fleet(logs / "reference", say)
    fleet.logs.mkdir(parents=True, exist_ok=True)
    fleet.add("all", "all", pipeline.env)
    try:
        say(f"reference: {pipeline.converged(cfg.deadline_s, fleet)}")
    finally:
        fleet.stop()
    if fleet.surprises:
        raise Stuck(f"reference: {fleet.surprises}")
    say("reference: stopped (SIGTERM, exit 0)")
    return pipeline


def chaos_run(cfg: Config, changes: list[Change], say: Journal, logs: Path) -> tuple[Pipeline, Fleet, Faults]:
    pipeline = Pipeline("chaos", cfg.stack, PARTITIONS, say)
    pipeline.prepare(logs.name)
    fleet = Fleet(logs / "chaos", say)
    fleet.logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as exits:
        proxies = {}
        for role, count in ROLES.items():
            for i in range(count):
                name, env = f"{role}-{i}", pipeline.env
                if role == "relay":  # each relay's database connection through its own proxy, to freeze
                    proxies[name] = exits.enter_context(TcpProxy("127.0.0.1", cfg.stack.pg_port))
                    env = {**env, "WORKER_POSTGRES__URL": pipeline.dsn.replace(
                        f":{cfg.stack.pg_port}/", f":{proxies[name].port}/")}
                fleet.add(name, role, env)
        say(f"chaos: started {', '.join(f'{n} {r}' for r, n in ROLES.items())} processes: "
            + ", ".join(f"{name}={fleet.pid(name)}" for name in fleet.members))
        faults = Faults(cfg.stack, pipeline, fleet, proxies, random.Random(cfg.seed), say)
        plan = faults.plan(cfg.kills, cfg.pg_restarts, cfg.broker_restarts, cfg.freezes)
        gate = Gate(len(changes), len(plan))
        failure: list[BaseException] = []

        def feed() -> None:
            try:
                pipeline.produce(changes, gate, cfg.rate)
            except BaseException as exc:
                failure.append(exc)

        producer = threading.Thread(target=feed, name="chaos-producer", daemon=True)
        producer.start()
        say(f"chaos: producing {len(changes):,} changes at up to {cfg.rate:.0f}/s; {len(plan)} faults planned")
        mark, pace = 0, len(changes) // (2 * (len(plan) + 1))
        try:
            for j, fault in enumerate(plan):
                while not gate.step_due(j) and producer.is_alive():
                    fleet.check()
                    time.sleep(0.2)  # the producer's progress, polled
                # the workers got back to work since the last fault: the faults spread over the processing
                mark = pipeline.progressed(mark + pace, cfg.deadline_s, fleet)
                say(f"fault {j + 1}/{len(plan)} at {gate.produced:,} changes produced, {mark:,} events written")
                faults.inflict(fault)
                gate.step_done()
            producer.join()
            if failure:
                raise failure[0]
            say(f"chaos: all {len(changes):,} changes produced; waiting for lag 0 and an empty outbox")
            say(f"chaos: {pipeline.converged(cfg.deadline_s, fleet)}")
        finally:
            for _ in plan:
                gate.step_done()  # the producer never waits on a fault that will not come
            fleet.stop()
    say("chaos: every process stopped (SIGTERM)")
    return pipeline, fleet, faults


def main() -> int:
    faulthandler.enable()
    cfg = Config.from_env(dict(os.environ))
    say = Journal()
    say(f"chaos: {cfg.changes:,} changes, seed {cfg.seed}, {cfg.kills} kills, {cfg.pg_restarts} PostgreSQL and "
        f"{cfg.broker_restarts} broker restart(s), {cfg.freezes} freeze(s); stack {cfg.stack.folder} "
        f"(kafka {cfg.stack.bootstrap}, postgres 127.0.0.1:{cfg.stack.pg_port}, durable)")
    changes, mix = build(cfg.changes, cfg.seed)
    say("workload: " + ", ".join(f"{kind} {n:,}" for kind, n in mix.most_common()))
    spread = Counter(change.partition(PARTITIONS) for change in changes)
    say(f"workload: {len({c.group for c in changes}):,} groups of clients (a merged update's share one); changes "
        f"per partition of {PARTITIONS}: {', '.join(f'{spread[p]:,}' for p in range(PARTITIONS))}")
    logs = cfg.stack.folder / "logs" / time.strftime("%Y%m%d-%H%M%S")
    cfg.stack.up()
    say(f"stack up; worker logs in {logs}")
    try:
        reference = reference_run(cfg, changes, say, logs)
        chaos, fleet, faults = chaos_run(cfg, changes, say, logs)
        say("comparing the reference run with the chaos run")
        verdict = compare(wait(lambda: read_outcome("reference", reference.dsn, reference.kafka), 120, "the "
                               "reference's end state"),
                          wait(lambda: read_outcome("chaos", chaos.dsn, chaos.kafka), 120, "the chaos run's end state"))
    except Stuck as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        if not cfg.keep_stack:
            cfg.stack.down()
            say("stack down")
    for line in verdict.lines:
        print(line, flush=True)
    for surprise in fleet.surprises:
        print(f"  FAILED  unexpected exit: {surprise}", flush=True)
    failed = verdict.failures + len(fleet.surprises)
    say(f"faults: {faults.tally}")
    say(f"{'FAILED: ' + str(failed) + ' difference(s)' if failed else 'PASSED: the same end state'} "
        f"after {time.monotonic() - say.started:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
