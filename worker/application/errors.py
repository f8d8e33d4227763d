"""Application errors: one base, named after what broke."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with each character UTF-8 cannot encode (an unpaired surrogate: a JSON input's "\\ud800" escape
    decodes to one) written as its escape. Error messages quote input (an attribute path, an unmapped field's
    name), and every place they go writes UTF-8: a log line, a dead letter's headers, a test report."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class ApplicationError(Exception):
    """Base of the application layer's errors."""


class ConcurrencyConflict(ApplicationError):
    """Another writer appended to a stream first (the (stream_id, version) key was taken)."""


class InvalidCommand(ApplicationError):
    """Business validation found problems; every problem is listed."""

    def __init__(self, command_type: str, problems: list[str]) -> None:
        self.problems = [printable(problem) for problem in problems]
        super().__init__(f"{command_type}: " + "; ".join(self.problems))


class TransientFailure(ApplicationError):
    """A dependency is unavailable for now: retry later, never dead-letter."""


class SourceUnavailable(TransientFailure):
    """Salesforce cannot be reached or asks us to slow down (5xx, timeouts, REQUEST_LIMIT_EXCEEDED)."""


class SourceAuthFailed(ApplicationError):
    """Salesforce refused our credentials: nothing can be read until an operator fixes them."""


class SourceRefused(ApplicationError):
    """Salesforce refused one request (a 4xx such as INVALID_FIELD or MALFORMED_ID): retrying will not help."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code
