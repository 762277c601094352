"""Smoke check of the local servers that scripts/services.sh starts.

Run with the repo's venv and the environment of .run/env (``make smoke`` does both):

    . .run/env && .venv/bin/python scripts/smoke_services.py

It checks, against KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL:
- the admin client creates a topic with max.message.bytes=16777216;
- a 12 MiB record is produced and consumed back intact;
- a transactional consume-process-produce step (``async with producer.transaction()``
  plus ``send_offsets_to_transaction``) commits output and consumer offsets together,
  an aborted transaction stays invisible to a read_committed consumer;
- asyncpg connects with DATABASE_URL.
Every topic it creates has a random suffix and is deleted at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

MiB = 1024 * 1024
TOPIC_MAX_MESSAGE_BYTES = 16 * MiB
CLIENT_MAX_BYTES = 17 * MiB
BIG_RECORD = 12 * MiB

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:39092")
DATABASE_URL = os.environ.get(
    "DATABASE_URL", "postgresql://unique_numbers:unique_numbers@127.0.0.1:45432/unique_numbers"
)
SUFFIX = uuid.uuid4().hex[:8]


async def create_topics(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    await admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=1,
                replication_factor=1,
                topic_configs={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
            )
            for name in names
        ]
    )


async def consume(
    topic: str, count: int, *, group_id: str | None = None, wait_s: float = 30.0
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=CLIENT_MAX_BYTES,
        fetch_max_bytes=4 * CLIENT_MAX_BYTES,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + wait_s
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            values.extend(
                msg.value for msgs in batches.values() for msg in msgs if msg.value is not None
            )
    finally:
        await consumer.stop()
    return values


async def check_big_record(topic: str) -> None:
    payload = os.urandom(BIG_RECORD)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, max_request_size=CLIENT_MAX_BYTES)
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, payload, key=b"big")
    finally:
        await producer.stop()
    got = await consume(topic, 1)
    assert len(got) == 1, f"expected 1 record, got {len(got)}"
    assert got[0] == payload, "12 MiB record came back different"
    print(f"  12 MiB record produced at offset {meta.offset} and consumed back intact")


async def check_transactions(topic_in: str, topic_out: str) -> None:
    group = f"smoke-group-{SUFFIX}"
    plain = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    await plain.start()
    try:
        for i in range(3):
            await plain.send_and_wait(topic_in, f"in-{i}".encode())
    finally:
        await plain.stop()

    consumer = AIOKafkaConsumer(
        topic_in,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        transactional_id=f"smoke-tx-{SUFFIX}",
        max_request_size=CLIENT_MAX_BYTES,
    )
    await consumer.start()
    await producer.start()
    tp = TopicPartition(topic_in, 0)
    try:
        records = []
        deadline = time.monotonic() + 30
        while len(records) < 3 and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            records.extend(msg for msgs in batches.values() for msg in msgs)
        assert len(records) == 3, f"consumed {len(records)} input records, expected 3"

        # Committed: two outputs and the offset after the second input.
        async with producer.transaction():
            for rec in records[:2]:
                await producer.send(topic_out, b"out-" + rec.value)
            await producer.send_offsets_to_transaction({tp: records[1].offset + 1}, group)

        # Aborted: its output and its offset must not become visible.
        try:
            async with producer.transaction():
                await producer.send(topic_out, b"aborted-" + records[2].value)
                await producer.send_offsets_to_transaction({tp: records[2].offset + 1}, group)
                raise _AbortError
        except _AbortError:
            pass

        # Committed again, so the read_committed consumer can read past the aborted batch.
        async with producer.transaction():
            await producer.send(topic_out, b"out-" + records[2].value)
            await producer.send_offsets_to_transaction({tp: records[2].offset + 1}, group)

        # EndTxn returns once the commit is decided; the markers that make the offsets
        # visible to OffsetFetch are written just after, so poll briefly.
        want = records[2].offset + 1
        committed = await consumer.committed(tp)
        deadline = time.monotonic() + 10
        while committed != want and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            committed = await consumer.committed(tp)
    finally:
        await producer.stop()
        await consumer.stop()

    assert committed == want, f"committed offset {committed}, expected {want}"
    out = await consume(topic_out, 3, group_id=None)
    assert out == [b"out-in-0", b"out-in-1", b"out-in-2"], out
    print(f"  transactions: committed offsets {committed}, read_committed saw {out}")


class _AbortError(Exception):
    pass


async def check_postgres() -> None:
    conn = await asyncpg.connect(DATABASE_URL, timeout=10)
    try:
        row = await conn.fetchrow(
            "select version() as v, current_setting('max_connections') as mc,"
            " current_setting('shared_buffers') as sb, current_setting('fsync') as fs,"
            " current_setting('synchronous_commit') as sc"
        )
    finally:
        await conn.close()
    assert row is not None
    print(
        f"  {row['v'].split(',')[0]}; max_connections={row['mc']} shared_buffers={row['sb']}"
        f" fsync={row['fs']} synchronous_commit={row['sc']}"
    )


async def step(name: str, fn: Callable[[], Awaitable[None]]) -> None:
    print(f"{name} ...", flush=True)
    start = time.monotonic()
    await fn()
    print(f"  ok in {time.monotonic() - start:.1f}s", flush=True)


async def main() -> int:
    print(f"kafka {BOOTSTRAP}, postgres {DATABASE_URL.rsplit('@', 1)[-1]}")
    big, tx_in, tx_out = (f"smoke-{n}-{SUFFIX}" for n in ("big", "tx-in", "tx-out"))
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await step("create topics", lambda: create_topics(admin, [big, tx_in, tx_out]))
        await step("12 MiB record", lambda: check_big_record(big))
        await step("transactional producer", lambda: check_transactions(tx_in, tx_out))
        await step("asyncpg", check_postgres)
    finally:
        try:
            await admin.delete_topics([big, tx_in, tx_out])
        except Exception as exc:  # cleanup must not hide the real error
            print(f"  (could not delete smoke topics: {exc!r})", file=sys.stderr)
        await admin.close()
    print("smoke check passed")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
