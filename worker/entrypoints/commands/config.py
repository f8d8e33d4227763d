"""`worker config show`: the effective settings, secrets masked, and whether the database is durable."""

from __future__ import annotations

import argparse
from typing import Any

from worker.config import Settings, masked
from worker.entrypoints.commands import print_json, settings_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="show the effective settings")
    sub = parser.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="print the effective settings with secrets masked")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    data = masked(settings)
    database = _durability(settings)
    if args.json:
        print_json({**data, "database": database})
        return 0
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                print(f"WORKER_{section.upper()}__{key.upper()}={_plain(value)}")
        else:
            print(f"WORKER_{section.upper()}={_plain(values)}")
    print(f"# PostgreSQL: {database['detail']}")
    return 0


def _durability(settings: Settings) -> dict[str, Any]:
    """The server's durability settings, or why they could not be read (config show still works offline)."""
    import psycopg

    from worker.adapters.postgres.durability import read_durability

    pg = settings.postgres
    try:
        verdict = read_durability(pg.url.get_secret_value(), min(pg.connect_timeout_s, 3.0))
    except psycopg.Error as exc:
        return {"durable": None, "settings": {}, "detail": f"durability not checked: {_first_line(exc)}"}
    return {"durable": verdict.durable, "settings": dict(verdict.settings), "detail": verdict.describe()}


def _plain(value: object) -> str:
    return "" if value is None else str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
