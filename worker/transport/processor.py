"""Consume, apply, produce: commands in, one result per command out, offsets in the same
Kafka transaction as the results.

A batch from `getmany` is applied partition by partition (in order within a partition, the
partitions side by side), a partition's commands in one PostgreSQL transaction (each command
all or nothing within it, see `CommandService.apply_batch`). Then one Kafka transaction per
partition publishes the partition's results and dead-letter copies together
with its consumed offset. A crash anywhere before that commit redelivers the records; the
command log in PostgreSQL makes the second application a replay of the stored result.

Each command partition has a transactional producer of its own, with a transactional id made
of the group and the partition (`transactional_id`), so that the worker that owns a partition
fences every earlier owner of it. aiokafka cannot tie an offset commit to the consumer group's
generation (its TxnOffsetCommit has no generation, and its OffsetFetch cannot ask for stable
offsets: KIP-447 is not implemented), so ownership is proved the older way, as Kafka Streams'
first exactly-once mode did. Taking a partition (`_take_assigned`, before any of its records
is applied):

1. start its producer: InitProducerId on the partition's transactional id waits for the
   previous owner's commit, if one is under way, to complete, aborts its open transaction if
   any, and fences it, so that nothing it still holds can be committed afterwards (a worker
   paused past its session timeout, or a rebalance that gave the partition away while a batch
   was in hand);
2. only then read the partition's committed offset, which is now stable, and seek to it;
3. answer only records at or after that offset (`next_offset`, advanced at each commit), so
   that records fetched before the seek are never answered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from schemas.fields import LIMITS
from schemas.results import ErrorCode, ErrorInfo, encode_result
from worker.config import Settings
from worker.domain.ports import StorageUnavailable
from worker.domain.service import CommandService, IncomingCommand, failure
from worker.transport.decoding import COMMAND_ID_HEADER, Rejected, decode_command
from worker.transport.kafka_clients import result_producer, transactional_id
from worker.transport.records import OutgoingRecord, SourceRecord

log = structlog.get_logger(__name__)

ProducerFactory = Callable[[Settings, str], AIOKafkaProducer]

# How long starting a partition's producer may take (finding the transaction coordinator,
# waiting for the previous owner's transaction to end) before the worker starts afresh.
PRODUCER_START_TIMEOUT = 60.0


class TransactionFailed(Exception):
    """The Kafka transaction could not be committed; the batch will be delivered again."""


@dataclass
class _Owned:
    """A command partition this worker has taken: its producer, and the first offset whose
    record has not been answered (the committed offset)."""

    producer: AIOKafkaProducer
    next_offset: int


class _TakeAndRelease(ConsumerRebalanceListener):  # type: ignore[misc]
    """Revocation waits for the batch in hand (so that its offsets commit while this worker
    still owns the partitions) and lets the partitions' producers go; assigned partitions
    are taken by the processing loop before their records are applied."""

    def __init__(self, processor: CommandProcessor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._processor.release(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # No waiting here: aiokafka sends no heartbeat until this returns.
        self._processor.assigned(set(assigned))


def _retrieve_exception(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)


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
        service: CommandService,
        producer_factory: ProducerFactory = result_producer,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._service = service
        self._producer_factory = producer_factory
        self._command_topics = settings.command_topics()
        self._lock = asyncio.Lock()
        self._owned: dict[TopicPartition, _Owned] = {}
        self._to_take: set[TopicPartition] = set()
        self.rebalance_listener = _TakeAndRelease(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until `stop` is set; the batch in hand is finished first."""
        while not stop.is_set():
            if self._to_take:
                async with self._lock:
                    await self._take_assigned()
            batch = await self._consumer.getmany(
                timeout_ms=200, max_records=self._settings.kafka_max_batch_records
            )
            if not batch:
                continue
            async with self._lock:
                taken = await self._take_assigned()
                # A partition taken just now was sought to its committed offset: its records
                # in this batch were fetched before, and are fetched again.
                batch = {tp: records for tp, records in batch.items() if tp not in taken}
                await self.process_batch(batch, stop)

    async def process_batch(
        self, batch: dict[TopicPartition, list[object]], stop: asyncio.Event
    ) -> None:
        work: dict[TopicPartition, list[object]] = {}
        for tp, records in batch.items():
            owned = self._owned.get(tp)
            if owned is None:  # revoked since it was fetched: its new owner answers it
                with contextlib.suppress(IllegalStateError):  # (or fetched again, if ours)
                    self._consumer.seek(tp, records[0].offset)  # type: ignore[attr-defined]
                log.info("records_of_a_revoked_partition", partition=str(tp), records=len(records))
                continue
            fresh = [r for r in records if r.offset >= owned.next_offset]  # type: ignore[attr-defined]
            if len(fresh) < len(records):  # never expected: the position is past them
                log.warning(
                    "records_already_answered", partition=str(tp), skipped=len(records) - len(fresh)
                )
            if fresh:
                work[tp] = fresh
        outcomes = await asyncio.gather(
            *(self._process_partition(tp, records, stop) for tp, records in work.items()),
            return_exceptions=True,
        )
        for outcome in outcomes:  # every partition has finished or failed: raise the first
            if isinstance(outcome, BaseException):
                raise outcome
        log.debug("batch_committed", records=sum(len(r) for r in work.values()))

    async def _process_partition(
        self, tp: TopicPartition, records: list[object], stop: asyncio.Event
    ) -> None:
        outgoing = await self._apply_partition([source_record(r) for r in records], stop)
        next_offset = records[-1].offset + 1  # type: ignore[attr-defined]
        owned = self._owned[tp]
        await self._publish(owned.producer, outgoing, {tp: OffsetAndMetadata(next_offset, "")})
        owned.next_offset = next_offset

    async def _apply_partition(
        self, records: list[SourceRecord], stop: asyncio.Event
    ) -> list[OutgoingRecord]:
        """The partition's commands in one database transaction (`apply_batch`); if that
        fails other than by an outage, one by one, so that a defect answers its command only."""
        decoded = [
            decode_command(r, self._command_topics[r.topic], self._settings.message_max_bytes)
            for r in records
        ]
        commands = [d for d in decoded if isinstance(d, IncomingCommand)]
        bodies: list[bytes | None] = [None] * len(commands)
        try:
            bodies = [*await self._apply_batch_until_stored(commands, stop)]
        except StorageUnavailable:
            raise
        except Exception:
            log.exception("batch_failed_applying_one_by_one", commands=len(commands))
        answered = dict(zip(map(id, commands), bodies, strict=True))
        out: list[OutgoingRecord] = []
        for record, command in zip(records, decoded, strict=True):
            body = answered.get(id(command))
            if body is None:  # rejected, or the batch failed: the one-command path
                out.extend(await self._answer(record, stop))
            else:
                out.append(self._result(record, command.command_id, body))
        return out

    async def _apply_batch_until_stored(
        self, commands: list[IncomingCommand], stop: asyncio.Event
    ) -> list[bytes]:
        """`apply_batch`, waiting out a database outage (never answering because of one)."""
        delay = 0.1
        while True:
            try:
                return await self._service.apply_batch(commands)
            except StorageUnavailable as exc:
                if stop.is_set():
                    raise
                log.warning("database_unavailable", commands=len(commands), error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.database_retry_max_seconds)

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
            # A key over the limit (refused by decode_command) is not echoed: it could make the
            # result larger than the results topic takes, and the batch would never commit.
            key=record.key if len(record.key or b"") <= LIMITS.record_key_bytes else None,
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
        self,
        producer: AIOKafkaProducer,
        records: list[OutgoingRecord],
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        sends: list[asyncio.Future[object]] = []
        try:
            async with producer.transaction():
                for r in records:
                    sends.append(
                        await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                    )
                await producer.send_offsets_to_transaction(offsets, self._settings.kafka_group_id)
            await asyncio.gather(*sends)
        except KafkaError as exc:
            for send in sends:  # they fail with the transaction: nothing more to say of them
                send.add_done_callback(_retrieve_exception)
            raise TransactionFailed(f"{type(exc).__name__}: {exc}") from exc

    # ------------------------------------------------------------------ partition ownership

    def assigned(self, partitions: set[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=_names(partitions))
        self._to_take |= partitions

    async def _take_assigned(self) -> set[TopicPartition]:
        """Take the partitions assigned since the last call (see the module's docstring);
        returns them."""
        if not self._to_take:
            return set()
        partitions, self._to_take = sorted(self._to_take), set()
        results = await asyncio.gather(
            *(self._take(tp) for tp in partitions), return_exceptions=True
        )
        failed = [
            (tp, r)
            for tp, r in zip(partitions, results, strict=True)
            if isinstance(r, BaseException)
        ]
        if failed:
            tp, exc = failed[0]
            raise TransactionFailed(
                f"could not take {len(failed)} partitions, first {tp}: {type(exc).__name__}: {exc}"
            ) from exc
        log.info("partitions_taken", partitions=len(partitions))
        return set(partitions)

    async def _take(self, tp: TopicPartition) -> None:
        producer = self._producer_factory(self._settings, transactional_id(self._settings, tp))
        try:
            # Fences the previous owner, and completes or aborts its last transaction.
            await asyncio.wait_for(producer.start(), PRODUCER_START_TIMEOUT)
            committed = await self._consumer.committed(tp)  # stable now
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        # Nothing ever committed: nothing was ever answered, start from the beginning (offset
        # 0, or the log's start if retention deleted it: auto_offset_reset is earliest).
        next_offset = 0 if committed is None else committed
        self._consumer.seek(tp, next_offset)  # records fetched before are fetched again
        self._owned[tp] = _Owned(producer, next_offset)

    async def release(self, partitions: set[TopicPartition]) -> None:
        """Let `partitions` go, once the batch in hand is committed (or given up)."""
        async with self._lock:
            self._to_take -= partitions
            released = [self._owned.pop(tp) for tp in partitions if tp in self._owned]
            await self._stop_producers(released)
            log.info("partitions_revoked", partitions=_names(partitions))

    async def close(self) -> None:
        """Stop every producer (the worker is stopping or starting afresh)."""
        released, self._owned = list(self._owned.values()), {}
        self._to_take = set()
        await self._stop_producers(released)

    @staticmethod
    async def _stop_producers(owned: list[_Owned]) -> None:
        results = await asyncio.gather(*(o.producer.stop() for o in owned), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("producer_stop_failed", error=repr(result))
