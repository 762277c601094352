"""From consumed records to the records that answer them: decode, apply, and write the results
(and the dead-letter copies of what could not be read). No Kafka client here: what to publish
is returned, and the partition's lane publishes it (`worker/transport/lanes.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import structlog

from schemas.commands import CommandName
from schemas.fields import LIMITS
from schemas.results import ErrorCode, ErrorInfo, encode_result
from worker.config import Settings
from worker.domain.ports import StorageUnavailable
from worker.domain.service import CommandService, IncomingCommand, failure
from worker.transport.decoding import COMMAND_ID_HEADER, Rejected, decode_command
from worker.transport.records import OutgoingRecord, SourceRecord

log = structlog.get_logger(__name__)

T = TypeVar("T")


def source_record(record: object) -> SourceRecord:
    """The parts of an aiokafka ConsumerRecord the worker uses."""
    return SourceRecord(
        topic=record.topic,  # type: ignore[attr-defined]
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        key=record.key,  # type: ignore[attr-defined]
        value=record.value,  # type: ignore[attr-defined]
        headers=list(record.headers or ()),  # type: ignore[attr-defined]
    )


class RecordAnswerer(Protocol):
    async def answer(
        self, records: list[SourceRecord], stop: asyncio.Event
    ) -> list[OutgoingRecord]: ...


class Answerer:
    """Answers the records of one partition's batch, in order: one result per record, and a
    dead-letter copy of each record that is not a command (or that the worker failed on).

    The batch's commands are applied in one database transaction (`apply_batch`); if that
    fails other than by an outage, one by one, so that a defect answers its own command only.
    A database outage is waited out, never answered; once `stop` is set it is raised instead.
    """

    def __init__(self, settings: Settings, service: CommandService) -> None:
        self._settings = settings
        self._service = service
        self._command_topics: dict[str, CommandName] = settings.command_topics()

    async def answer(
        self, records: list[SourceRecord], stop: asyncio.Event
    ) -> list[OutgoingRecord]:
        decoded = [self._decode(r) for r in records]
        commands = [d for d in decoded if isinstance(d, IncomingCommand)]
        bodies: list[bytes | None] = [None] * len(commands)
        try:
            bodies = [*await self._until_stored(lambda: self._service.apply_batch(commands), stop)]
        except StorageUnavailable:
            raise
        except Exception:
            log.exception("batch_failed_applying_one_by_one", commands=len(commands))
        answered = dict(zip(map(id, commands), bodies, strict=True))
        out: list[OutgoingRecord] = []
        for record, command in zip(records, decoded, strict=True):
            body = answered.get(id(command))
            if body is None:  # rejected, or the batch failed: the one-command path
                out.extend(await self._answer_one(record, command, stop))
            else:
                out.append(self._result(record, command.command_id, body))
        return out

    def _decode(self, record: SourceRecord) -> IncomingCommand | Rejected:
        return decode_command(
            record, self._command_topics[record.topic], self._settings.message_max_bytes
        )

    async def _answer_one(
        self, record: SourceRecord, decoded: IncomingCommand | Rejected, stop: asyncio.Event
    ) -> list[OutgoingRecord]:
        name = self._command_topics[record.topic]
        if isinstance(decoded, Rejected):
            log.warning(
                "command_rejected",
                source=record.position,
                command_id=decoded.command_id,
                code=decoded.error.code.value,
                reason=decoded.error.message,
            )
            return self._refusal(record, decoded.command_id, name, decoded.error)
        command = decoded
        try:
            body = await self._until_stored(lambda: self._service.apply(command), stop)
        except StorageUnavailable:
            raise
        except Exception as exc:  # a defect, not the input's fault: answer, keep the copy, go on
            log.exception("command_failed", source=record.position, command_id=command.command_id)
            error = ErrorInfo(
                code=ErrorCode.INTERNAL_ERROR,
                message=(
                    f"the worker failed on this {name.value} command ({type(exc).__name__}); "
                    "nothing of it was stored and a copy is on the dead-letter topic for replay"
                ),
            )
            return self._refusal(record, command.command_id, name, error)
        return [self._result(record, command.command_id, body)]

    async def _until_stored(self, apply: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
        """`apply()`, again and again while the database is unavailable (until `stop`)."""
        delay = 0.1
        while True:
            try:
                return await apply()
            except StorageUnavailable as exc:
                if stop.is_set():
                    raise
                log.warning("database_unavailable", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._settings.database_retry_max_seconds)

    def _refusal(
        self, record: SourceRecord, command_id: str, name: CommandName, error: ErrorInfo
    ) -> list[OutgoingRecord]:
        body = encode_result(failure(command_id, name.value, error))
        return [
            self._result(record, command_id, body),
            self._dead_letter(record, command_id, error),
        ]

    def _result(self, record: SourceRecord, command_id: str, body: bytes) -> OutgoingRecord:
        return OutgoingRecord(
            topic=self._settings.topic_results,
            # A key over the limit (refused by decode_command) is not echoed: it could make the
            # result larger than the results topic takes, and the batch would never commit.
            key=record.key if len(record.key or b"") <= LIMITS.record_key_bytes else None,
            value=body,
            headers=[(COMMAND_ID_HEADER, command_id.encode("utf-8"))],
        )

    def _dead_letter(
        self, record: SourceRecord, command_id: str, error: ErrorInfo
    ) -> OutgoingRecord:
        """The record untouched (key, value, headers), with why and whence in added headers."""
        value = record.value if record.value is not None else b""
        extra = [
            ("dead-letter-reason", error.message.encode("utf-8")),
            ("dead-letter-code", error.code.value.encode()),
            ("dead-letter-source", record.position.encode("utf-8")),
            ("dead-letter-command-id", command_id.encode("utf-8")),
        ]
        return OutgoingRecord(
            topic=self._settings.topic_dead_letter,
            key=record.key,
            value=value,
            headers=record.headers + extra,
        )
