"""Is the PostgreSQL server durable? An acknowledged commit must survive a crash of the server, or the Kafka offsets
committed after it point past changes that are gone.

Three server settings decide it: `fsync` and `full_page_writes` off risk corruption and loss on a crash;
`synchronous_commit = off` acknowledges commits before they reach the disk (the last ones vanish on a crash).
`local`, `remote_write`, `remote_apply` and `on` all flush locally before acknowledging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import psycopg

SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")
_UNSAFE = {"fsync": {"off"}, "synchronous_commit": {"off"}, "full_page_writes": {"off"}}
_READ = "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)"


@dataclass(frozen=True)
class Durability:
    settings: Mapping[str, str]

    @property
    def unsafe(self) -> list[str]:
        """`name=value` of each setting that loses acknowledged commits on a crash, in SETTINGS order."""
        return [f"{name}={self.settings[name]}" for name in SETTINGS
                if self.settings.get(name, "").lower() in _UNSAFE[name]]

    @property
    def durable(self) -> bool:
        return not self.unsafe

    def describe(self) -> str:
        if self.durable:
            return "durable (" + ", ".join(f"{n}={self.settings.get(n, '?')}" for n in SETTINGS) + ")"
        return "NOT durable: " + ", ".join(self.unsafe) + " (acknowledged commits can be lost on a server crash)"


def read_durability(dsn: str, timeout_s: float) -> Durability:
    """The server's settings (what SHOW answers), read over a short-lived connection: the pools stay unopened."""
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
        rows = conn.execute(_READ, (list(SETTINGS),)).fetchall()
    return Durability({str(name): str(value) for name, value in rows})
