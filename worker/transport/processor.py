"""Consume, apply, produce: commands in, one result per command out, offsets in the same
Kafka transaction as the results.

A batch from `getmany` is applied partition by partition (in order within a partition, the
partitions side by side), each command in its own PostgreSQL transaction. Only then does one
Kafka transaction publish every result and dead-letter copy of the batch together with the
consumed offsets. A crash anywhere before that commit redelivers the batch; the command log in
PostgreSQL makes the second application a replay of the stored result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from schemas.results import ErrorCode, ErrorInfo, encode_result
from worker.config import Settings
from worker.domain.ports import StorageUnavailable
from worker.domain.service import CommandService, IncomingCommand, failure
from worker.transport.decoding import COMMAND_ID_HEADER, Rejected, decode_command
from worker.transport.records import OutgoingRecord, SourceRecord

log = structlog.get_logger(__name__)


class TransactionFailed(Exception):
    """The Kafka transaction could not be committed; the batch will be delivered again."""


class _HoldBatchOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance waits for the batch in hand, so its offsets commit under the old owner."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        async with self._lock:
            log.info("partitions_revoked", partitions=sorted(str(tp) for tp in revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=sorted(str(tp) for tp in assigned))


def source_record(record: object) -> SourceRecord:
    return SourceRecord(
        topic=record.topic,  # type: ignore[attr-defined]
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=record.value,  # type: ignore[attr-defined]
        headers=list(record.headers or ()),  # type: ignore[attr-defined]
    )


class CommandProcessor:
    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        service: CommandService,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._service = service
        self._command_topics = settings.command_topics()
        self._lock = asyncio.Lock()
        self.rebalance_listener = _HoldBatchOnRevoke(self._lock)

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until `stop` is set; the batch in hand is finished first."""
        while not stop.is_set():
            batch = await self._consumer.getmany(
                timeout_ms=200, max_records=self._settings.kafka_max_batch_records
            )
            if not batch:
                continue
            async with self._lock:
                await self.process_batch(batch, stop)

    async def process_batch(
        self, batch: dict[TopicPartition, list[object]], stop: asyncio.Event
    ) -> None:
        outputs = await asyncio.gather(
            *(
                self._apply_partition([source_record(r) for r in records], stop)
                for records in batch.values()
            )
        )
        offsets = {
            tp: OffsetAndMetadata(records[-1].offset + 1, "")  # type: ignore[attr-defined]
            for tp, records in batch.items()
        }
        await self._publish([record for output in outputs for record in output], offsets)
        log.debug("batch_committed", records=sum(len(r) for r in batch.values()))

    async def _apply_partition(
        self, records: list[SourceRecord], stop: asyncio.Event
    ) -> list[OutgoingRecord]:
        out: list[OutgoingRecord] = []
        for record in records:
            out.extend(await self._answer(record, stop))
        return out

    async def _answer(self, record: SourceRecord, stop: asyncio.Event) -> list[OutgoingRecord]:
        name = self._command_topics[record.topic]
        decoded = decode_command(record, name, self._settings.message_max_bytes)
        if isinstance(decoded, Rejected):
            log.warning(
                "command_rejected",
                source=record.position,
                command_id=decoded.command_id,
                code=decoded.error.code.value,
                reason=decoded.error.message,
            )
            body = encode_result(failure(decoded.command_id, name.value, decoded.error))
            return [
                self._result(record, decoded.command_id, body),
                self._dead_letter(record, decoded.command_id, decoded.error),
            ]
        try:
            body = await self._apply_until_stored(decoded, stop)
        except StorageUnavailable:
            raise
        except Exception as exc:  # a defect, not the input's fault: answer, keep the copy, go on
            log.exception("command_failed", source=record.position, command_id=decoded.command_id)
            error = ErrorInfo(
                code=ErrorCode.INTERNAL_ERROR,
                message=(
                    f"the worker failed on this {name.value} command ({type(exc).__name__}); "
                    "nothing of it was stored and a copy is on the dead-letter topic for replay"
                ),
            )
            body = encode_result(failure(decoded.command_id, name.value, error))
            return [
                self._result(record, decoded.command_id, body),
                self._dead_letter(record, decoded.command_id, error),
            ]
        return [self._result(record, decoded.command_id, body)]

    async def _apply_until_stored(self, command: IncomingCommand, stop: asyncio.Event) -> bytes:
        """Apply `command`, waiting out a database outage (never answering because of one)."""
        delay = 0.1
        while True:
            try:
                return await self._service.apply(command)
            except StorageUnavailable as exc:
                if stop.is_set():
                    raise
                log.warning(
                    "database_unavailable",
                    command_id=command.command_id,
                    error=str(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.database_retry_max_seconds)

    def _result(self, record: SourceRecord, command_id: str, body: bytes) -> OutgoingRecord:
        return OutgoingRecord(
            topic=self._settings.topic_results,
            key=record.key,
            value=body,
            headers=[(COMMAND_ID_HEADER, command_id.encode("utf-8"))],
        )

    def _dead_letter(
        self, record: SourceRecord, command_id: str, error: ErrorInfo
    ) -> OutgoingRecord:
        """The record untouched (key, value, headers), with why and whence in added headers."""
        value = record.value if record.value is not None else b""
        extra = [
            ("dead-letter-reason", error.message.encode("utf-8")),
            ("dead-letter-code", error.code.value.encode()),
            ("dead-letter-source", record.position.encode("utf-8")),
            ("dead-letter-command-id", command_id.encode("utf-8")),
        ]
        return OutgoingRecord(
            topic=self._settings.topic_dead_letter,
            key=record.key,
            value=value,
            headers=record.headers + extra,
        )

    async def _publish(
        self, records: list[OutgoingRecord], offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        try:
            async with self._producer.transaction():
                sends = [
                    await self._producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                    for r in records
                ]
                await self._producer.send_offsets_to_transaction(
                    offsets, self._settings.kafka_group_id
                )
            await asyncio.gather(*sends)
        except KafkaError as exc:
            raise TransactionFailed(f"{type(exc).__name__}: {exc}") from exc
