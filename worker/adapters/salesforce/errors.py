"""Typed parse errors of the Salesforce anti-corruption layer; each carries the reason it is dead-lettered for."""

from __future__ import annotations


class ChangeEventParseError(Exception):
    """A CDC message this worker cannot turn into a change event."""


class UnparseableChangeEvent(ChangeEventParseError):
    """The bytes are not valid JSON / Avro for the format."""


class UnsupportedFormat(ChangeEventParseError):
    """Valid data, but none of the supported CDC formats."""


class UnknownSchema(ChangeEventParseError):
    """The writer schema for this schema id is not available (yet): replay once it is."""


class InvalidChangeEvent(ChangeEventParseError):
    """The format is recognised but a required part is missing or malformed."""
