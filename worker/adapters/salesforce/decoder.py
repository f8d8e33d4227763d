"""CdcDecoder: one CDC message (bytes + headers) -> the commands it asks for. Parse (the wire formats) and
translate (Salesforce's terms -> the client's) in one named step, so the ingest role never sees Salesforce."""

from __future__ import annotations

from worker.adapters.kafka.types import KafkaMessage, header_dict
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
        headers = header_dict(message)
        event = parse(message.value() or b"", headers, fmt=self._format, schemas=self._schemas)
        coordinates = KafkaCoordinates(
            topic=message.topic() or "", partition=message.partition() or 0, offset=message.offset() or 0,
            traceparent=(headers.get("traceparent") or b"").decode() or None,
        )
        result = translate(event, coordinates, mapping=self._mapping, own_client_id=self._own_client_id)
        return Decoded(list(result.commands), result.skipped)
