"""Applying commands: at most once per command id, each result stored with its effect.

`apply` runs one command in a transaction of its own; `apply_batch` runs the commands of one
partition's batch in one transaction (one commit instead of one per command), each still all
or nothing: a refusal undoes its own writes only, and any other failure undoes the whole batch
(the caller then applies the commands one by one, so a defect answers its own command only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import structlog

from schemas.commands import Command, CommandName, ReserveCommand
from schemas.results import AnyResult, ErrorCode, ErrorInfo, FailureResult, encode_result
from worker.domain import operations
from worker.domain.errors import CommandRefused
from worker.domain.loading import NumbersToLoad
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
# Operations that may write before they refuse (a load inserts, then finds a conflict): they
# run in a savepoint so that a refusal undoes their writes. The others refuse before they
# write anything, so they are spared the savepoint's two round trips.
_WRITE_BEFORE_REFUSING = frozenset({CommandName.LOAD_JSON, CommandName.LOAD_EXCEL})


@dataclass(frozen=True)
class PreparedLoad:
    """A load-json command read straight into what applying it takes (worker/transport/
    decoding.py does so when it can): its numbers as columns and its payload hash, so that its
    model, 50,000 objects for a load of 50,000 numbers, is built only if something asks for it."""

    numbers: NumbersToLoad
    payload_hash: bytes
    build_body: Callable[[], Command]


def payload_hash_of(name: CommandName, canonical_json: bytes) -> bytes:
    """The payload hash of a command of `name` whose body, less its command id, is
    `canonical_json` as `model_dump_json(exclude={"command_id"}, by_alias=True)` writes it."""
    return hashlib.sha256(name.value.encode() + b"\n" + canonical_json).digest()


class IncomingCommand:
    """A decoded command: its id, its name and its body (the validated model), or, for a load
    read the fast way, its `PreparedLoad` (the body is then built on first use)."""

    __slots__ = ("_body", "command_id", "name", "prepared")

    def __init__(
        self,
        command_id: str,
        name: CommandName,
        body: Command | None = None,
        *,
        prepared: PreparedLoad | None = None,
    ) -> None:
        if (body is None) == (prepared is None):
            raise TypeError("give the command's body or its prepared load, one of them")
        self.command_id = command_id
        self.name = name
        self._body = body
        self.prepared = prepared

    @property
    def body(self) -> Command:
        if self._body is None:
            assert self.prepared is not None
            self._body = self.prepared.build_body()
        return self._body

    @property
    def operand(self) -> Any:
        """What the command's operation takes: its body, or the numbers of a prepared load."""
        return self.prepared.numbers if self.prepared is not None else self.body

    def payload_hash(self) -> bytes:
        """Identifies what was asked, whatever carried the command id (body or header)."""
        if self.prepared is not None:
            return self.prepared.payload_hash
        canonical = self.body.model_dump_json(exclude={"command_id"}, by_alias=True)
        return payload_hash_of(self.name, canonical.encode())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IncomingCommand):
            return NotImplemented
        return (self.command_id, self.name, self.body) == (other.command_id, other.name, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = "(prepared load)" if self._body is None else repr(self._body)
        return f"IncomingCommand(command_id={self.command_id!r}, name={self.name!r}, body={body})"


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

    async def apply_batch(self, commands: Sequence[IncomingCommand]) -> list[bytes]:
        """The result bodies of `commands`, in order, applied in one transaction.

        The command ids are claimed in one statement and the results saved in another; a
        command id claimed before (or earlier in the same batch) is answered as `apply` would.
        Consecutive reserves are applied together, in one statement (`reserve_many`), with the
        outcome of reserving one after the other. Storage errors propagate as with `apply`; so
        does any other exception, after which nothing of the batch is stored.
        """
        if not commands:
            return []
        async with self._database.transaction() as store:
            hashes = [c.payload_hash() if c.name not in _READ_ONLY else b"" for c in commands]
            first: dict[str, tuple[str, bytes]] = {}  # each id as it first comes in the batch
            for command, payload_hash in zip(commands, hashes, strict=True):
                if command.name not in _READ_ONLY:
                    first.setdefault(command.command_id, (command.name.value, payload_hash))
            claimed: set[str] = set()
            if first:
                ids = list(first)
                claimed = await store.claim_commands(
                    ids, [first[i][0] for i in ids], [first[i][1] for i in ids]
                )
            applied: dict[str, tuple[CommandName, bytes, bytes]] = {}
            bodies: list[bytes] = [b""] * len(commands)
            reserves: dict[str, int] = {}  # claimed reserves waiting to be applied together

            async def apply_reserves() -> None:
                if not reserves:
                    return
                waiting = [commands[i] for i in reserves.values()]
                outcomes = await operations.reserve_many(
                    store, [(c.command_id, cast(ReserveCommand, c.body)) for c in waiting]
                )
                for i, command, outcome in zip(reserves.values(), waiting, outcomes, strict=True):
                    body = _body(command, outcome)
                    applied[command.command_id] = (command.name, hashes[i], body)
                    bodies[i] = body
                reserves.clear()

            for i, (command, payload_hash) in enumerate(zip(commands, hashes, strict=True)):
                if (
                    command.name is CommandName.RESERVE
                    and command.command_id in claimed
                    and command.command_id not in applied
                    and command.command_id not in reserves
                ):
                    reserves[command.command_id] = i
                    continue
                await apply_reserves()  # whatever follows a reserve sees its effect
                operation = OPERATIONS[command.name]
                earlier = applied.get(command.command_id)
                if command.name in _READ_ONLY:
                    bodies[i] = await self._run(operation, store, command)
                elif earlier is not None:
                    bodies[i] = self._answer_again(command, payload_hash, *earlier)
                elif command.command_id in claimed:
                    bodies[i] = await self._run(operation, store, command)
                    applied[command.command_id] = (command.name, payload_hash, bodies[i])
                else:
                    bodies[i] = await self._replay(store, command, payload_hash)
            await apply_reserves()
            if applied:
                ids = list(applied)
                await store.save_results(ids, [applied[i][2] for i in ids])
            return bodies

    def _answer_again(
        self,
        command: IncomingCommand,
        payload_hash: bytes,
        name: CommandName,
        stored_hash: bytes,
        body: bytes,
    ) -> bytes:
        """A command whose id was applied earlier in the same batch."""
        if name != command.name or stored_hash != payload_hash:
            return _id_reused(command, name.value)
        log.info("command_replayed", command_id=command.command_id, command=command.name.value)
        return body

    async def _run(
        self, operation: Operation, store: NumberStore, command: IncomingCommand
    ) -> bytes:
        try:
            if command.name in _WRITE_BEFORE_REFUSING:
                # A savepoint, so that a refusal undoes the operation's writes but keeps the claim.
                async with store.savepoint():
                    result = await operation(store, command.command_id, command.operand)
            else:
                result = await operation(store, command.command_id, command.operand)
        except CommandRefused as refusal:
            return _body(command, refusal)
        return _body(command, result)

    async def _replay(
        self, store: NumberStore, command: IncomingCommand, payload_hash: bytes
    ) -> bytes:
        stored = await store.stored_command(command.command_id)
        if stored is None or stored.result is None:  # pragma: no cover - claim said it exists
            raise RuntimeError(f"command {command.command_id!r} is claimed but has no result")
        if stored.command != command.name.value or stored.payload_hash != payload_hash:
            return _id_reused(command, stored.command)
        log.info("command_replayed", command_id=command.command_id, command=command.name.value)
        return stored.result


def _id_reused(command: IncomingCommand, stored_command: str) -> bytes:
    return encode_result(
        failure(
            command.command_id,
            command.name.value,
            ErrorInfo(
                code=ErrorCode.COMMAND_ID_REUSED,
                message=(
                    f"command id {command.command_id!r} was already used for a different "
                    f"{stored_command} command; give every new command a new id"
                ),
            ),
        )
    )


def _body(command: IncomingCommand, outcome: AnyResult | CommandRefused) -> bytes:
    """The result body of an operation's result or refusal (which is logged)."""
    if isinstance(outcome, CommandRefused):
        log.info(
            "command_refused",
            command_id=command.command_id,
            command=command.name.value,
            code=outcome.code.value,
            reason=outcome.message,
        )
        outcome = failure(command.command_id, command.name.value, outcome.info())
    return encode_result(outcome)
