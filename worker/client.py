"""A small client of the contract: send commands, read their results. The CLI and the tests
use it; an ERP would do the same with its own Kafka client."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.commands import CommandName
from worker.config import Settings
from worker.transport.decoding import COMMAND_ID_HEADER
from worker.transport.kafka_clients import RECORD_OVERHEAD, security_options


async def assign_whole_topic(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Assign every partition of `topic` to a group-less consumer (waiting for its metadata)."""
    partitions = consumer.partitions_for_topic(topic)
    while not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    return tps


async def read_topic(settings: Settings, topic: str, count: int, timeout: float) -> list[Any]:
    """The first `count` committed records of `topic` (fewer if `timeout` seconds pass)."""
    consumer = AIOKafkaConsumer(
        **security_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=settings.message_max_bytes + RECORD_OVERHEAD,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        tps = await assign_whole_topic(consumer, topic)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            found.extend(r for records in batch.values() for r in records)
    finally:
        await consumer.stop()
    return found


def command_topic(settings: Settings, name: CommandName) -> str:
    return {v: k for k, v in settings.command_topics().items()}[name]


class CommandClient:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            **security_options(settings),
            acks="all",
            enable_idempotence=True,
            max_request_size=settings.message_max_bytes + RECORD_OVERHEAD,
            linger_ms=5,
        )
        self._consumer = AIOKafkaConsumer(
            **security_options(settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self.results: dict[str, dict[str, Any]] = {}
        self.result_counts: dict[str, int] = {}

    async def start(self) -> None:
        """Start, reading the results topic from its current end."""
        await self._producer.start()
        await self._consumer.start()
        partitions = self._consumer.partitions_for_topic(self._settings.topic_results)
        while not partitions:
            await self._consumer._client.force_metadata_update()
            partitions = self._consumer.partitions_for_topic(self._settings.topic_results)
        tps = [TopicPartition(self._settings.topic_results, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end now, before any command is sent
            await self._consumer.position(tp)

    async def stop(self) -> None:
        await self._producer.stop()
        await self._consumer.stop()

    async def __aenter__(self) -> CommandClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def send_raw(
        self,
        name: CommandName,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        await self._producer.send_and_wait(
            command_topic(self._settings, name), value, key=key, headers=headers or []
        )

    async def send(
        self, name: CommandName, body: dict[str, Any], key: str | None = None, wait: bool = True
    ) -> str:
        """Send `body` as a `name` command; returns its command id (a new one unless given)."""
        body = dict(body)
        command_id = str(body.setdefault("commandId", str(uuid.uuid4())))
        if key is None:
            variant = body.get("variantId", body.get("variant_id"))
            key = variant if isinstance(variant, str) else None
        value = json.dumps(body, ensure_ascii=False).encode("utf-8")
        topic = command_topic(self._settings, name)
        encoded_key = key.encode("utf-8") if key is not None else None
        if wait:
            await self._producer.send_and_wait(topic, value, key=encoded_key)
        else:
            await self._producer.send(topic, value, key=encoded_key)
        return command_id

    async def flush(self) -> None:
        await self._producer.flush()

    async def collect(self, timeout: float = 0.5) -> int:
        """Read what has arrived on the results topic; returns how many results came."""
        batch = await self._consumer.getmany(timeout_ms=int(timeout * 1000), max_records=10_000)
        count = 0
        for records in batch.values():
            for record in records:
                headers = dict(record.headers or ())
                raw_id = headers.get(COMMAND_ID_HEADER)
                command_id = raw_id.decode("utf-8") if raw_id is not None else ""
                self.results[command_id] = json.loads(record.value)
                self.result_counts[command_id] = self.result_counts.get(command_id, 0) + 1
                count += 1
        return count

    async def wait_for(self, command_ids: Iterable[str], timeout: float = 30.0) -> dict[str, Any]:
        """The results of `command_ids`, waiting up to `timeout` seconds for them all."""
        wanted = set(command_ids)
        deadline = time.monotonic() + timeout
        while not wanted <= self.results.keys():
            if time.monotonic() > deadline:
                missing = sorted(wanted - self.results.keys())
                raise TimeoutError(f"no result after {timeout}s for {len(missing)}: {missing[:5]}")
            await self.collect(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
        return {cid: self.results[cid] for cid in wanted}

    async def request(
        self, name: CommandName, body: dict[str, Any], timeout: float = 30.0
    ) -> dict[str, Any]:
        command_id = await self.send(name, body)
        result: dict[str, Any] = (await self.wait_for([command_id], timeout))[command_id]
        return result
