"""NumberStore over one asyncpg connection in an open transaction: the domain's only SQL door."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import repeat
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from worker.domain.ports import (
    Conflict,
    NumberRow,
    ReserveRequest,
    StoredCommand,
    StoredNumber,
)
from worker.storage.queries import query

# A connection, whether taken from the pool or opened alone.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# Loads of at least this many numbers are tried with COPY first (below it, one INSERT is as
# quick and a failed COPY would cost more than it saves).
_COPY_FROM = 200
_COPY_COLUMNS = ("unique_number", "variant_id", "number_type", "loaded_by_command")


class PgNumberStore:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        async with self._conn.transaction():
            yield

    async def claim_command(self, command_id: str, command: str, payload_hash: bytes) -> bool:
        claimed = await self._conn.fetchval(
            query("claim_command"), command_id, command, payload_hash
        )
        return claimed is not None

    async def claim_commands(
        self, command_ids: Sequence[str], commands: Sequence[str], payload_hashes: Sequence[bytes]
    ) -> set[str]:
        rows = await self._conn.fetch(
            query("claim_commands"), command_ids, commands, payload_hashes
        )
        return {r["command_id"] for r in rows}

    async def save_results(self, command_ids: Sequence[str], results: Sequence[bytes]) -> None:
        await self._conn.execute(query("save_results"), command_ids, results)

    async def stored_command(self, command_id: str) -> StoredCommand | None:
        row = await self._conn.fetchrow(query("stored_result"), command_id)
        if row is None:
            return None
        return StoredCommand(row["command"], bytes(row["payload_hash"]), row["result"])

    async def save_result(self, command_id: str, result: bytes) -> None:
        await self._conn.execute(query("save_result"), command_id, result)

    async def insert_numbers(
        self,
        numbers: Sequence[str],
        variant_ids: Sequence[str],
        types: Sequence[str],
        command_id: str,
    ) -> int:
        # The usual load is of new numbers only: COPY them, as fast as the table takes rows.
        # A number already stored makes the COPY fail on the unique constraint (having waited
        # for a concurrent load of it to end); the savepoint then undoes the COPY and the
        # insert below skips the stored numbers one by one.
        if len(numbers) >= _COPY_FROM:
            try:
                async with self._conn.transaction():
                    await self._conn.copy_records_to_table(
                        "unique_numbers",
                        records=zip(numbers, variant_ids, types, repeat(command_id), strict=False),
                        columns=_COPY_COLUMNS,
                    )
                return len(numbers)
            except asyncpg.UniqueViolationError:
                pass
        status = await self._conn.execute(
            query("insert_numbers"), numbers, variant_ids, types, command_id
        )
        return int(status.rsplit(" ", 1)[1])  # "INSERT 0 <rows>"

    async def conflicting_numbers(
        self, numbers: Sequence[str], variant_ids: Sequence[str], types: Sequence[str], limit: int
    ) -> list[Conflict]:
        rows = await self._conn.fetch(
            query("conflicting_numbers"), numbers, variant_ids, types, limit
        )
        return [Conflict(r["ord"] - 1, r["variant_id"], r["number_type"]) for r in rows]

    async def reserve_number(
        self,
        variant_id: str,
        number_type: str,
        command_id: str,
        purchase_order: str,
        physical_set: str,
    ) -> str | None:
        number: str | None = await self._conn.fetchval(
            query("reserve_number"),
            variant_id,
            number_type,
            command_id,
            purchase_order,
            physical_set,
        )
        return number

    async def reserve_numbers(self, requests: Sequence[ReserveRequest]) -> list[str | None]:
        rows = await self._conn.fetch(
            query("reserve_numbers"),
            [r.variant_id for r in requests],
            [r.number_type for r in requests],
            [r.command_id for r in requests],
            [r.purchase_order for r in requests],
            [r.physical_set for r in requests],
        )
        numbers: list[str | None] = [None] * len(requests)
        for row in rows:
            numbers[row["ord"] - 1] = row["unique_number"]
        return numbers

    async def number_for_update(self, unique_number: str) -> StoredNumber | None:
        row = await self._conn.fetchrow(query("number_for_update"), unique_number)
        if row is None:
            return None
        return StoredNumber(row["variant_id"], row["number_type"], row["is_used"])

    async def mark_used(self, unique_number: str, command_id: str) -> None:
        await self._conn.execute(query("mark_used"), unique_number, command_id)

    async def list_numbers(
        self,
        variant_id: str,
        is_used: bool | None,
        limit: int,
        offset: int,
        after: int | None = None,
    ) -> list[NumberRow]:
        if after is not None:
            if is_used is None:
                rows = await self._conn.fetch(query("list_numbers_after"), variant_id, after, limit)
            else:
                rows = await self._conn.fetch(
                    query("list_numbers_by_used_after"), variant_id, is_used, after, limit
                )
        elif is_used is None:
            rows = await self._conn.fetch(query("list_numbers"), variant_id, limit, offset)
        else:
            rows = await self._conn.fetch(
                query("list_numbers_by_used"), variant_id, is_used, limit, offset
            )
        return [
            NumberRow(
                id=r["id"],
                unique_number=r["unique_number"],
                number_type=r["number_type"],
                is_reserved=r["is_reserved"],
                is_used=r["is_used"],
                disabled=r["disabled"],
                purchase_order=r["purchase_order"],
                physical_set=r["physical_set"],
            )
            for r in rows
        ]
