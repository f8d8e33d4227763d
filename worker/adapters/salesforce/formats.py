"""Small conversions shared by the formats: ISO dates, Avro-JSON union wrappers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

_NESTING = (dict, list)  # what unwrapping may change; any other value is returned as it is
_AVRO_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string", "array", "map"})


def iso_to_ms(text: str) -> int:
    """`2024-04-09T20:26:27.000Z` (or Salesforce's `+0000`) -> epoch milliseconds."""
    value = text.strip().replace("Z", "+00:00")
    if len(value) >= 5 and value[-5] in "+-" and value[-3] != ":":
        value = value[:-2] + ":" + value[-2:]
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def unwrap_avro_json(value: Any) -> Any:
    """Flatten Avro's JSON-encoding union wrappers: `{"string": "Acme"}` -> `"Acme"`, recursively."""
    if isinstance(value, dict):
        if len(value) == 1:
            (key, inner), = value.items()
            if key in _AVRO_TYPES or "." in key:
                return unwrap_avro_json(inner)
        return {k: unwrap_avro_json(v) if isinstance(v, _NESTING) else v for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_avro_json(v) if isinstance(v, _NESTING) else v for v in value]
    return value
