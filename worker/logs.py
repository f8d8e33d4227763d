"""Logging set-up at the edge: JSON lines, or human text when attached to a terminal."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("worker_log_context", default={})  # noqa: B039 (never mutated)


@contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Fields every log line written inside carries (correlation and causation ids, client id, source)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


_LAZY: ContextVar[Callable[[], dict[str, Any]] | None] = ContextVar("worker_log_lazy", default=None)


def push_lazy(fields: Callable[[], dict[str, Any]]) -> Token[Callable[[], dict[str, Any]] | None]:
    """Like `context`, for a hot path: `fields` is called only when a line is written. Undo with `pop_lazy`."""
    return _LAZY.set(fields)


def pop_lazy(token: Token[Callable[[], dict[str, Any]] | None]) -> None:
    _LAZY.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        lazy = _LAZY.get()
        fields = {**lazy(), **_CONTEXT.get()} if lazy is not None else _CONTEXT.get()
        for key, value in fields.items():
            if value is not None and not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """For a terminal: the message, then the context fields as key=value."""

    _SKIP = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in record.__dict__.items() if k not in self._SKIP)
        return f"{text}  [{extra}]" if extra else text


class JsonFormatter(logging.Formatter):
    _SKIP = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(level: str = "INFO", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kafka").setLevel(logging.WARNING)


# --- librdkafka: its log lines and its errors, as JSON lines, repeats counted --------------------------------

LIBRDKAFKA = logging.getLogger("worker.kafka.librdkafka")  # librdkafka's own lines (`logger` of every client)
KAFKA_CLIENT = logging.getLogger("worker.kafka.client")  # error_cb, and the summaries of repeats
_VOLATILE = re.compile(r"\[thrd:[^\]]*\]:\s*|\(after \d+ms in state \w+[^)]*\)|\d+")


class Repeats:
    """One line for the first of a kind; repeats are counted and summed up once per `every_s` (one line per kind);
    a kind not seen for a whole period is over, which is logged too. A broker outage thus gives a line when it
    starts, when its nature changes, a summary a minute, and a line when it is over, not a line per retry."""

    def __init__(self, logger: logging.Logger, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 timer: bool = True) -> None:
        self._log = logger
        self._every_s = every_s
        self._clock = clock
        self._timer = timer
        self._kinds: dict[str, list[Any]] = {}  # key -> [text, repeats this period, last seen]
        self._lock = threading.Lock()
        self._started = False

    def first(self, key: str, text: str) -> bool:
        """True when `key` starts a new state (the caller logs it); False for a repeat, which is counted."""
        with self._lock:
            kind = self._kinds.get(key)
            if kind is None:
                self._kinds[key] = [text, 0, self._clock()]
                if self._timer and not self._started:
                    self._started = True
                    threading.Thread(target=self._run, name="kafka-log-summary", daemon=True).start()
                return True
            kind[1] += 1
            kind[2] = self._clock()
            return False

    def summarize(self) -> None:
        now = self._clock()
        lines: list[tuple[str, tuple[Any, ...]]] = []
        with self._lock:
            for key, (text, repeats, last) in list(self._kinds.items()):
                if repeats:
                    lines.append(("%d more in the last %.0fs: %s", (repeats, self._every_s, text)))
                    self._kinds[key][1] = 0
                elif now - last >= self._every_s:
                    del self._kinds[key]
                    lines.append(("not seen for %.0fs, over: %s", (now - last, text)))
        for fmt, args in lines:
            self._log.warning(fmt, *args)

    def _run(self) -> None:
        while True:
            time.sleep(self._every_s)
            self.summarize()


def _kind(text: str) -> str:
    """What stays of a librdkafka message once thread names, timings and numbers (ports, ids, counts) are gone."""
    return _VOLATILE.sub("#", text)


class RepeatFilter(logging.Filter):
    """Lets through the first of each kind of librdkafka line (client names and numbers aside)."""

    def __init__(self, repeats: Repeats) -> None:
        super().__init__()
        self._repeats = repeats

    def filter(self, record: logging.LogRecord) -> bool:
        # confluent-kafka logs ("%s [%s] %s", facility, client name, message)
        args = record.args if isinstance(record.args, tuple) else ()
        text = record.getMessage()
        key = f"{record.levelno}:{args[0]}:{_kind(str(args[2]))}" if len(args) == 3 else _kind(text)
        return self._repeats.first("log:" + key, text)


class KafkaErrors:
    """A librdkafka `error_cb`: fatal errors always logged, others once per kind with repeats summed up."""

    def __init__(self, repeats: Repeats) -> None:
        self._repeats = repeats

    def __call__(self, error: Any) -> None:
        text = f"{error.name()}: {error.str()}"
        if error.fatal():
            KAFKA_CLIENT.error("fatal kafka client error %s", text, extra={"kafka_error": error.name()})
        elif self._repeats.first(f"error:{error.name()}:{_kind(error.str())}", text):
            KAFKA_CLIENT.warning("kafka client error %s (repeats are summed up every minute)", text,
                                 extra={"kafka_error": error.name()})

    def __repr__(self) -> str:  # client configs are compared by repr (cached admin clients): keep it stable
        return "KafkaErrors()"


_REPEATS = Repeats(KAFKA_CLIENT)
_ERRORS = KafkaErrors(_REPEATS)
LIBRDKAFKA.addFilter(RepeatFilter(_REPEATS))


def kafka_client_logging() -> dict[str, Any]:
    """librdkafka settings for every client: its lines through our logger (not `%4|...` on stderr), its errors
    through one de-duplicating `error_cb`."""
    return {"logger": LIBRDKAFKA, "error_cb": _ERRORS}
