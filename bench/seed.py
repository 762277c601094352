"""Filling the worker's own table directly with COPY (not through Kafka), fast."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import asyncpg

COLUMNS = (
    "unique_number",
    "variant_id",
    "number_type",
    "loaded_by_command",
    "is_used",
    "is_reserved",
)


async def copy_numbers(
    url: str, chunks: Iterable[Sequence[tuple[object, ...]]], rebuild_indexes: bool
) -> tuple[int, float]:
    """COPY the rows of `chunks` into unique_numbers; returns (rows, seconds).

    With `rebuild_indexes`, the table's secondary indexes and its unique constraint are
    dropped first and built again afterwards (as pg_restore does): much faster for millions
    of rows. Their definitions are read from the catalog, so whatever the migrations made
    comes back as it was.
    """
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    rows = 0
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        constraints: list[tuple[str, str]] = []
        indexes: list[str] = []
        if rebuild_indexes:
            constraints = [
                (r["conname"], r["def"])
                for r in await conn.fetch(
                    """SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                       WHERE conrelid = 'unique_numbers'::regclass AND contype = 'u'"""
                )
            ]
            indexes = [
                r["indexdef"]
                for r in await conn.fetch(
                    """SELECT i.indexdef FROM pg_indexes i
                       WHERE i.tablename = 'unique_numbers'
                         AND i.indexname NOT IN (
                             SELECT conname FROM pg_constraint
                             WHERE conrelid = 'unique_numbers'::regclass)"""
                )
            ]
            for name, _ in constraints:
                await conn.execute(f'ALTER TABLE unique_numbers DROP CONSTRAINT "{name}"')
            for definition in indexes:
                name = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
                await conn.execute(f"DROP INDEX {name}")
        for chunk in chunks:
            await conn.copy_records_to_table("unique_numbers", records=chunk, columns=COLUMNS)
            rows += len(chunk)
        for name, definition in constraints:
            await conn.execute(f'ALTER TABLE unique_numbers ADD CONSTRAINT "{name}" {definition}')
        for definition in indexes:
            await conn.execute(definition)
        await conn.execute("VACUUM (ANALYZE) unique_numbers")
    finally:
        await conn.close()
    return rows, time.perf_counter() - started
