"""A mixed workload sent through Kafka while faults are injected, and the results read back.

`Workload` invents commands: loads of fresh numbers (byte-exact oddities included: GS
separators, leading zeros, quotes, Cyrillic, a precomposed and a decomposed accent that must
stay two numbers), loads that collide with another variant's numbers, reloads, reserves with
and without a document, mark-used of numbers that reserve results handed out (and of numbers
that were never loaded), lists. `Driver` sends them in waves with an idempotent producer and
records each one once the broker has acknowledged it; `ResultReader` reads the results
topic with `read_committed` from its beginning and records every result it sees.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openpyxl
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.commands import CommandName
from tests.integration.faults.history import Entry, History, SentCommand
from worker.client import assign_whole_topic, command_topic
from worker.config import Settings
from worker.transport.decoding import COMMAND_ID_HEADER
from worker.transport.kafka_clients import security_options

GS = "\x1d"
TYPES = ("UIT", "IMEI")


class Workload:
    """Invents the next command from what has been sent and answered so far."""

    def __init__(self, history: History, seed: int, variants: int = 8) -> None:
        self._history = history
        self._random = random.Random(seed)
        self._variants = [f"V-{seed % 1000:03}-{i:02}" for i in range(variants)]
        self._counter = 0
        self._loaded: list[Entry] = []  # every number sent in a load (applied or not)
        self._marked: set[str] = set()  # numbers a mark-used was sent for

    def _fresh_number(self, variant: str, number_type: str) -> list[str]:
        """One new number, or now and then a pair that only Unicode folding would merge."""
        self._counter += 1
        n = self._counter
        tag = variant[-2:]
        if number_type == "IMEI":
            return [f"{n:015d}"]  # leading zeros, kept as text
        kind = n % 7
        if kind == 0:
            return [f"caf\u00e9-{tag}-{n}", f"cafe\u0301-{tag}-{n}"]  # NFC and NFD: two numbers
        if kind == 1:
            return [f"\u041a\u043e\u0434-{tag}-{n}'\"%/"]  # Cyrillic, quotes, percent, slash
        if kind == 2:
            return [f"Case-{tag}-{n}", f"case-{tag}-{n}"]  # no case folding
        if kind == 3:
            return [("0104" + f"{n:010d}" + "X" * 255)[:255]]  # the longest a number may be
        return [f"0104{n:010d}215%{tag}{GS}91EE06{GS}92mU/{n}=="]  # DataMatrix with GS

    def _fresh_entries(self, variant: str, count: int) -> list[Entry]:
        number_type = self._random.choice(TYPES)
        out: list[Entry] = []
        while len(out) < count:
            out += [
                Entry(variant, n, number_type) for n in self._fresh_number(variant, number_type)
            ]
        return out

    def next_command(self) -> SentCommand:
        roll = self._random.random()
        if roll < 0.14 or not self._loaded:
            return self._load(
                self._fresh_entries(self._pick_variant(), self._random.randint(3, 12))
            )
        if roll < 0.17:
            return self._conflicting_load()
        if roll < 0.20:
            return self._reload()
        if roll < 0.215:
            return self._load_excel()
        if roll < 0.62:
            return self.reserve()
        if roll < 0.82:
            return self._mark_used()
        return self._list()

    def _pick_variant(self) -> str:
        return self._random.choice(self._variants)

    def _command(
        self,
        name: CommandName,
        body: dict[str, Any],
        key: str,
        entries: list[Entry] = (),  # type: ignore[assignment]
    ) -> SentCommand:
        command_id = f"{name.value}-{uuid.uuid4().hex[:12]}"
        body = {"commandId": command_id, **body}
        return SentCommand(command_id, name, body, key, list(entries))

    def _load(self, entries: list[Entry]) -> SentCommand:
        self._loaded += entries
        items: dict[str, list[dict[str, str]]] = {}
        for e in entries:
            items.setdefault(e.variant_id, []).append(
                {"uniqueNumber": e.number, "type": e.number_type}
            )
        body = {"items": [{"variantId": v, "uniqueNumbers": ns} for v, ns in items.items()]}
        return self._command(CommandName.LOAD_JSON, body, entries[0].variant_id, entries)

    def _conflicting_load(self) -> SentCommand:
        """Fresh numbers for one variant plus a number sent for another: one of the two loads
        is refused whole (which one depends on the order they are applied in)."""
        variant = self._pick_variant()
        taken = self._random.choice(self._loaded)
        entries = self._fresh_entries(variant, 3)
        clash = Entry(
            variant if taken.variant_id != variant else self._other(variant),
            taken.number,
            taken.number_type,
        )
        return self._load([*entries, clash])

    def _other(self, variant: str) -> str:
        return self._random.choice([v for v in self._variants if v != variant])

    def _reload(self) -> SentCommand:
        """Numbers sent before for their variant again, with a few new ones."""
        old = self._random.choice(self._loaded)
        again = [e for e in self._loaded if e.variant_id == old.variant_id][-4:]
        again = list({e.number: e for e in again}.values())
        return self._load(again + self._fresh_entries(old.variant_id, 2))

    def _load_excel(self) -> SentCommand:
        variant = self._pick_variant()
        entries = [Entry(variant, f"XL-{variant}-{self._next()}-0{i}", "UIT") for i in range(5)]
        self._loaded += entries
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.append(["variant", "number", "type"])
        for e in entries:
            sheet.append([e.variant_id, e.number, e.number_type])
        buffer = io.BytesIO()
        book.save(buffer)
        body = {"fileName": "codes.xlsx", "upFile": base64.b64encode(buffer.getvalue()).decode()}
        return self._command(CommandName.LOAD_EXCEL, body, variant, entries)

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def reserve(self, variant: str | None = None) -> SentCommand:
        variant = variant or self._pick_variant()
        body: dict[str, Any] = {
            "variant_id": variant,
            "type_unique_number": self._random.choice(TYPES),
        }
        doc = self._random.random()
        if doc < 0.35:
            body |= {"id": f"PO-{self._next()}", "doc_type": "PURCHASE_ORDER"}
        elif doc < 0.6:
            body |= {"id": f"KIT-{self._next()}", "doc_type": "PHYSICAL_SET_ORDER"}
        return self._command(CommandName.RESERVE, body, variant)

    def _mark_used(self) -> SentCommand:
        """Mostly a number a reserve result handed out; sometimes a loaded number nobody
        reserved, or one never loaded (NOT_FOUND)."""
        handed_out = [
            (r["variantId"], r["uniqueNumber"])
            for c in self._history.sent.values()
            if c.name is CommandName.RESERVE
            and (r := self._history.result_of(c.command_id)) is not None
            and r.get("success")
            and r["uniqueNumber"] not in self._marked
        ]
        roll = self._random.random()
        if handed_out and roll < 0.8:
            variant, number = self._random.choice(handed_out)
        elif roll < 0.93:
            entry = self._random.choice(self._loaded)
            variant, number = entry.variant_id, entry.number
        else:
            variant, number = self._pick_variant(), f"never-loaded-{self._next()}"
        self._marked.add(number)
        return self._command(
            CommandName.MARK_USED, {"variantId": variant, "uniqueNumber": number}, variant
        )

    def _list(self) -> SentCommand:
        variant = self._pick_variant()
        body: dict[str, Any] = {"variantId": variant, "page": 0, "size": 20}
        flag = self._random.random()
        if flag < 0.3:
            body["isUsed"] = False
        elif flag < 0.5:
            body["isUsed"] = True
        return self._command(CommandName.LIST, body, variant)


class Driver:
    """Sends the workload in waves; `paused()` holds it between waves (a broker outage)."""

    def __init__(self, settings: Settings, history: History, workload: Workload) -> None:
        self._settings = settings
        self._history = history
        self._workload = workload
        self._producer = AIOKafkaProducer(
            **security_options(settings), acks="all", enable_idempotence=True, linger_ms=5
        )
        self._gate = asyncio.Lock()

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_wave(self, size: int) -> None:
        async with self._gate:
            await self.send_now(size)

    async def send_now(self, size: int) -> None:
        """`size` commands at once, paused or not (a burst just before a fault)."""
        await self.send([self._workload.next_command() for _ in range(size)])

    async def send(self, commands: list[SentCommand], partition: int | None = None) -> None:
        """Send and wait for the broker's acknowledgement. Recorded first: a result may come
        before the acknowledgement does (a failed send fails the test)."""
        for command in commands:
            self._history.record_sent(command)
        futures = []
        for command in commands:
            value = json.dumps(command.body, ensure_ascii=False).encode("utf-8")
            futures.append(
                await self._producer.send(
                    command_topic(self._settings, command.name),
                    value,
                    key=command.key.encode("utf-8"),
                    partition=partition,
                )
            )
        await asyncio.gather(*futures)

    async def run(self, stop: asyncio.Event, wave: int, every: float, limit: int) -> None:
        """Waves of `wave` commands every `every` seconds until `stop` or `limit` commands."""
        while not stop.is_set() and len(self._history.sent) < limit:
            await self.send_wave(min(wave, limit - len(self._history.sent)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        async with self._gate:
            yield


class ResultReader:
    """Reads the results topic (read_committed) from its beginning into the history."""

    def __init__(self, settings: Settings, history: History) -> None:
        self._settings = settings
        self._history = history
        self._consumer = AIOKafkaConsumer(
            **security_options(settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        self._task: asyncio.Task[None] | None = None
        self._tps: list[TopicPartition] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._tps = await assign_whole_topic(self._consumer, self._settings.topic_results)
        await self._consumer.seek_to_beginning(*self._tps)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batch.values():
                for record in records:
                    headers = dict(record.headers or ())
                    raw = headers.get(COMMAND_ID_HEADER)
                    self._history.record_result(
                        raw.decode("utf-8") if raw is not None else None, json.loads(record.value)
                    )

    async def wait_for_all(self, timeout: float) -> bool:
        """Until every command sent has a result (False if `timeout` passes first)."""
        deadline = time.monotonic() + timeout
        while self._history.missing():
            self._raise_if_failed()
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def read_to_end(self, timeout: float) -> bool:
        """Until this reader has read up to the end of every partition as it is now (with
        no transaction open, the last stable offset is the end): late duplicates show."""
        ends = await self._consumer.end_offsets(self._tps)
        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_failed()
            positions = {tp: await self._consumer.position(tp) for tp in self._tps}
            if all(positions[tp] >= ends[tp] for tp in self._tps):
                return True
            if time.monotonic() > deadline:
                self._history.note(f"results read to {positions}, end {ends}")
                return False
            await asyncio.sleep(0.2)

    def _raise_if_failed(self) -> None:
        if self._task is not None and self._task.done():
            self._task.result()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def count_records(settings: Settings, topic: str) -> int:
    """How many records `topic` holds (end minus beginning offsets, every partition)."""
    consumer = AIOKafkaConsumer(**security_options(settings), group_id=None)
    await consumer.start()
    try:
        tps = await assign_whole_topic(consumer, topic)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        return sum(ends[tp] - starts[tp] for tp in tps)
    finally:
        await consumer.stop()
