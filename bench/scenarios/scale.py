"""scale: reserve and list latency with 10k, 1M and 10M numbers stored; then the list
scenario's deep pages on the largest table.

The table is filled directly with COPY (bench/seed.py), in the shape of a table in service:
half of all rows belong to one large variant, interleaved in load order with the rows of
a couple of thousand others, and half of all rows are used already.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.data import CodeFactory, stream_rows, variant_ids
from bench.loops import open_loop, timed
from bench.report import Figure, Report, latency_summary, ms
from bench.scenarios import list_pages
from bench.seed import copy_numbers
from bench.stack import Stack, bench_client, new_id
from schemas.commands import CommandName, ListCommand, ReserveCommand
from worker.domain.service import CommandService, IncomingCommand
from worker.storage.database import PgDatabase

BIG_VARIANT = "900000"
SMALL_VARIANTS = 2000
RATIO_TARGET = 1.5
E2E_RATE = 200  # commands/s offered in the end-to-end measurements
E2E_SECONDS = 10.0
DIRECT_CALLS = 2000


@dataclass
class Options:
    sizes: list[int]
    measure_scale: bool
    list_offsets: list[int]
    measure_list: bool


@dataclass
class AtSize:
    size: int
    e2e_reserve: dict[str, float] = field(default_factory=dict)
    e2e_list: dict[str, float] = field(default_factory=dict)
    direct_reserve: dict[str, float] = field(default_factory=dict)
    direct_list: dict[str, float] = field(default_factory=dict)
    codes: dict[str, Any] = field(default_factory=dict)


def stage_variants(variants: list[str], size: int) -> list[str]:
    """The small variants rows go to while the table grows to `size` (about 200 each)."""
    return variants[: max(20, min(len(variants), size // 400))]


async def run(stack: Stack, report: Report, options: Options) -> None:
    url = await stack.databases.create(stack.name)
    settings = await stack.setup(database_url=url)
    factory = CodeFactory(seed=41)
    variants = variant_ids(SMALL_VARIANTS, first=500_000)
    database = await PgDatabase.connect(url, "disable", 2)
    service = CommandService(database)
    rng = random.Random(17)
    stored = 0
    measured: list[AtSize] = []
    try:
        async with bench_client(settings) as client:
            for size in options.sizes:
                print(f"scale: growing the table to {size:,} rows")
                grow = size - stored
                rows, seconds = await copy_numbers(
                    url,
                    stream_rows(
                        factory,
                        variants=stage_variants(variants, size),
                        big_variant=BIG_VARIANT,
                        total=grow,
                        command_id=f"bench-seed-{size}",
                        chunk=100_000,
                        seed=size,
                    ),
                    rebuild_indexes=grow > 200_000,
                )
                stored += rows
                print(f"scale: {rows:,} rows in {seconds:.0f} s ({rows / seconds:,.0f}/s)")
                if stack.worker is None:
                    stack.start_worker()
                    await stack.ready(client)
                pool = stage_variants(variants, size)
                if options.measure_scale:
                    measured.append(
                        await _measure(client, service, url, pool=pool, size=size, rng=rng)
                    )
                    _report_size(report, measured[-1])
            if options.measure_scale and len(measured) > 1:
                _report_ratio(report, measured[0], measured[-1])
            if options.measure_list:
                await list_pages.run(
                    report,
                    url,
                    service,
                    variant=BIG_VARIANT,
                    stored=stored,
                    offsets=options.list_offsets,
                )
    finally:
        await database.close()
        stack.stop_worker()


def spread(pool: list[str], count: int, rng: random.Random) -> list[str]:
    """`count` variants of `pool`, each as often as the others, in a random order (so that
    no variant runs out of free numbers before the others)."""
    picks = [pool[i % len(pool)] for i in range(count)]
    rng.shuffle(picks)
    return picks


async def release_reserved(url: str) -> None:
    """Free again what the measurements reserved, so that every size starts alike."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE unique_numbers SET is_reserved = false, reserved_by_command = NULL, "
            "reserved_at = NULL WHERE reserved_by_command IS NOT NULL"
        )
    finally:
        await conn.close()


