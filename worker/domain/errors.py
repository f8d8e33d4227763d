"""Domain errors: one base, named after the rule that was broken."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation the domain reports."""


class ForbiddenStatusTransition(DomainError):
    def __init__(self, old: str, new: str) -> None:
        super().__init__(f"status transition {old} -> {new} is not allowed")
        self.old, self.new = old, new


class UnknownAttribute(DomainError):
    def __init__(self, path: str) -> None:
        super().__init__(f"clients have no attribute {path!r}")
        self.path = path


class DiffMismatch(DomainError):
    """A long-text diff does not apply to the stored value, or the result's hash differs."""
