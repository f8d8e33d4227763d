"""The decoder: a CDC message (bytes, headers, coordinates) to commands, with its trace's parent."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cdc_factory import CdcFactory
from tests.fakes.kafka import OffsetMessage
from worker.adapters.salesforce.decoder import CdcDecoder
from worker.adapters.salesforce.mapping import FieldMapping
from worker.adapters.salesforce.schemas import SchemaResolver

A = "001000000000001AAA"
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def decode(headers: Any) -> Any:
    key, value = CdcFactory().update(A, Phone="1")
    message = OffsetMessage(partition_=3, offset_=7, topic_="cdc", value_=value, key_=key, headers_=headers)
    decoder = CdcDecoder(SchemaResolver(), FieldMapping.from_overrides(), cdc_format="auto", own_client_id=None)
    [command] = decoder(message).commands
    return command.change


@pytest.mark.parametrize(("headers", "expected"), [
    ([("traceparent", PARENT.encode())], PARENT),
    ([("traceparent", b"00-first"), ("other", b"x"), ("traceparent", PARENT.encode())], PARENT),  # the last
    ([("traceparent", PARENT.encode()), ("traceparent", None)], PARENT),  # a null header is no header
    ([("traceparent", b"")], None),
    ([], None),
    (None, None),
    # not UTF-8: the trace starts anew (OpenTelemetry ignores an invalid parent); the change is applied
    ([("traceparent", b"00-\xff\xfe-01")], "00-\ufffd\ufffd-01"),
])
def test_the_trace_parent_is_the_last_traceparent_header_and_bad_bytes_fail_no_message(
        headers: Any, expected: str | None) -> None:
    change = decode(headers)
    assert change.traceparent == expected
    assert (change.source_topic, change.source_partition, change.source_offset) == ("cdc", 3, 7)
    assert change.causation_id == "cdc:3:7"
