"""reserve: sustained commands/s (closed loop, 4 partitions) beside the same statements run
directly on the database; then latency at a fixed offered rate (open loop)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from dataclasses import dataclass

import asyncpg
from aiokafka.partitioner import murmur2

from bench.cpu import CpuSplit, describe
from bench.data import CodeFactory, variant_ids
from bench.loops import open_loop
from bench.report import Figure, Report, latency_summary, ms, rate
from bench.seed import copy_numbers
from bench.stack import BenchClient, Stack, bench_client, encode_command, new_id
from worker.storage.queries import query

P99_TARGET_MS = 25.0
# Commands per transaction in the database-only run: what a partition's lane takes at once
# from a backlog (KAFKA_MAX_BATCH_RECORDS). (It was 125, a fetch of 500 over 4 partitions,
# while the worker applied each fetch's records together: the ceiling rose by ~30% with 500.)
DIRECT_BATCH = 500


@dataclass(frozen=True)
class Options:
    commands: int
    open_loop_rate: int
    open_loop_seconds: float
    variants: int = 1000
    numbers_per_variant: int = 150


def partition_of(key: str, partitions: int) -> int:
    """The partition aiokafka's default partitioner picks for `key`."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


async def direct_reserves(url: str, by_partition: list[list[tuple[str, str]]], batch: int) -> float:
    """Seconds for the worker's reserve statements run directly, one connection per partition:
    with `batch` > 1 as the worker applies a partition's batch (claim the ids, reserve for all,
    save the results, one commit); with 1, one transaction per command."""
    conns = [await asyncpg.connect(url) for _ in by_partition]
    claim, reserve, save = query("claim_command"), query("reserve_number"), query("save_result")
    claims, reserves, saves = (
        query("claim_commands"),
        query("reserve_numbers"),
        query("save_results"),
    )

    async def one_by_one(conn: asyncpg.Connection, commands: list[tuple[str, str]]) -> None:
        for command_id, variant in commands:
            digest = hashlib.sha256(command_id.encode()).digest()
            async with conn.transaction():
                await conn.fetchval(claim, command_id, "reserve", digest)
                number = await conn.fetchval(reserve, variant, "UIT", command_id, "", "")
                await conn.execute(save, command_id, _body(command_id, number))

    async def batched(conn: asyncpg.Connection, commands: list[tuple[str, str]]) -> None:
        for start in range(0, len(commands), batch):
            chunk = commands[start : start + batch]
            ids = [c for c, _ in chunk]
            empty = [""] * len(chunk)
            async with conn.transaction():
                await conn.fetch(
                    claims,
                    ids,
                    ["reserve"] * len(chunk),
                    [hashlib.sha256(c.encode()).digest() for c in ids],
                )
                rows = await conn.fetch(
                    reserves, [v for _, v in chunk], ["UIT"] * len(chunk), ids, empty, empty
                )
                got = {r["ord"]: r["unique_number"] for r in rows}
                await conn.execute(
                    saves, ids, [_body(c, got.get(n + 1)) for n, c in enumerate(ids)]
                )

    run = batched if batch > 1 else one_by_one
    try:
        started = time.perf_counter()
        await asyncio.gather(*(run(c, cmds) for c, cmds in zip(conns, by_partition, strict=True)))
        return time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()


def _body(command_id: str, number: str | None) -> bytes:
    return json.dumps({"commandId": command_id, "uniqueNumber": number}).encode()


