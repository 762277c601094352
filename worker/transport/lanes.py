"""One command partition's pipeline, from its queued records to its committed results.

The records a partition's lane is given wait in its queue. The lane takes them in batches (at
most KAFKA_MAX_BATCH_RECORDS records and, past the first, MESSAGE_MAX_BYTES of values), has
each batch answered (one database transaction, `worker/transport/answering.py`) and publishes
the answers in one Kafka transaction with the partition's next offset, on the partition's own
transactional producer.

Pipelined: while one batch's Kafka transaction commits, the next batch is already answered (its
database transaction runs meanwhile), and its Kafka transaction starts once the first has
committed. So a batch costs the longer of the two transactions rather than both, and the
offsets still commit in order, each after its batch's effect. A crash between the two leaves a
batch applied but not answered: it is delivered again, and the command log replays it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from functools import partial

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from worker.config import Settings
from worker.transport.answering import RecordAnswerer, source_record
from worker.transport.memory import LARGE_BATCH_BYTES, release_free_memory
from worker.transport.records import OutgoingRecord

log = structlog.get_logger(__name__)

# How long closing waits for a cancelled transaction to end, and for a producer to stop: with
# the broker unreachable, aiokafka would wait for ever (its abort and its flush retry until
# the broker answers), and the worker could neither start afresh nor exit.
CLOSE_TIMEOUT = 5.0

# How long closing a lane waits for its batches in hand to commit before giving them up
# (they are then delivered again): within the group's rebalance timeout.
GRACEFUL_CLOSE_SECONDS = 30.0

# A lane whose queue holds this many batches' worth asks for its partition to be paused.
QUEUED_BATCHES = 2


class TransactionFailed(Exception):
    """The Kafka transaction could not be committed; the batch will be delivered again."""


def _retrieve_exception(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()


async def publish(
    producer: AIOKafkaProducer,
    records: list[OutgoingRecord],
    offsets: dict[TopicPartition, OffsetAndMetadata],
    group_id: str,
) -> None:
    """`records` and the consumer group's `offsets` in one Kafka transaction."""
    sends: list[asyncio.Future[object]] = []
    try:
        async with producer.transaction():
            for r in records:
                sends.append(await producer.send(r.topic, r.value, key=r.key, headers=r.headers))
            await producer.send_offsets_to_transaction(offsets, group_id)
        await asyncio.gather(*sends)
    except KafkaError as exc:
        for send in sends:  # they fail with the transaction: nothing more to say of them
            send.add_done_callback(_retrieve_exception)
        raise TransactionFailed(f"{type(exc).__name__}: {exc}") from exc


def partition_name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def _size(record: object) -> int:
    value: bytes | None = record.value  # type: ignore[attr-defined]
    return len(value) if value is not None else 0


