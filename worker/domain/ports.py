"""What the domain needs from storage. The domain never imports asyncpg; storage implements this."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


class StorageUnavailable(Exception):
    """The database cannot be reached right now; the same command may succeed when tried again."""


@dataclass(frozen=True)
class StoredCommand:
    command: str
    payload_hash: bytes
    result: bytes | None


@dataclass(frozen=True)
class StoredNumber:
    variant_id: str
    number_type: str
    is_used: bool


@dataclass(frozen=True)
class Conflict:
    index: int  # 0-based position in the load's number list
    variant_id: str
    number_type: str


@dataclass(frozen=True)
class ReserveRequest:
    variant_id: str
    number_type: str
    command_id: str
    purchase_order: str
    physical_set: str


@dataclass(frozen=True)
class NumberRow:
    unique_number: str
    number_type: str
    is_reserved: bool
    is_used: bool
    disabled: bool
    purchase_order: str
    physical_set: str
    id: int = 0  # load order; the keyset cursor of a list


class NumberStore(Protocol):
    """Operations on the numbers and the command log, all inside one open transaction."""

    def savepoint(self) -> AbstractAsyncContextManager[None]: ...

    async def claim_command(self, command_id: str, command: str, payload_hash: bytes) -> bool: ...

    async def claim_commands(
        self, command_ids: Sequence[str], commands: Sequence[str], payload_hashes: Sequence[bytes]
    ) -> set[str]:
        """Claim many command ids at once; returns those claimed now."""

    async def save_results(self, command_ids: Sequence[str], results: Sequence[bytes]) -> None: ...

    async def stored_command(self, command_id: str) -> StoredCommand | None: ...

    async def save_result(self, command_id: str, result: bytes) -> None: ...

    async def insert_numbers(
        self,
        numbers: Sequence[str],
        variant_ids: Sequence[str],
        types: Sequence[str],
        command_id: str,
    ) -> int: ...

    async def conflicting_numbers(
        self, numbers: Sequence[str], variant_ids: Sequence[str], types: Sequence[str], limit: int
    ) -> list[Conflict]: ...

    async def reserve_number(
        self,
        variant_id: str,
        number_type: str,
        command_id: str,
        purchase_order: str,
        physical_set: str,
    ) -> str | None: ...

    async def reserve_numbers(self, requests: Sequence[ReserveRequest]) -> list[str | None]:
        """`reserve_number` for each request in turn, in one statement; None: no free number."""

    async def number_for_update(self, unique_number: str) -> StoredNumber | None: ...

    async def mark_used(self, unique_number: str, command_id: str) -> None: ...

    async def list_numbers(
        self,
        variant_id: str,
        is_used: bool | None,
        limit: int,
        offset: int,
        after: int | None = None,
    ) -> list[NumberRow]:
        """A page in load order: `limit` rows after skipping `offset`, or after id `after`."""


class Database(Protocol):
    """Hands out a NumberStore bound to a fresh transaction, committed when the block ends.

    Raises StorageUnavailable, with nothing committed, when the database is unreachable.
    """

    def transaction(self) -> AbstractAsyncContextManager[NumberStore]: ...
