"""Salesforce record ids: 15-character ids normalised to their 18-character form."""

from __future__ import annotations

import re

from worker.adapters.salesforce.errors import InvalidChangeEvent

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")
OVERFLOW_ID = "000000000000000AAA"


def is_wildcard(record_id: str) -> bool:
    """`001*`: a key prefix and a star (custom field type conversions: every record changed)."""
    return record_id.endswith("*")


def normalize_id(record_id: str) -> str:
    """The 18-character form; the suffix encodes the case of the 15 characters, 5 bits per block of 5."""
    if not isinstance(record_id, str) or not _ID.match(record_id):
        raise InvalidChangeEvent(f"not a Salesforce record id: {record_id!r}")
    if len(record_id) == 18:
        return record_id
    suffix = ""
    for block in range(3):
        chunk = record_id[block * 5 : block * 5 + 5]
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        suffix += _ALPHABET[bits]
    return record_id + suffix