async def run(stack: Stack, report: Report, options: Options) -> None:
    url = await stack.databases.create(stack.name)
    variants = variant_ids(options.variants, first=300_000)
    factory = CodeFactory(seed=31)
    rows = [
        (factory.code(factory.gtin(i)), v, "UIT", "bench-seed", False, False)
        for i, v in enumerate(variants)
        for _ in range(options.numbers_per_variant)
    ]
    random.Random(2).shuffle(rows)
    await copy_numbers(url, [rows], rebuild_indexes=False)
    # The same data for the database-only run.
    direct_url = await stack.databases.create(
        f"{stack.name}_direct", template=stack.databases.name(stack.name)
    )

    rng = random.Random(3)
    commands = []
    for i in range(options.commands):
        variant = variants[rng.randrange(len(variants))]
        commands.append((f"rsv-{i}-{new_id()[:8]}", variant))
    by_partition: list[list[tuple[str, str]]] = [[] for _ in range(stack.partitions)]
    for command_id, variant in commands:
        by_partition[partition_of(variant, stack.partitions)].append((command_id, variant))

    print(f"reserve: {len(commands):,} reserves directly on the database")
    direct_rate = len(commands) / await direct_reserves(direct_url, by_partition, DIRECT_BATCH)
    await stack.databases.drop(stack.databases.name(f"{stack.name}_direct"))
    # And one transaction per command (a tenth of the commands: it is slow).
    single_url = await stack.databases.create(
        f"{stack.name}_single", template=stack.databases.name(stack.name)
    )
    tenth = [p[: len(p) // 10] for p in by_partition]
    single_rate = sum(map(len, tenth)) / await direct_reserves(single_url, tenth, 1)
    await stack.databases.drop(stack.databases.name(f"{stack.name}_single"))

    settings = await stack.setup(database_url=url)
    async with bench_client(settings) as client:
        await sustained_rate(
            stack, client, report, commands, direct_rate=direct_rate, single_rate=single_rate
        )
        print(f"reserve: open loop at {options.open_loop_rate}/s for {options.open_loop_seconds}s")
        rng = random.Random(9)
        picks = [
            variants[rng.randrange(len(variants))]
            for _ in range(int(options.open_loop_rate * options.open_loop_seconds))
        ]
        parts: dict[str, list[float]] = {}
        cpu = CpuSplit(stack.worker.proc.pid if stack.worker and stack.worker.proc else None)
        cpu.start()
        latencies, codes = await open_loop(
            client,
            "reserve",
            [(v, {"variant_id": v, "type_unique_number": "UIT"}) for v in picks],
            options.open_loop_rate,
            parts,
        )
        worker_cpu = cpu.stop()
    stack.stop_worker()
    echo_seconds = options.open_loop_seconds / 2
    print(f"reserve: the transport alone at {options.open_loop_rate}/s for {echo_seconds}s")
    echo_latencies, echo_codes, echo_cpu = await echo_open_loop(
        stack, picks[: int(options.open_loop_rate * echo_seconds)], options.open_loop_rate
    )
    report.add(
        latency_figure(
            options,
            (latencies, codes, worker_cpu),
            (echo_latencies, echo_codes, echo_cpu),
            {k: latency_summary(v) for k, v in parts.items()},
        )
    )


async def sustained_rate(
    stack: Stack,
    client: BenchClient,
    report: Report,
    commands: list[tuple[str, str]],
    *,
    direct_rate: float,
    single_rate: float,
) -> None:
    """`commands` sent first, then the worker started: results/s from the first to the last."""
    print(f"reserve: sending {len(commands):,} reserves, then starting the worker")
    for command_id, variant in commands:
        await client.send(
            "reserve",
            encode_command({"variant_id": variant, "type_unique_number": "UIT"}, command_id),
            key=variant,
            command_id=command_id,
        )
    await client.producer.flush()
    worker = stack.start_worker()
    cpu = CpuSplit(worker.proc.pid if worker.proc else None)
    cpu.start()
    ids = [c for c, _ in commands]
    await client.wait_for(ids, timeout=1800)
    worker_cpu = cpu.stop()
    read = sorted(client.results.read_at[i] for i in ids if i in client.results.read_at)
    codes = client.results.codes(ids)
    sustained = (len(read) - 1) / (read[-1] - read[0]) if len(read) > 1 else 0.0
    numbers = [
        client.results.bodies[i].get("uniqueNumber") for i in ids if i in client.results.bodies
    ]
    distinct = len({n for n in numbers if n})
    ok = codes == {"ok": len(ids)} and distinct == len(ids)
    report.add(
        Figure(
            scenario=f"reserve, {len(ids):,} commands over {stack.partitions} partitions",
            figure="commands/s sustained (first result to last)",
            measured=f"{rate(sustained)} "
            f"({sustained / direct_rate:.0%} of the database-only run)"
            + ("" if ok else f"; results {codes}, distinct numbers {distinct}"),
            reference=(
                f"database only, the worker's statements for the same commands over "
                f"{stack.partitions} connections, {DIRECT_BATCH} a transaction: "
                f"{rate(direct_rate)} (one transaction per command: {rate(single_rate)}). "
                f"CPU, % of one core (200% = both), from the worker's start to the last "
                f"result: {describe(worker_cpu)}"
            ),
            target=">= 5,000/s and >= 50% of the database-only run",
            met=ok and sustained >= 5000 and sustained >= direct_rate / 2,
            data={
                "commands": len(ids),
                "sustained_per_s": sustained,
                "direct_per_s": direct_rate,
                "direct_batch": DIRECT_BATCH,
                "direct_one_transaction_per_command_per_s": single_rate,
                "results": codes,
                "distinct_numbers": distinct,
                "cpu_percent_of_one_core": worker_cpu,
            },
        )
    )


Run = tuple[list[float], dict[str, int], dict[str, float]]


def latency_figure(
    options: Options, worker: Run, echo: Run, split: dict[str, dict[str, float]]
) -> Figure:
    """The open loop's figure: the worker's latencies beside the transport's alone."""
    latencies, codes, worker_cpu = worker
    echo_latencies, echo_codes, echo_cpu = echo
    summary, alone = latency_summary(latencies), latency_summary(echo_latencies)
    ok = codes == {"ok": int(options.open_loop_rate * options.open_loop_seconds)}
    return Figure(
        scenario=(
            f"reserve at {options.open_loop_rate:,}/s offered (open loop, "
            f"{options.open_loop_seconds:.0f} s)"
        ),
        figure="p50 / p95 / p99, send to result read",
        measured=(f"{ms(summary['p50_ms'])} / {ms(summary['p95_ms'])} / {ms(summary['p99_ms'])}")
        + ("" if ok else f"; results {codes}"),
        reference=(
            "the transport alone (`python -m bench.echo`: the worker's consumer, lanes and Kafka "
            "transactions, no decoding, no database) at the same rate: "
            f"{ms(alone['p50_ms'])} / {ms(alone['p95_ms'])} / {ms(alone['p99_ms'])}"
            + ("" if echo_codes.get("ok") == len(echo_latencies) else f" ({echo_codes})")
            + f". CPU, % of one core (200% = both): worker run {describe(worker_cpu)}; "
            f"transport alone {describe(echo_cpu)}. Split at the result's CreateTime "
            f"(p50 / p99): sent to the worker's result {ms(split['to result sent']['p50_ms'])}"
            f" / {ms(split['to result sent']['p99_ms'])}, its Kafka commit to read "
            f"{ms(split['commit to read']['p50_ms'])} / {ms(split['commit to read']['p99_ms'])}"
        ),
        target=f"p99 <= {P99_TARGET_MS:.0f} ms",
        met=ok and summary["p99_ms"] <= P99_TARGET_MS,
        data={
            **summary,
            "split": split,
            "results": codes,
            "transport_alone": {**alone, "results": echo_codes},
            "cpu_percent_of_one_core": {"worker_run": worker_cpu, "transport_alone": echo_cpu},
        },
    )


async def echo_open_loop(
    stack: Stack, picks: list[str], per_second: float
) -> tuple[list[float], dict[str, int], dict[str, float]]:
    """The open loop against `python -m bench.echo` on topics of its own: latencies, result
    codes and the CPU split."""
    echo = Stack(stack.servers, stack.databases, stack.run_dir, f"{stack.name}echo")
    try:
        settings = await echo.setup()
        worker = echo.start_worker(("bench.echo",))
        async with bench_client(settings) as client:
            await echo.ready(client)
            cpu = CpuSplit(worker.proc.pid if worker.proc else None)
            cpu.start()
            latencies, codes = await open_loop(
                client,
                "reserve",
                [(v, {"variant_id": v, "type_unique_number": "UIT"}) for v in picks],
                per_second,
            )
            return latencies, codes, cpu.stop()
    finally:
        await echo.teardown()
