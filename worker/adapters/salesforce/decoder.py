"""CdcDecoder: one CDC message (bytes + headers) -> the commands it asks for. Parse (the wire formats) and
translate (Salesforce's terms -> the client's) in one named step, so the ingest role never sees Salesforce."""

from __future__ import annotations

from typing import Any

from worker.adapters.kafka.types import KafkaMessage
from worker.adapters.salesforce.event_parser import parse
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.adapters.salesforce.translator import KafkaCoordinates, translate
from worker.application.ports import Decoded


class CdcDecoder:
    """Raises a ChangeEventParseError (stage parse), a pydantic ValidationError (stage validate) or another
    error of the translator (stage translate); a schema that cannot be fetched now is transient."""

    def __init__(self, schemas: SchemaResolver, mapping: FieldMapping, *, cdc_format: str,
                 own_client_id: str | None) -> None:
        self._schemas = schemas
        self._mapping = mapping
        self._format = cdc_format
        self._own_client_id = own_client_id

    def __call__(self, message: KafkaMessage) -> Decoded:
        headers = message.headers()  # the parser reads them as they come; the trace's parent is the last one
        event = parse(message.value() or b"", headers, fmt=self._format, schemas=self._schemas)
        coordinates = KafkaCoordinates(message.topic() or "", message.partition() or 0, message.offset() or 0,
                                       _traceparent(headers))
        result = translate(event, coordinates, mapping=self._mapping, own_client_id=self._own_client_id)
        return Decoded(list(result.commands), result.skipped)


def _traceparent(headers: Any) -> str | None:
    """The W3C traceparent header as text (the last one when repeated, as `header_dict` reads them), or None.
    Bytes that are not UTF-8 become U+FFFD: an invalid traceparent starts a new trace, it fails no message."""
    found: Any = None
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in items:
        if key == "traceparent" and value is not None:
            found = value
    if found is None:
        return None
    return (found.decode("utf-8", "replace") if isinstance(found, bytes) else str(found)) or None
