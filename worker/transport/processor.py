"""Consume, apply, produce: commands in, one result per command out, offsets in the same
Kafka transaction as the results.

The consuming loop (`CommandProcessor.run`) fetches records and hands each partition's to the
partition's lane (`worker/transport/lanes.py`), which answers them in order, in batches: a
batch's commands in one PostgreSQL transaction, its results and dead-letter copies in one Kafka
transaction with the partition's offset. The lanes run side by side, each at its own pace: a
busy or slow partition holds up no other. A partition is paused while its lane has two
batches' worth waiting, or while the lanes together hold HELD_MESSAGES largest commands'
worth of records (the worker's memory stays bounded however many partitions it owns).
A crash anywhere before a batch's commit redelivers its records; the command log in PostgreSQL
makes the second application a replay of the stored result.

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
3. answer only records at or after that offset (the lane's `next_offset`), so that records
   fetched before the seek are never answered twice.

Giving a partition back (revocation) waits for its lane's batches in hand to commit, while
this worker still owns it, and drops the records still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError

from worker.config import Settings
from worker.domain.ports import StorageUnavailable
from worker.transport.answering import RecordAnswerer
from worker.transport.kafka_clients import result_producer, transactional_id
from worker.transport.lanes import PartitionLane, TransactionFailed, partition_name

__all__ = ["CommandProcessor", "TransactionFailed"]

log = structlog.get_logger(__name__)

ProducerFactory = Callable[[Settings, str], AIOKafkaProducer]

# How long starting a partition's producer may take (finding the transaction coordinator,
# waiting for the previous owner's transaction to end) before the worker starts afresh.
PRODUCER_START_TIMEOUT = 60.0
# How long one fetch waits for records before the loop looks at its lanes and its stop event.
FETCH_TIMEOUT_MS = 200
# What all the lanes together may hold (queued and in hand), in largest commands
# (MESSAGE_MAX_BYTES): past it, a partition whose records come in is paused until the lanes
# have committed enough. (One lane may hold two batches' worth on its own: see `full`.)
HELD_MESSAGES = 4


class _TakeAndRelease(ConsumerRebalanceListener):  # type: ignore[misc]
    """Revocation waits for the lanes' batches in hand (so that their offsets commit while
    this worker still owns the partitions) and closes them; assigned partitions are taken by
    the consuming loop before their records are applied."""

    def __init__(self, processor: CommandProcessor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._processor.release(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # No waiting here: aiokafka sends no heartbeat until this returns.
        self._processor.assigned(set(assigned))


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(map(partition_name, partitions))


class CommandProcessor:
    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        answerer: RecordAnswerer,
        producer_factory: ProducerFactory = result_producer,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._answerer = answerer
        self._producer_factory = producer_factory
        self._lock = asyncio.Lock()  # taking and releasing partitions, one at a time
        self._lanes: dict[TopicPartition, PartitionLane] = {}
        self._to_take: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._held_bytes_budget = HELD_MESSAGES * settings.message_max_bytes
        self._failure: BaseException | None = None
        self._stop = asyncio.Event()
        self.rebalance_listener = _TakeAndRelease(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and hand out records until `stop` is set, or a lane fails (its exception is
        raised); then the lanes finish their batches in hand."""
        self._stop = stop
        try:
            while not stop.is_set():
                self._raise_failure()
                if self._to_take:
                    async with self._lock:
                        await self._take_assigned()
                batch = await self._consumer.getmany(
                    timeout_ms=FETCH_TIMEOUT_MS, max_records=self._settings.kafka_max_batch_records
                )
                self._raise_failure()
                if not batch:
                    continue
                async with self._lock:
                    taken = await self._take_assigned()
                    for tp, records in batch.items():
                        # A partition taken just now was sought to its committed offset: its
                        # records in this batch were fetched before, and are fetched again.
                        if tp not in taken:
                            self._hand_out(tp, records)
        except BaseException:
            # Past the grace period, or failing (the worker starts afresh): give up what is in
            # hand rather than wait for it (it is delivered again, and replayed).
            for lane in self._lanes.values():
                lane.abandon()
            raise
        await self.close()
        self._raise_failure()

    def _hand_out(self, tp: TopicPartition, records: list[object]) -> None:
        lane = self._lanes.get(tp)
        if lane is None:  # revoked since it was fetched: its new owner answers it
            with contextlib.suppress(IllegalStateError):  # (or fetched again, if ours)
                self._consumer.seek(tp, records[0].offset)  # type: ignore[attr-defined]
            log.info(
                "records_of_a_revoked_partition", partition=partition_name(tp), records=len(records)
            )
            return
        if lane.offer(records) or self._held_bytes() >= self._held_bytes_budget:
            with contextlib.suppress(IllegalStateError):
                self._consumer.pause(tp)
            self._paused.add(tp)

    def _held_bytes(self) -> int:
        return sum(lane.held_bytes for lane in self._lanes.values())

    def _on_progress(self, _: TopicPartition) -> None:
        """A lane took or let go of a batch: resume the paused partitions that have room."""
        if not self._paused or self._held_bytes() >= self._held_bytes_budget:
            return
        for tp in list(self._paused):
            lane = self._lanes.get(tp)
            if lane is None or not lane.full:
                self._paused.discard(tp)
                with contextlib.suppress(IllegalStateError):  # given away meanwhile
                    self._consumer.resume(tp)

    def _given_up_on_stop(self, exc: BaseException) -> bool:
        """Stopping while the database is away: the batch is given up, as it should be."""
        return self._stop.is_set() and isinstance(exc, StorageUnavailable)

    def _on_failure(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        if not self._given_up_on_stop(exc):
            log.warning("partition_failed", error=f"{type(exc).__name__}: {exc}")

    def _raise_failure(self) -> None:
        if self._failure is not None and not self._given_up_on_stop(self._failure):
            raise self._failure

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
        self._lanes[tp] = PartitionLane(
            tp,
            producer,
            next_offset,
            answerer=self._answerer,
            settings=self._settings,
            stop=self._stop,
            on_progress=self._on_progress,
            on_failure=self._on_failure,
        )

    async def release(self, partitions: set[TopicPartition]) -> None:
        """Let `partitions` go, once their batches in hand are committed (or given up)."""
        async with self._lock:
            self._to_take -= partitions
            lanes = [self._lanes.pop(tp) for tp in partitions if tp in self._lanes]
            self._paused -= partitions
            # Shielded: if the consumer stops while this waits, the lanes still close (and
            # their producers stop) rather than being dropped half-way.
            await asyncio.shield(asyncio.gather(*(lane.close() for lane in lanes)))
            log.info("partitions_revoked", partitions=_names(partitions))

    async def close(self) -> None:
        """Close every lane (the worker is stopping or starting afresh)."""
        lanes, self._lanes = list(self._lanes.values()), {}
        self._to_take = set()
        self._paused = set()
        await asyncio.gather(*(lane.close() for lane in lanes))
