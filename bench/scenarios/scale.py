"""scale: reserve and list latency with 10k, 1M and 10M numbers stored; then the list
scenario's deep pages on the largest table.

Each size is a database of its own, filled directly with COPY (bench/seed.py) in the shape of
a table in service: half of all rows belong to one large variant, interleaved in load order
with the rows of a couple of thousand others, and half of all rows are used already. Each
larger one starts as a copy of the one before (CREATE DATABASE ... TEMPLATE) and grows.

All sizes are then measured side by side, in interleaved rounds, each with a worker of its
own: on a shared machine the load changes from minute to minute, and sizes measured one
after the other would compare the minutes more than the sizes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import asyncpg

from bench.data import CodeFactory, stream_rows, variant_ids
from bench.loops import open_loop, timed
from bench.report import Figure, Report, latency_summary, ms
from bench.scenarios import list_pages
from bench.seed import copy_numbers
from bench.stack import BenchClient, Stack, bench_client, new_id
from schemas.commands import CommandName, ListCommand, ReserveCommand
from worker.domain.service import CommandService, IncomingCommand
from worker.storage.database import PgDatabase

BIG_VARIANT = "900000"
SMALL_VARIANTS = 2000
RATIO_TARGET = 1.5
E2E_RATE = 200  # commands/s offered in the end-to-end measurements
ROUNDS = 10
E2E_SECONDS = 1.0  # a round's end-to-end reserves, then as many lists, at E2E_RATE
DIRECT_CALLS = 200  # a round's reserves, then as many lists, through the service


@dataclass
class Options:
    sizes: list[int]
    measure_scale: bool
    list_offsets: list[int]
    measure_list: bool


@dataclass
class AtSize:
    """One size: its database, its worker and what was measured on it."""

    size: int
    stack: Stack
    url: str
    pool: list[str]
    service: CommandService | None = None
    client: BenchClient | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    codes: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, name: str, seconds: list[float], codes: dict[str, int] | None = None) -> None:
        self.samples.setdefault(name, []).extend(seconds)
        for code, count in (codes or {}).items():
            kept = self.codes.setdefault(name, {})
            kept[code] = kept.get(code, 0) + count

    def p(self, name: str) -> dict[str, float]:
        return latency_summary(self.samples.get(name, []))


def stage_variants(variants: list[str], size: int) -> list[str]:
    """The small variants rows go to while the table grows to `size` (about 200 each)."""
    return variants[: max(20, min(len(variants), size // 400))]


async def build(stack: Stack, sizes: list[int]) -> list[tuple[int, str]]:
    """A database per size, each grown from a copy of the one before."""
    factory = CodeFactory(seed=41)
    variants = variant_ids(SMALL_VARIANTS, first=500_000)
    built: list[tuple[int, str]] = []
    stored = 0
    for size in sizes:
        name = f"{stack.name}_{size}"
        template = stack.databases.name(f"{stack.name}_{stored}") if built else None
        url = await stack.databases.create(name, template=template)
        print(f"scale: growing a table to {size:,} rows")
        rows, seconds = await copy_numbers(
            url,
            stream_rows(
                factory,
                variants=stage_variants(variants, size),
                big_variant=BIG_VARIANT,
                total=size - stored,
                command_id=f"bench-seed-{size}",
                chunk=100_000,
                seed=size,
            ),
            rebuild_indexes=size - stored > 200_000,
        )
        print(f"scale: {rows:,} rows in {seconds:.0f} s ({rows / seconds:,.0f}/s)")
        stored = size
        built.append((size, url))
    return built


async def run(stack: Stack, report: Report, options: Options) -> None:
    variants = variant_ids(SMALL_VARIANTS, first=500_000)
    built = await build(stack, options.sizes)
    rng = random.Random(17)
    sizes = [
        AtSize(
            size,
            Stack(stack.servers, stack.databases, stack.run_dir, f"{stack.name}{i}"),
            url,
            stage_variants(variants, size),
        )
        for i, (size, url) in enumerate(built)
    ]
    databases: list[PgDatabase] = []
    clients = []
    try:
        if options.measure_scale:
            for at in sizes:
                settings = await at.stack.setup(database_url=at.url)
                at.stack.start_worker()
                client = bench_client(settings)
                at.client = await client.__aenter__()
                clients.append(client)
                await at.stack.ready(at.client)
                database = await PgDatabase.connect(at.url, "disable", 2)
                databases.append(database)
                at.service = CommandService(database)
            for round_ in range(ROUNDS):
                print(f"scale: round {round_ + 1} of {ROUNDS}")
                for at in sizes:
                    await _measure(at, rng)
            for at in sizes:
                _report_size(report, at)
            if len(sizes) > 1:
                _report_ratio(report, sizes[0], sizes[-1])
        # The list is timed alone: idle workers and clients still poll Kafka.
        while clients:
            await clients.pop().__aexit__(None, None, None)
        for at in sizes:
            at.stack.stop_worker()
        if options.measure_list:
            database = await PgDatabase.connect(sizes[-1].url, "disable", 2)
            databases.append(database)
            await list_pages.run(
                report,
                sizes[-1].url,
                CommandService(database),
                variant=BIG_VARIANT,
                stored=sizes[-1].size,
                offsets=options.list_offsets,
            )
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)
        for database in databases:
            await database.close()
        for at in sizes:
            await at.stack.teardown()


async def release_reserved(url: str) -> None:
    """Free again what the measurements reserved, so that every round starts alike."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE unique_numbers SET is_reserved = false, reserved_by_command = NULL, "
            "reserved_at = NULL WHERE reserved_by_command IS NOT NULL"
        )
    finally:
        await conn.close()


