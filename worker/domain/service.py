"""Applying one command: one transaction, at most once per command id, result stored with it."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from schemas.commands import Command, CommandName
from schemas.results import AnyResult, ErrorCode, ErrorInfo, FailureResult, encode_result
from worker.domain import operations
from worker.domain.errors import CommandRefused
from worker.domain.ports import Database, NumberStore

log = structlog.get_logger(__name__)

Operation = Callable[[NumberStore, str, Any], Awaitable[AnyResult]]

OPERATIONS: dict[CommandName, Operation] = {
    CommandName.LOAD_JSON: operations.load_json,
    CommandName.LOAD_EXCEL: operations.load_excel,
    CommandName.LIST: operations.list_numbers,
    CommandName.RESERVE: operations.reserve,
    CommandName.MARK_USED: operations.mark_used,
}

# Reads change nothing, so they are answered afresh each time and not kept in the command log.
_READ_ONLY = frozenset({CommandName.LIST})


@dataclass(frozen=True)
class IncomingCommand:
    command_id: str
    name: CommandName
    body: Command

    def payload_hash(self) -> bytes:
        """Identifies what was asked, whatever carried the command id (body or header)."""
        canonical = self.body.model_dump_json(exclude={"command_id"}, by_alias=True)
        return hashlib.sha256(f"{self.name}\n{canonical}".encode()).digest()


def failure(command_id: str, name: str, error: ErrorInfo) -> FailureResult:
    return FailureResult(command_id=command_id, command=name, error=error)


class CommandService:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def apply(self, command: IncomingCommand) -> bytes:
        """The result body for `command`, applying it unless its id was applied before.

        Storage errors (the server down, a broken connection) propagate: the caller retries,
        and the transaction they interrupted has left nothing behind.
        """
        operation = OPERATIONS[command.name]
        async with self._database.transaction() as store:
            if command.name in _READ_ONLY:
                return await self._run(operation, store, command)
            payload_hash = command.payload_hash()
            if not await store.claim_command(command.command_id, command.name, payload_hash):
                return await self._replay(store, command, payload_hash)
            body = await self._run(operation, store, command)
            await store.save_result(command.command_id, body)
            return body

    async def _run(
        self, operation: Operation, store: NumberStore, command: IncomingCommand
    ) -> bytes:
        try:
            # A savepoint, so that a refusal undoes the operation's writes but keeps the claim.
            async with store.savepoint():
                result = await operation(store, command.command_id, command.body)
        except CommandRefused as refusal:
            log.info(
                "command_refused",
                command_id=command.command_id,
                command=command.name.value,
                code=refusal.code.value,
                reason=refusal.message,
            )
            result = failure(command.command_id, command.name.value, refusal.info())
        return encode_result(result)

    async def _replay(
        self, store: NumberStore, command: IncomingCommand, payload_hash: bytes
    ) -> bytes:
        stored = await store.stored_command(command.command_id)
        if stored is None or stored.result is None:  # pragma: no cover - claim said it exists
            raise RuntimeError(f"command {command.command_id!r} is claimed but has no result")
        if stored.command != command.name.value or stored.payload_hash != payload_hash:
            return encode_result(
                failure(
                    command.command_id,
                    command.name.value,
                    ErrorInfo(
                        code=ErrorCode.COMMAND_ID_REUSED,
                        message=(
                            f"command id {command.command_id!r} was already used for a different "
                            f"{stored.command} command; give every new command a new id"
                        ),
                    ),
                )
            )
        log.info("command_replayed", command_id=command.command_id, command=command.name.value)
        return stored.result
