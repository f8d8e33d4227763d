"""The configured cluster's administration as one object: the worker's topics and its consumer groups (what
`worker topics`, `offsets`, `replay`, `lag` and `projections rebuild` ask of Kafka)."""

from __future__ import annotations

from typing import Any

from worker.adapters.kafka import admin, groups
from worker.adapters.kafka.admin import TopicOutcome
from worker.adapters.kafka.groups import GroupInfo
from worker.config import KafkaSettings


class KafkaAdmin:
    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka

    def create_worker_topics(self) -> list[TopicOutcome]:
        """Create the input, events and dead-letter topics that are missing; report partition mismatches."""
        return admin.create_topics(admin.admin_client(self._kafka), admin.worker_topics(self._kafka))

    def describe_group(self, group: str) -> GroupInfo:
        return groups.describe_group(self._kafka, group)

    def active_members(self, group: str) -> list[str]:
        return groups.active_members(self._kafka, group)

    def partition_lag(self, group: str, topic: str) -> list[dict[str, Any]]:
        return groups.partition_lag(self._kafka, group, topic)

    def committed(self, group: str, topic: str) -> dict[int, int | None]:
        return groups.committed(self._kafka, group, topic)

    def earliest(self, topic: str) -> dict[int, int]:
        return groups.earliest(self._kafka, topic)

    def latest(self, topic: str) -> dict[int, int]:
        return groups.latest(self._kafka, topic)

    def offsets_for_time(self, topic: str, timestamp_ms: int) -> dict[int, int | None]:
        return groups.offsets_for_time(self._kafka, topic, timestamp_ms)

    def alter(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        groups.alter(self._kafka, group, topic, offsets)
