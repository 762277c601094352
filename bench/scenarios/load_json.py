"""load-json: numbers/s through the worker, beside COPY of the same rows (the ceiling)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.data import CodeFactory, load_json_commands, variant_ids
from bench.report import Figure, Report, rate
from bench.stack import BenchClient, Stack, bench_client, encode_command, new_id

BARE_TABLE = """CREATE TABLE bare_numbers (
    unique_number text, variant_id text, number_type text, loaded_by_command text)"""
COPY_COLUMNS = ("unique_number", "variant_id", "number_type", "loaded_by_command")


@dataclass(frozen=True)
class Options:
    numbers: int
    per_command: int
    variants: int = 3000


def copy_rows(commands: list[dict[str, Any]], ids: list[str]) -> list[list[tuple[str, ...]]]:
    return [
        [
            (entry["uniqueNumber"], item["variantId"], entry["type"], command_id)
            for item in command["items"]
            for entry in item["uniqueNumbers"]
        ]
        for command, command_id in zip(commands, ids, strict=True)
    ]


async def copy_ceiling(
    url: str, table: str, chunks: list[list[tuple[str, ...]]], connections: int
) -> float:
    """Seconds to COPY every chunk (one COPY and one commit each) over `connections`."""
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    try:
        queue: asyncio.Queue[list[tuple[str, ...]]] = asyncio.Queue()
        for chunk in chunks:
            queue.put_nowait(chunk)

        async def copier(conn: asyncpg.Connection) -> None:
            while not queue.empty():
                chunk = queue.get_nowait()
                await conn.copy_records_to_table(table, records=chunk, columns=COPY_COLUMNS)

        started = time.perf_counter()
        await asyncio.gather(*(copier(c) for c in conns))
        return time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()


async def through_worker(
    client: BenchClient, payloads: list[bytes], ids: list[str], timeout: float
) -> tuple[float, dict[str, int], int]:
    started = time.perf_counter()
    for i, (payload, command_id) in enumerate(zip(payloads, ids, strict=True)):
        await client.send("load-json", payload, key=str(i), command_id=command_id)
    await client.producer.flush()
    done = await client.wait_for(ids, timeout)
    last = max((client.results.read_at.get(i, time.perf_counter()) for i in ids), default=started)
    codes = client.results.codes(ids)
    loaded = sum(int(client.results.bodies.get(i, {}).get("loaded", 0)) for i in ids)
    if not done:
        codes["timed out"] = len([i for i in ids if i not in client.results.read_at])
    return last - started, codes, loaded


async def run(stack: Stack, report: Report, options: Options) -> None:
    print(f"load-json: generating {options.numbers:,} numbers")
    factory = CodeFactory(seed=11)
    commands = load_json_commands(
        factory, variant_ids(options.variants), options.numbers, options.per_command
    )
    ids = [f"bench-load-{i}-{new_id()[:8]}" for i in range(len(commands))]
    payloads = [encode_command(c, i) for c, i in zip(commands, ids, strict=True)]
    chunks = copy_rows(commands, ids)
    total = sum(len(c) for c in chunks)

    settings = await stack.setup()
    worker = stack.start_worker()
    async with bench_client(settings) as client:
        await stack.ready(client)
        assert worker.memory is not None
        worker.memory.reset()
        print(f"load-json: sending {len(payloads)} commands")
        seconds, codes, loaded = await through_worker(client, payloads, ids, timeout=1800)
    peak = worker.memory.peak()
    stack.stop_worker()

    # Ceilings, in databases of their own: the worker's schema, and a bare table.
    print("load-json: COPY ceilings")
    schema_url = await stack.databases.create(f"{stack.name}_copy")
    copy_seconds = {
        n: await _copy_fresh(stack, schema_url, chunks, n, f"copy{n}")
        for n in (1, stack.partitions)
    }
    await stack.databases.drop(stack.databases.name(f"{stack.name}_copy"))
    bare_url = await stack.databases.create(f"{stack.name}_bare")
    conn = await asyncpg.connect(bare_url)
    await conn.execute(BARE_TABLE)
    await conn.close()
    bare_seconds = await copy_ceiling(bare_url, "bare_numbers", chunks, stack.partitions)
    await stack.databases.drop(stack.databases.name(f"{stack.name}_bare"))

    best_copy = min(copy_seconds.values())
    worker_rate = loaded / seconds if seconds else 0.0
    ceiling_rate = total / best_copy
    bare_rate = total / bare_seconds
    ok = codes == {"ok": len(ids)} and loaded == total
    report.add(
        Figure(
            scenario=f"load-json, {total:,} numbers in commands of {options.per_command:,}",
            figure="numbers/s, first command sent to last result read",
            measured=f"{rate(worker_rate)} ({seconds:.1f} s; "
            f"{worker_rate / ceiling_rate:.0%} of the ceiling)"
            + ("" if ok else f"; results {codes}, loaded {loaded:,}"),
            reference=(
                f"COPY into the worker's schema {rate(ceiling_rate)} "
                f"(1 connection {rate(total / copy_seconds[1])}, "
                f"{stack.partitions} connections {rate(total / copy_seconds[stack.partitions])}); "
                f"COPY into a bare table {rate(bare_rate)}"
            ),
            target=">= 50,000/s and >= 50% of COPY into the worker's schema",
            met=ok and worker_rate >= 50_000 and worker_rate >= ceiling_rate / 2,
            data={
                "numbers": total,
                "commands": len(ids),
                "seconds": seconds,
                "numbers_per_s": worker_rate,
                "copy_schema_seconds": copy_seconds,
                "copy_schema_per_s": ceiling_rate,
                "copy_bare_seconds": bare_seconds,
                "copy_bare_per_s": bare_rate,
                "results": codes,
                "worker_peak_rss_mb": peak / 2**20,
            },
        )
    )


async def _copy_fresh(
    stack: Stack, template_url: str, chunks: list[list[tuple[str, ...]]], connections: int, tag: str
) -> float:
    """COPY into an empty copy of the worker's schema (a fresh database each time)."""
    template = template_url.rsplit("/", 1)[1]
    url = await stack.databases.create(f"{stack.name}_{tag}", template=template)
    try:
        return await copy_ceiling(url, "unique_numbers", chunks, connections)
    finally:
        await stack.databases.drop(stack.databases.name(f"{stack.name}_{tag}"))
