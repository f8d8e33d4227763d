"""Command groups of the `worker` CLI and what they share (settings overrides, output helpers)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from worker.config import Settings, load_settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class CliError(Exception):
    """An error to print as one line, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_connection_options(parser: argparse.ArgumentParser, *, kafka: bool = True, database: bool = True) -> None:
    if kafka:
        parser.add_argument("--bootstrap-servers", help="override WORKER_KAFKA__BOOTSTRAP_SERVERS")
    if database:
        parser.add_argument("--database-url", help="override WORKER_POSTGRES__URL")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the environment, with the command line's connection overrides applied."""
    settings = load_settings()
    kafka = getattr(args, "bootstrap_servers", None)
    database = getattr(args, "database_url", None)
    if kafka or database:
        data = settings.model_dump()
        if kafka:
            data["kafka"]["bootstrap_servers"] = kafka
        if database:
            data["postgres"]["url"] = database
        settings = load_settings(**data)
    return settings


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str, sort_keys=False)
    sys.stdout.write("\n")


def print_table(rows: Sequence[dict[str, Any]], columns: Iterable[str] | None = None) -> None:
    """A plain aligned table for people; `--json` is for scripts."""
    if not rows:
        print("(none)")
        return
    cols = list(columns) if columns is not None else list(rows[0])
    text = [[_cell(row.get(col)) for col in cols] for row in rows]
    widths = [max(len(col), *(len(r[i]) for r in text)) for i, col in enumerate(cols)]
    print("  ".join(col.upper().ljust(w) for col, w in zip(cols, widths, strict=True)).rstrip())
    for r in text:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
