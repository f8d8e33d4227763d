"""The command bus: a list of middleware `(command, ctx, call_next)` composed once around the handler."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from worker.application.commands import Command
from worker.application.errors import InvalidCommand
from worker.application.handlers import HANDLERS, Handler, HandlerContext
from worker.application.validation import VALIDATORS, Validator

Next = Callable[[Command, HandlerContext], int]
Middleware = Callable[[Command, HandlerContext, Next], int]

log = logging.getLogger("worker.commands")


class CommandBus:
    def __init__(
        self,
        handlers: Mapping[type[Command], Handler] = HANDLERS,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self._handlers = dict(handlers)
        chain: Next = self._dispatch
        for layer in reversed(middleware):
            chain = _bind(layer, chain)
        self._chain = chain

    def handle(self, command: Command, ctx: HandlerContext) -> int:
        """Run the command through the middleware; return the number of events recorded."""
        return self._chain(command, ctx)

    def _dispatch(self, command: Command, ctx: HandlerContext) -> int:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise LookupError(f"no handler for {type(command).__name__}")
        return handler(command, ctx)


def _bind(layer: Middleware, call_next: Next) -> Next:
    def run(command: Command, ctx: HandlerContext) -> int:
        return layer(command, ctx, call_next)

    return run


def structural_validation(command: Command, ctx: HandlerContext, call_next: Next) -> int:
    """Validate commands that were built without validation (`model_construct`, replays); a command its
    constructor validated is not validated twice."""
    if not command.validated:
        type(command).model_validate(command.model_dump())
    return call_next(command, ctx)


def business_validation(validators: Mapping[type[Command], Validator] = VALIDATORS) -> Middleware:
    def validate(command: Command, ctx: HandlerContext, call_next: Next) -> int:
        validator = validators.get(type(command))
        problems = validator(command) if validator else []
        if problems:
            raise InvalidCommand(type(command).__name__, problems)
        return call_next(command, ctx)

    return validate


def observed(record: Callable[[str, str, float, int], None]) -> Middleware:
    """Report each command's type, outcome, duration and events appended (metrics, logs, traces)."""

    def observe(command: Command, ctx: HandlerContext, call_next: Next) -> int:
        started = time.perf_counter()
        outcome, events = "error", 0
        try:
            events = call_next(command, ctx)
            outcome = "ok" if events else "noop"
            return events
        finally:
            record(type(command).__name__, outcome, time.perf_counter() - started, events)

    return observe


def default_middleware(record: Callable[[str, str, float, int], None] | None = None) -> list[Middleware]:
    layers: list[Middleware] = [structural_validation, business_validation()]
    if record is not None:
        layers.insert(0, observed(record))
    return layers


