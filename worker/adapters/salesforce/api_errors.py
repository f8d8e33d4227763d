"""Errors of the Salesforce REST gateway; `transient` tells the failure policy what to do with them."""

from __future__ import annotations


class SalesforceError(Exception):
    transient = False


class SalesforceUnavailable(SalesforceError):
    """Connection error, timeout, 5xx, 429 or REQUEST_LIMIT_EXCEEDED after the retries: wait and try again."""

    transient = True


class CircuitOpen(SalesforceUnavailable):
    """The circuit breaker is open: Salesforce is not called until the reset timeout passes."""


class SalesforceRequestError(SalesforceError):
    """Salesforce refused the request (4xx other than 401/404/429): retrying would not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status, self.code = status, code


class SalesforceAuthError(SalesforceError):
    """The session is invalid and could not be refreshed within the allowed number of logins."""
