"""The faults of the chaos run, each one printed as it happens: kill -9 of a worker process (started again at
once), a PostgreSQL immediate stop and start, a broker kill -9 and start, and a frozen relay database connection
(the relay that holds the lock, through its own TCP proxy) held until the server has ended that session."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from tests.chaos.fleet import Fleet
from tests.chaos.pipeline import Pipeline, wait
from tests.chaos.stack import ChaosStack
from tests.fakes.tcp_proxy import TcpProxy

_LOCK_HOLDERS = (
    "SELECT a.pid, a.client_port FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
    " WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()"
)
FREEZE_DEADLINE_S = 120  # the relay's session ends after DEAD_PEER_TIMEOUT_S (5 s) of silence


@dataclass
class Tally:
    kills: int = 0
    pg_restarts: int = 0
    broker_restarts: int = 0
    freezes: int = 0
    by_role: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        roles = ", ".join(f"{role} {n}" for role, n in sorted(self.by_role.items()))
        return (f"{self.kills} kill -9 of workers ({roles}), {self.pg_restarts} PostgreSQL immediate restart(s), "
                f"{self.broker_restarts} broker kill -9 + restart(s), {self.freezes} frozen relay connection(s)")


@dataclass
class Faults:
    stack: ChaosStack
    pipeline: Pipeline
    fleet: Fleet
    proxies: dict[str, TcpProxy]
    rng: random.Random
    say: Callable[[str], None]
    tally: Tally = field(default_factory=Tally)

    def plan(self, kills: int, pg_restarts: int, broker_restarts: int, freezes: int) -> list[str]:
        """The faults in a seeded order; the outages spread out between the kills."""
        plan = ["kill"] * kills
        for fault in ["pg"] * pg_restarts + ["broker"] * broker_restarts + ["freeze"] * freezes:
            plan.insert(self.rng.randrange(1, len(plan) + 1) if plan else 0, fault)
        return plan

    def inflict(self, fault: str) -> None:
        {"kill": self.kill_worker, "pg": self.restart_postgres, "broker": self.restart_broker,
         "freeze": self.freeze_relay}[fault]()

    def kill_worker(self) -> None:
        name = self.rng.choice(sorted(self.fleet.members))
        pid = self.fleet.kill(name)
        self.fleet.start(name)
        self.tally.kills += 1
        role = self.fleet.members[name].role
        self.tally.by_role[role] = self.tally.by_role.get(role, 0) + 1
        self.say(f"kill -9 {name} (pid {pid}); started again as pid {self.fleet.pid(name)}")

    def restart_postgres(self) -> None:
        self.say("PostgreSQL: pg_ctl stop -m immediate")
        self.stack.restart_postgres_immediately()
        self.tally.pg_restarts += 1
        self.say("PostgreSQL: started again (crash recovery done), durable: "
                 f"{self.stack.durable()}")

    def restart_broker(self) -> None:
        pid = self.stack.kill_broker()
        self.say(f"broker: kill -9 (pid {pid})")
        self.stack.start_broker()
        self.tally.broker_restarts += 1
        self.say("broker: started again and answering")

    def freeze_relay(self) -> None:
        name, backend = self._leading_relay()
        proxy = self.proxies[name]
        proxy.freeze()
        self.say(f"freeze: {name}'s database connection frozen (lock held by backend {backend})")
        try:
            if backend is not None:
                wait(lambda: backend not in self._holders(), FREEZE_DEADLINE_S,
                     f"the server to end the frozen relay session {backend}")
                self.say(f"freeze: the server ended backend {backend}; the relay lock is free for a standby")
                wait(lambda: self._holders(), FREEZE_DEADLINE_S, "another relay to take the lock")
                self.say(f"freeze: relay lock now held by backend(s) {sorted(self._holders())}")
        finally:
            proxy.restore()
            self.tally.freezes += 1
            self.say(f"freeze: {name}'s connection restored")

    def _holders(self) -> dict[int, int]:
        with psycopg.connect(self.pipeline.dsn, connect_timeout=5) as conn:
            return {pid: port for pid, port in conn.execute(_LOCK_HOLDERS).fetchall()}

    def _leading_relay(self) -> tuple[str, int | None]:
        """The relay whose proxied connection holds the lock (relay-0 and no backend when none does)."""
        holders = wait(self._holders, FREEZE_DEADLINE_S, "a relay to hold the lock")
        for backend, port in holders.items():
            for name, proxy in self.proxies.items():
                if port in proxy.upstream_ports():
                    return name, backend
        return sorted(self.proxies)[0], None
