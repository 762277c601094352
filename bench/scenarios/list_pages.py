"""list: the first page and deep pages of one variant that holds half of all rows.

Each page is asked by `page`/`size` and by the keyset cursor `after`, with the worker's own list
statement (PgNumberStore.list_numbers, prepared, on one connection: database only, since Kafka
would add its constant ~10 ms and hide the query) and, for reference, through the worker's
service (its transaction and the result's JSON). The query plans are printed with the report.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bench.loops import timed
from bench.report import Figure, Report, latency_summary, ms
from bench.stack import new_id
from schemas.commands import CommandName, ListCommand
from worker.domain.service import CommandService, IncomingCommand
from worker.storage.numbers import PgNumberStore
from worker.storage.queries import queries

OFFSETS = [0, 100_000, 1_000_000]
PAGE_SIZE = 100
FIRST_PAGE_TARGET_MS = 5.0
DEEP_PAGE_TARGET_MS = 50.0
CALLS = 200
BUDGET_S = 10.0


def has_cursor() -> bool:
    return "after" in ListCommand.model_fields


async def run(
    report: Report,
    url: str,
    service: CommandService,
    *,
    variant: str,
    stored: int,
    offsets: list[int],
) -> None:
    conn = await asyncpg.connect(url)
    try:
        rows_of_variant = await conn.fetchval(
            "SELECT count(*) FROM unique_numbers WHERE variant_id = $1", variant
        )
        tag = new_id()[:6]
        store = PgNumberStore(conn)
        for offset in offsets:
            if offset >= rows_of_variant:
                continue
            after: int | None = None
            if offset > 0:
                after = await conn.fetchval(
                    "SELECT id FROM unique_numbers WHERE variant_id = $1 ORDER BY id "
                    "OFFSET $2 LIMIT 1",
                    variant,
                    offset - 1,
                )
            ways: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
            by_page = {"variantId": variant, "page": offset // PAGE_SIZE, "size": PAGE_SIZE}
            ways["page/size"] = (
                await _time_statement(store, variant, offset, None),
                await _time_service(service, by_page, tag),
            )
            if has_cursor() and after is not None:
                by_cursor = {"variantId": variant, "size": PAGE_SIZE, "after": str(after)}
                ways["cursor (`after`)"] = (
                    await _time_statement(store, variant, 0, after),
                    await _time_service(service, by_cursor, tag),
                )
            target = FIRST_PAGE_TARGET_MS if offset == 0 else DEEP_PAGE_TARGET_MS
            best = min(statement["p99_ms"] for statement, _ in ways.values())
            report.add(
                Figure(
                    scenario=(
                        f"list, {'first page' if offset == 0 else f'page at offset {offset:,}'} "
                        f"of a variant of {rows_of_variant:,} rows ({stored:,} stored)"
                    ),
                    figure=f"p99 of the worker's list statement, {PAGE_SIZE} a page",
                    measured="; ".join(
                        f"{way}: {ms(statement['p99_ms'])}" for way, (statement, _) in ways.items()
                    ),
                    reference="through the worker's service (its transaction, the result JSON): "
                    + "; ".join(
                        f"{way} p99 {ms(service_call['p99_ms'])}"
                        for way, (_, service_call) in ways.items()
                    ),
                    target=f"p99 <= {target:.0f} ms",
                    met=best <= target,
                    data={
                        "offset": offset,
                        **{
                            way: {"statement": statement, "service": service_call}
                            for way, (statement, service_call) in ways.items()
                        },
                    },
                )
            )
            await _plans(report, conn, variant, offset, after)
    finally:
        await conn.close()


async def _time_statement(
    store: PgNumberStore, variant: str, offset: int, after: int | None
) -> dict[str, float]:
    """The worker's list statement alone, prepared, on one connection."""

    async def call(_: int) -> object:
        return await store.list_numbers(variant, None, PAGE_SIZE + 1, offset, after)

    await call(-1)  # prepare it
    return latency_summary(await timed(CALLS, call, budget_s=BUDGET_S))


async def _time_service(
    service: CommandService, body: dict[str, Any], tag: str
) -> dict[str, float]:
    command = ListCommand.model_validate(body)

    async def call(i: int) -> object:
        return await service.apply(IncomingCommand(f"lp-{tag}-{i}", CommandName.LIST, command))

    await call(-1)  # warm the connection's statement cache
    return latency_summary(await timed(CALLS, call, budget_s=BUDGET_S))


async def _plans(
    report: Report, conn: asyncpg.Connection, variant: str, offset: int, after: int | None
) -> None:
    """The plans of the worker's list statements for this page (as the worker runs them:
    prepared, so also the generic plan a prepared statement may switch to)."""
    sql = queries()
    if offset == 0:
        report.plans[
            "list, first page (generic plan of the prepared statement)"
        ] = await _generic_plan(conn, sql["list_numbers"], variant, PAGE_SIZE + 1, 0)
        small = await conn.fetchval(
            "SELECT variant_id FROM unique_numbers WHERE variant_id <> $1 LIMIT 1", variant
        )
        report.plans["list, first page of a small variant (generic plan)"] = await _generic_plan(
            conn, sql["list_numbers"], small, PAGE_SIZE + 1, 0
        )
    else:
        report.plans[f"list, page/size at offset {offset:,}"] = await _explain(
            conn, sql["list_numbers"], variant, PAGE_SIZE + 1, offset
        )
        if after is not None and "list_numbers_after" in sql:
            report.plans[f"list, cursor at offset {offset:,} (generic plan)"] = await _generic_plan(
                conn, sql["list_numbers_after"], variant, after, PAGE_SIZE + 1
            )


async def _explain(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", *args)
    return "\n".join(r[0] for r in rows)


async def _generic_plan(conn: asyncpg.Connection, sql: str, *args: object) -> str:
    """EXPLAIN EXECUTE of `sql` prepared, with the generic plan forced."""
    literals = [await conn.fetchval("SELECT quote_literal($1::text)", str(a)) for a in args]
    async with conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE bench_plan AS {sql}")
        try:
            rows = await conn.fetch(
                f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE bench_plan({', '.join(literals)})"
            )
        finally:
            await conn.execute("DEALLOCATE bench_plan")
    return "\n".join(r[0] for r in rows)
