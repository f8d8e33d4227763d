"""A real IngestProcessor (real CdcDecoder, bus and unit of work) over an event store in memory."""

from __future__ import annotations

from tests.fakes.event_store import MemoryStore
from worker.adapters.salesforce.decoder import CdcDecoder
from worker.adapters.salesforce.errors import ChangeEventParseError
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver
from worker.application.bus import CommandBus, default_middleware
from worker.application.unit_of_work import ClientBatch
from worker.domain import StatusRule
from worker.roles.ingest import IngestProcessor

TOPIC = "salesforce.cdc.account"


class Message:
    """A consumed Kafka record (the KafkaMessage protocol)."""

    def __init__(self, value: bytes, offset: int, key: bytes | None = None, partition: int = 0,
                 headers: list[tuple[str, bytes | None]] | None = None) -> None:
        self._value, self._offset, self._key, self._partition = value, offset, key, partition
        self._headers = headers or []

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> list[tuple[str, bytes | None]]:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)

    def error(self) -> None:
        return None


def messages(*changes: tuple[bytes, bytes], start: int = 0) -> list[Message]:
    return [Message(value, start + n, key) for n, (key, value) in enumerate(changes)]


def processor(store: MemoryStore, bus: CommandBus | None = None) -> IngestProcessor:
    decoder = CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto", own_client_id=None)
    return IngestProcessor(
        decoder, (ChangeEventParseError,), bus or CommandBus(middleware=default_middleware()),
        lambda: ClientBatch(store, snapshot_interval=100, worker_version="test"), StatusRule(),
    )
