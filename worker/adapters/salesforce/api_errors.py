"""Errors of the Salesforce REST gateway, as the application's source errors; `transient` tells the failure
policy what to do with them."""

from __future__ import annotations

from worker.application.errors import SourceAuthFailed, SourceRefused, SourceUnavailable


class SalesforceError(Exception):
    transient = False


class SalesforceUnavailable(SalesforceError, SourceUnavailable):
    """Connection error, timeout, 5xx, 429, REQUEST_LIMIT_EXCEEDED after the retries, or our own API budget
    share reached: wait and try again."""

    transient = True


class CircuitOpen(SalesforceUnavailable):
    """The circuit breaker is open: Salesforce is not called until the reset timeout passes."""


class SalesforceRequestError(SalesforceError, SourceRefused):
    """Salesforce refused the request (4xx other than 401/404/429): retrying would not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        SourceRefused.__init__(self, f"HTTP {status} {code}: {message}", code)
        self.status = status


class SalesforceAuthError(SalesforceError, SourceAuthFailed):
    """The session is invalid and could not be refreshed within the allowed number of logins."""
