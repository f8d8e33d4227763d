"""Progress of a long command: a bar redrawn in place (`\\r`) on a terminal's stderr, or one log line (JSON when
logs are JSON) every few seconds otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

_WIDTH = 30


class Progress:
    def __init__(self, what: str, *, terminal: bool, log: logging.Logger, every_s: float = 5.0,
                 stream: TextIO | None = None) -> None:
        self._what = what
        self._terminal = terminal
        self._log = log
        self._every_s = every_s
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._shown_at = -1e18
        self._drawn = False

    @staticmethod
    def on_terminal(json_requested: bool) -> bool:
        return not json_requested and sys.stderr.isatty()

    def rate(self, done: int) -> float:
        return done / max(time.monotonic() - self._started, 1e-6)

    def update(self, done: int, total: int | None = None, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown_at < (0.2 if self._terminal else self._every_s):
            return
        self._shown_at = now
        rate = self.rate(done)
        if self._terminal:
            if total:
                filled = min(_WIDTH, _WIDTH * done // total)
                bar = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {done:,}/{total:,} {100 * done // total:3d}%"
            else:
                bar = f"{done:,} records"
            self._stream.write(f"\r{self._what}: {bar}  {rate:,.0f}/s ")
            self._stream.flush()
            self._drawn = True
            if final:
                self._stream.write("\n")
            return
        self._log.info("%s: %d of %s records (%.0f/s)", self._what, done, total if total else "?", rate,
                       extra={"progress_done": done, "progress_total": total, "records_per_s": round(rate, 1),
                              "final": final})
