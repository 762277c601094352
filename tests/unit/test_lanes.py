"""A partition's lane (worker/transport/lanes.py), with a recording producer and answerer: the
order of effects and commits, the pipelining, back-pressure, closing and failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from worker.config import Settings
from worker.transport.lanes import PartitionLane, TransactionFailed
from worker.transport.records import OutgoingRecord, SourceRecord

TP = TopicPartition("commands", 3)


@dataclass
class Record:
    offset: int
    value: bytes = b"{}"
    topic: str = TP.topic
    partition: int = TP.partition
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


@dataclass
class Producer:
    """Records what each transaction published; `hold` keeps a commit from finishing."""

    log: list[str]
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    fail_commit: bool = False
    hang: bool = False
    stopped: bool = False
    committed: list[tuple[list[bytes], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hold.set()
        self._sent: list[bytes] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self._sent = []
        yield
        try:
            await self.hold.wait()
        except asyncio.CancelledError:
            if self.hang:  # as aiokafka's abort waits for an unreachable broker
                await asyncio.shield(asyncio.get_running_loop().create_future())
            raise
        if self.fail_commit:
            raise KafkaError("commit refused")
        self.log.append(f"commit {self._offset}")
        self.committed.append((self._sent, self._offset))

    async def send(self, topic: str, value: bytes, **_: object) -> asyncio.Future[None]:
        self._sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, object], _: str
    ) -> None:
        self._offset = offsets[TP].offset  # type: ignore[attr-defined]

    async def stop(self) -> None:
        self.stopped = True
        if self.hang:  # as aiokafka's flush waits for an unreachable broker
            await asyncio.get_running_loop().create_future()


class Answerer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def answer(
        self, records: list[SourceRecord], stop: asyncio.Event
    ) -> list[OutgoingRecord]:
        self.log.append(f"answer {records[0].offset}-{records[-1].offset}")
        await asyncio.sleep(0)
        return [OutgoingRecord("results", None, str(r.offset).encode()) for r in records]


def lane(
    producer: Producer, log: list[str], *, max_batch: int = 3, max_bytes: int = 1_000_000
) -> tuple[PartitionLane, list[TopicPartition], list[BaseException]]:
    rooms: list[TopicPartition] = []
    failures: list[BaseException] = []
    return (
        PartitionLane(
            TP,
            producer,  # type: ignore[arg-type]
            10,
            answerer=Answerer(log),
            settings=Settings(kafka_max_batch_records=max_batch, message_max_bytes=max_bytes),
            stop=asyncio.Event(),
            on_progress=rooms.append,
            on_failure=failures.append,
        ),
        rooms,
        failures,
    )


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_batches_are_answered_in_order_and_each_committed_with_the_next_offset() -> None:
    log: list[str] = []
    producer = Producer(log)
    the_lane, _, failures = lane(producer, log)
    the_lane.offer([Record(o) for o in range(10, 17)])
    await settle()
    await the_lane.close()

    assert producer.committed == [
        ([b"10", b"11", b"12"], 13),
        ([b"13", b"14", b"15"], 16),
        ([b"16"], 17),
    ]
    assert failures == []
    assert producer.stopped


async def test_the_next_batch_is_answered_while_the_last_one_commits_and_commits_after_it() -> None:
    log: list[str] = []
    producer = Producer(log)
    producer.hold.clear()  # the first commit hangs
    the_lane, _, _ = lane(producer, log)
    the_lane.offer([Record(o) for o in range(10, 13)])
    await settle()
    the_lane.offer([Record(o) for o in range(13, 15)])
    await settle()
    assert log == ["answer 10-12", "answer 13-14"]  # the second batch applied meanwhile

    producer.hold.set()
    await settle()
    await the_lane.close()
    assert log == ["answer 10-12", "answer 13-14", "commit 13", "commit 15"]


async def test_records_below_the_lanes_offset_are_not_answered_again() -> None:
    log: list[str] = []
    producer = Producer(log)
    the_lane, _, _ = lane(producer, log)
    the_lane.offer([Record(o) for o in range(7, 12)])  # 7..9 were answered before
    the_lane.offer([Record(11), Record(12)])  # 11 is queued already
    await settle()
    await the_lane.close()
    assert [sent for sent, _ in producer.committed] == [[b"10", b"11", b"12"]]


async def test_a_full_lane_asks_for_a_pause_and_reports_its_progress() -> None:
    log: list[str] = []
    producer = Producer(log)
    producer.hold.clear()
    the_lane, progress, _ = lane(producer, log, max_batch=2)
    assert not the_lane.offer([Record(10)])
    await settle()  # batch 10 committing (held), nothing else queued
    assert not the_lane.offer([Record(11), Record(12), Record(13)])
    await settle()  # batch 11-12 answered, waiting for the commit of 10
    assert the_lane.offer([Record(o) for o in range(14, 18)])  # two batches wait: full
    progress.clear()
    producer.hold.set()
    await settle()
    assert not the_lane.full
    assert set(progress) == {TP}  # reported, so that the processor resumes the partition
    await the_lane.close()
    assert producer.committed[-1][1] == 18


async def test_a_lane_holds_its_batches_bytes_until_they_are_committed() -> None:
    log: list[str] = []
    producer = Producer(log)
    producer.hold.clear()
    the_lane, _, _ = lane(producer, log, max_bytes=100)
    assert not the_lane.offer([Record(10, value=b"x" * 150)])
    await settle()  # taken and answered: no longer queued, but still in memory until committed
    assert the_lane.held_bytes == 150
    assert the_lane.offer([Record(11, value=b"y" * 60)])  # 210 bytes held: two batches' worth
    producer.hold.set()
    await settle()
    await the_lane.close()
    assert the_lane.held_bytes == 0
    assert [offset for _, offset in producer.committed] == [11, 12]


async def test_closing_finishes_the_batches_in_hand_and_drops_the_queued_records() -> None:
    log: list[str] = []
    producer = Producer(log)
    producer.hold.clear()
    the_lane, _, _ = lane(producer, log, max_batch=2)
    the_lane.offer([Record(o) for o in range(10, 16)])
    await settle()  # 10-11 committing, 12-13 answered, 14-15 queued
    closing = asyncio.create_task(the_lane.close())
    await settle()
    producer.hold.set()
    await closing
    assert [offset for _, offset in producer.committed] == [12, 14]
    assert "answer 14-15" not in log
    assert producer.stopped


async def test_a_failed_commit_stops_the_lane_and_is_reported() -> None:
    log: list[str] = []
    producer = Producer(log, fail_commit=True)
    the_lane, _, failures = lane(producer, log)
    the_lane.offer([Record(10)])
    await settle()
    assert len(failures) == 1
    assert isinstance(failures[0], TransactionFailed)
    the_lane.offer([Record(11)])
    await settle()
    assert log == ["answer 10-10"]  # nothing after the failure
    await the_lane.close()
    assert producer.stopped


@pytest.mark.parametrize("cancel_after", [0, 1])
async def test_abandoning_gives_up_what_is_in_hand(cancel_after: int) -> None:
    log: list[str] = []
    producer = Producer(log)
    producer.hold.clear()
    the_lane, _, failures = lane(producer, log)
    the_lane.offer([Record(10)])
    for _ in range(cancel_after):
        await settle()
    the_lane.abandon()
    await the_lane.close()
    assert producer.committed == []
    assert failures == []
    assert producer.stopped


async def test_a_lane_stuck_on_an_unreachable_broker_still_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("worker.transport.lanes.CLOSE_TIMEOUT", 0.05)
    log: list[str] = []
    producer = Producer(log, hang=True)
    producer.hold.clear()  # the commit never ends, nor would its abort or the producer's stop
    the_lane, _, _ = lane(producer, log)
    the_lane.offer([Record(10)])
    await settle()
    the_lane.abandon()
    await asyncio.wait_for(the_lane.close(), 2)
    assert producer.committed == []
    assert producer.stopped