class PartitionLane:
    """The pipeline of one command partition this worker owns (see the module's docstring).

    `on_progress(tp)` is called whenever the lane has taken a batch from its queue or let go
    of one (committed or failed), so that the processor can resume the partitions it paused
    (see `offer`, `held_bytes`); `on_failure(exc)` when the lane stops on an exception (a
    Kafka transaction that failed, a database outage past `stop`, a defect).
    """

    def __init__(
        self,
        tp: TopicPartition,
        producer: AIOKafkaProducer,
        next_offset: int,
        *,
        answerer: RecordAnswerer,
        settings: Settings,
        stop: asyncio.Event,
        on_progress: Callable[[TopicPartition], None],
        on_failure: Callable[[BaseException], None],
    ) -> None:
        self.tp = tp
        self.producer = producer
        # The first offset not queued yet: records before it were answered, or are on their way.
        self.next_offset = next_offset
        self._answerer = answerer
        self._group_id = settings.kafka_group_id
        self._max_records = settings.kafka_max_batch_records
        self._max_bytes = settings.message_max_bytes
        self._stop = stop
        self._on_progress = on_progress
        self._on_failure = on_failure
        self._queue: deque[object] = deque()
        # The bytes of the records queued or in hand (answered, committing): what the lane
        # holds in memory, until each batch is committed or given up.
        self.held_bytes = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name=f"lane {tp.topic}[{tp.partition}]")

    @property
    def full(self) -> bool:
        return (
            len(self._queue) >= QUEUED_BATCHES * self._max_records
            or self.held_bytes >= QUEUED_BATCHES * self._max_bytes
        )

    def offer(self, records: list[object]) -> bool:
        """Queue the records not queued before; True when the lane is full (pause the
        partition: its records are fetched again from its position once resumed)."""
        fresh = [r for r in records if r.offset >= self.next_offset]  # type: ignore[attr-defined]
        if len(fresh) < len(records):  # never expected: the position is past them
            log.warning(
                "records_already_answered",
                partition=partition_name(self.tp),
                skipped=len(records) - len(fresh),
            )
        if fresh and not self._closing:
            self._queue.extend(fresh)
            self.held_bytes += sum(map(_size, fresh))
            self.next_offset = fresh[-1].offset + 1  # type: ignore[attr-defined]
            self._wakeup.set()
        return self.full

    async def close(self) -> None:
        """Finish the batches in hand (answered and committed) and drop the records still
        queued (whoever owns the partition next fetches them again); then stop the producer.
        Past GRACEFUL_CLOSE_SECONDS, or cancelled, it gives up what is in hand (delivered
        again). Every wait on Kafka here is bounded."""
        self._closing = True
        self._wakeup.set()
        try:
            done, _ = await asyncio.wait({self._task}, timeout=GRACEFUL_CLOSE_SECONDS)
            if not done:  # a commit that cannot end (the broker unreachable): give it up
                log.warning("partition_close_timed_out", partition=partition_name(self.tp))
                self.abandon()
                await asyncio.wait({self._task}, timeout=CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            self.abandon()
            await asyncio.wait({self._task}, timeout=CLOSE_TIMEOUT)
            raise
        finally:
            if self._task.done() and not self._task.cancelled():
                self._task.exception()  # reported by on_failure already; retrieved here
            try:
                await asyncio.wait_for(self.producer.stop(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning("producer_stop_timed_out", partition=partition_name(self.tp))
            except Exception as exc:
                log.warning(
                    "producer_stop_failed", partition=partition_name(self.tp), error=repr(exc)
                )

    async def _commit(
        self,
        outgoing: list[OutgoingRecord],
        offsets: dict[TopicPartition, OffsetAndMetadata],
        first_timestamp: int,
        taken_at: float,
        answered_at: float,
    ) -> None:
        started_at = time.time()
        await publish(self.producer, outgoing, offsets, self._group_id)
        log.debug(  # a no-op unless LOG_LEVEL is DEBUG
            "batch_committed",
            partition=partition_name(self.tp),
            records=len(outgoing),
            # From the first record's timestamp (its producer's clock) to its batch taken.
            queued_ms=round(taken_at * 1000 - first_timestamp, 1),
            answer_ms=round((answered_at - taken_at) * 1000, 1),
            commit_wait_ms=round((started_at - answered_at) * 1000, 1),
            commit_ms=round((time.time() - started_at) * 1000, 1),
        )

    def _committed(self, size: int, task: asyncio.Task[None]) -> None:
        """A batch let go: its bytes are no longer held. A transaction that failed wakes the
        lane, so that the failure is reported at once rather than when the partition's next
        record comes."""
        self.held_bytes -= size
        self._on_progress(self.tp)
        if not task.cancelled() and task.exception() is not None:
            self._wakeup.set()

    def abandon(self) -> None:
        """Give up at once what is in hand (uncommitted, it is delivered again); `close` then
        only stops the producer."""
        self._closing = True
        self._task.cancel()

    def _take(self) -> tuple[list[object], int]:
        """The next batch from the queue (at least one record), and its bytes."""
        batch: list[object] = []
        size = 0
        while self._queue and len(batch) < self._max_records:
            n = _size(self._queue[0])
            if batch and size + n > self._max_bytes:
                break
            batch.append(self._queue.popleft())
            size += n
        if not self._queue:
            self._wakeup.clear()
        return batch, size

    async def _run(self) -> None:
        committing: asyncio.Task[None] | None = None
        try:
            while True:
                if not self._queue and not self._closing:
                    await self._wakeup.wait()
                if committing is not None and committing.done():
                    await committing  # raises if it failed (it woke the lane: `_committed`)
                    committing = None
                if self._closing:
                    break
                if not self._queue:
                    self._wakeup.clear()
                    continue
                records, size = self._take()
                self._on_progress(self.tp)
                taken_at = time.time()
                outgoing = await self._answerer.answer(
                    [source_record(r) for r in records], self._stop
                )
                answered_at = time.time()
                if committing is not None:
                    await committing  # the last batch's transaction; raises if it failed
                offsets = {self.tp: OffsetAndMetadata(records[-1].offset + 1, "")}  # type: ignore[attr-defined]
                first_timestamp: int = records[0].timestamp  # type: ignore[attr-defined]
                committing = asyncio.create_task(
                    self._commit(outgoing, offsets, first_timestamp, taken_at, answered_at)
                )
                committing.add_done_callback(partial(self._committed, size))
                # Nothing of the batch kept while the lane waits for the next one (a load's
                # record is up to MESSAGE_MAX_BYTES), and its memory given back.
                del records, outgoing
                if size >= LARGE_BATCH_BYTES:
                    release_free_memory()
            if committing is not None:
                await committing
        except asyncio.CancelledError:
            if committing is not None:
                committing.cancel()  # its abort may wait for the broker: not for ever
                await asyncio.wait({committing}, timeout=CLOSE_TIMEOUT)
            raise
        except BaseException as exc:
            if committing is not None:
                await asyncio.gather(committing, return_exceptions=True)
            self._on_failure(exc)
            raise