async def _measure(
    client: Any,
    service: CommandService,
    url: str,
    *,
    pool: list[str],
    size: int,
    rng: random.Random,
) -> AtSize:
    at = AtSize(size)
    # End to end, through Kafka and the worker, at a modest fixed rate.
    count = int(E2E_RATE * E2E_SECONDS)
    picks = spread(pool, count, rng)
    lat, codes = await open_loop(
        client,
        "reserve",
        [(v, {"variant_id": v, "type_unique_number": "UIT"}) for v in picks],
        E2E_RATE,
    )
    at.e2e_reserve, at.codes["reserve"] = latency_summary(lat), codes
    lists = [pool[rng.randrange(len(pool))] if rng.random() < 0.9 else BIG_VARIANT for _ in picks]
    lat, codes = await open_loop(
        client, "list", [(v, {"variantId": v, "size": 10}) for v in lists], E2E_RATE
    )
    at.e2e_list, at.codes["list"] = latency_summary(lat), codes
    await release_reserved(url)

    # Database only: the worker's own service layer, one command at a time.
    tag = new_id()[:6]
    direct_picks = spread(pool, DIRECT_CALLS, rng)

    async def reserve_one(i: int) -> object:
        variant = direct_picks[i]
        command = ReserveCommand.model_validate(
            {"variant_id": variant, "type_unique_number": "UIT"}
        )
        return await service.apply(IncomingCommand(f"d-{tag}-{i}", CommandName.RESERVE, command))

    async def list_one(i: int) -> object:
        variant = pool[rng.randrange(len(pool))] if rng.random() < 0.9 else BIG_VARIANT
        command = ListCommand.model_validate({"variantId": variant, "size": 10})
        return await service.apply(IncomingCommand(f"l-{tag}-{i}", CommandName.LIST, command))

    at.direct_reserve = latency_summary(await timed(DIRECT_CALLS, reserve_one))
    at.direct_list = latency_summary(await timed(DIRECT_CALLS, list_one))
    await release_reserved(url)
    return at


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


def _report_size(report: Report, at: AtSize) -> None:
    ok = at.codes["reserve"] == {"ok": at.e2e_reserve["count"]} and at.codes["list"] == {
        "ok": at.e2e_list["count"]
    }
    report.add(
        Figure(
            scenario=f"scale: {at.size:,} numbers stored",
            figure=f"reserve p99 / list p99, end to end at {E2E_RATE}/s",
            measured=f"{ms(at.e2e_reserve['p99_ms'])} / {ms(at.e2e_list['p99_ms'])}"
            + ("" if ok else f"; results {at.codes}"),
            reference=(
                f"database only (the worker's service, no Kafka): reserve p99 "
                f"{ms(at.direct_reserve['p99_ms'])}, list p99 {ms(at.direct_list['p99_ms'])}"
            ),
            target="",
            met=None,
            data={
                "size": at.size,
                "e2e_reserve": at.e2e_reserve,
                "e2e_list": at.e2e_list,
                "direct_reserve": at.direct_reserve,
                "direct_list": at.direct_list,
                "results": at.codes,
            },
        )
    )


def _report_ratio(report: Report, small: AtSize, large: AtSize) -> None:
    ratios = {
        "e2e reserve": large.e2e_reserve["p99_ms"] / small.e2e_reserve["p99_ms"],
        "e2e list": large.e2e_list["p99_ms"] / small.e2e_list["p99_ms"],
        "db reserve": large.direct_reserve["p99_ms"] / small.direct_reserve["p99_ms"],
        "db list": large.direct_list["p99_ms"] / small.direct_list["p99_ms"],
    }
    # Judged on the database-only figures: end to end, the same Kafka transactions are added
    # at every size, and their noise on a shared machine is larger than the effect of size.
    report.add(
        Figure(
            scenario=f"scale: {_size(large.size)} against {_size(small.size)}",
            figure="p99 ratio, database only (the worker's service)",
            measured=f"reserve {ratios['db reserve']:.2f}x, list {ratios['db list']:.2f}x",
            reference=(
                f"end to end: reserve {ratios['e2e reserve']:.2f}x, list {ratios['e2e list']:.2f}x"
            ),
            target=f"<= {RATIO_TARGET}x",
            met=ratios["db reserve"] <= RATIO_TARGET and ratios["db list"] <= RATIO_TARGET,
            data=ratios,
        )
    )