def spread(pool: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` variants of `pool`, each as often as the others, in a random order (so that
    no variant runs out of free numbers before the others)."""
    picks = [pool[i % len(pool)] for i in range(count)]
    rng.shuffle(picks)
    return picks


def _list_picks(pool: list[str], count: int, rng: random.Random) -> list[str]:
    """Mostly small variants, one list in ten of the large one."""
    return [
        pool[rng.randrange(len(pool))] if rng.random() < 0.9 else BIG_VARIANT for _ in range(count)
    ]


async def _measure(at: AtSize, rng: random.Random) -> None:
    """One round on one size: end to end through its worker, then through the service."""
    assert at.client is not None
    assert at.service is not None
    count = int(E2E_RATE * E2E_SECONDS)
    reserves = spread(at.pool, count, rng)
    lat, codes = await open_loop(
        at.client,
        "reserve",
        [(v, {"variant_id": v, "type_unique_number": "UIT"}) for v in reserves],
        E2E_RATE,
    )
    at.add("e2e reserve", lat, codes)
    lists = _list_picks(at.pool, count, rng)
    lat, codes = await open_loop(
        at.client, "list", [(v, {"variantId": v, "size": 10}) for v in lists], E2E_RATE
    )
    at.add("e2e list", lat, codes)
    await release_reserved(at.url)

    service = at.service
    tag = new_id()[:6]
    direct = spread(at.pool, DIRECT_CALLS, rng)
    direct_lists = _list_picks(at.pool, DIRECT_CALLS, rng)

    async def reserve_one(i: int) -> object:
        body = {"variant_id": direct[i], "type_unique_number": "UIT"}
        command = ReserveCommand.model_validate(body)
        return await service.apply(IncomingCommand(f"d-{tag}-{i}", CommandName.RESERVE, command))

    async def list_one(i: int) -> object:
        command = ListCommand.model_validate({"variantId": direct_lists[i], "size": 10})
        return await service.apply(IncomingCommand(f"l-{tag}-{i}", CommandName.LIST, command))

    at.add("db reserve", await timed(DIRECT_CALLS, reserve_one))
    at.add("db list", await timed(DIRECT_CALLS, list_one))
    await release_reserved(at.url)


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def _report_size(report: Report, at: AtSize) -> None:
    expected = {"ok": int(E2E_RATE * E2E_SECONDS) * ROUNDS}
    ok = all(at.codes.get(name) == expected for name in ("e2e reserve", "e2e list"))
    report.add(
        Figure(
            scenario=f"scale: {at.size:,} numbers stored",
            figure=f"reserve p99 / list p99: end to end at {E2E_RATE}/s; database only",
            measured=(
                f"{ms(at.p('e2e reserve')['p99_ms'])} / {ms(at.p('e2e list')['p99_ms'])}; "
                f"{ms(at.p('db reserve')['p99_ms'])} / {ms(at.p('db list')['p99_ms'])}"
            )
            + ("" if ok else f"; results {at.codes}"),
            reference=(
                f"p50: {ms(at.p('e2e reserve')['p50_ms'])} / {ms(at.p('e2e list')['p50_ms'])}; "
                f"{ms(at.p('db reserve')['p50_ms'])} / {ms(at.p('db list')['p50_ms'])} "
                f"({ROUNDS} rounds interleaved with the other sizes)"
            ),
            target="",
            met=None,
            data={
                "size": at.size,
                **{name: at.p(name) for name in at.samples},
                "results": at.codes,
            },
        )
    )


def _report_ratio(report: Report, small: AtSize, large: AtSize) -> None:
    names = ("e2e reserve", "e2e list", "db reserve", "db list")
    ratios = {n: large.p(n)["p99_ms"] / small.p(n)["p99_ms"] for n in names}
    report.add(
        Figure(
            scenario=f"scale: {_size(large.size)} against {_size(small.size)}",
            figure="p99 ratio: reserve, list",
            measured=(
                f"end to end {ratios['e2e reserve']:.2f}x, {ratios['e2e list']:.2f}x; "
                f"database only {ratios['db reserve']:.2f}x, {ratios['db list']:.2f}x"
            ),
            reference="the same rounds, the sizes interleaved",
            target=f"<= {RATIO_TARGET}x",
            met=all(r <= RATIO_TARGET for r in ratios.values()),
            data=ratios,
        )
    )
