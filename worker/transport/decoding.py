"""Turning a consumed record into a command, or into the reason it is not one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.commands import COMMAND_MODELS, CommandName
from schemas.fields import LIMITS, identifier_problem
from schemas.results import ErrorCode, ErrorDetail, ErrorInfo
from worker.domain.errors import count_phrase
from worker.domain.service import IncomingCommand
from worker.transport.records import SourceRecord

COMMAND_ID_HEADER = "command-id"


@dataclass(frozen=True)
class Rejected:
    """A record that is not a valid command: answered with `error`, copied to the dead letters."""

    command_id: str
    name: CommandName
    error: ErrorInfo


class _DuplicateKeyError(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"key {key!r} appears twice in one object")
        result[key] = value
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _header_command_id(record: SourceRecord) -> str | None:
    raw = record.header(COMMAND_ID_HEADER)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if identifier_problem(text, LIMITS.command_id_max_length) is None else None


def _body_command_id(body: dict[str, Any]) -> str | None:
    value = body.get("commandId")
    if isinstance(value, str) and identifier_problem(value, LIMITS.command_id_max_length) is None:
        return value
    return None


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(the message)"


def validation_details(error: ValidationError) -> list[ErrorDetail]:
    details = []
    for problem in error.errors(include_url=False, include_input=False):
        reason = problem["msg"].removeprefix("Value error, ")
        details.append(ErrorDetail(field=_path(problem["loc"]), reason=reason))
    return details


def decode_command(
    record: SourceRecord, name: CommandName, max_bytes: int
) -> IncomingCommand | Rejected:
    header_id = _header_command_id(record)
    fallback_id = header_id or record.position

    def reject(code: ErrorCode, message: str, details: list[ErrorDetail] | None = None) -> Rejected:
        info = ErrorInfo(code=code, message=f"{name.value} command rejected: {message}")
        if details:
            kept = details[: LIMITS.problems_reported]
            info = info.model_copy(
                update={"details": kept, "details_omitted": len(details) - len(kept)}
            )
        return Rejected(fallback_id, name, info)

    value = record.value
    if not value:
        return reject(ErrorCode.DECODE_ERROR, "the message is empty; send a JSON object")
    if len(value) > max_bytes:
        return reject(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"the message is {len(value)} bytes, the limit is {max_bytes}",
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(
            ErrorCode.DECODE_ERROR,
            f"the message is not UTF-8 text (byte 0x{value[exc.start]:02x} at offset {exc.start})",
        )
    try:
        body = json.loads(
            text, object_pairs_hook=_object_without_duplicates, parse_constant=_no_constants
        )
    except _DuplicateKeyError as exc:
        return reject(ErrorCode.VALIDATION_ERROR, f"{exc}")
    except ValueError as exc:
        return reject(ErrorCode.DECODE_ERROR, f"the message is not JSON ({exc})")
    if not isinstance(body, dict):
        return reject(
            ErrorCode.DECODE_ERROR,
            f"the message must be a JSON object, it is a JSON {type(body).__name__}",
        )
    command_id = _body_command_id(body) or fallback_id
    try:
        command = COMMAND_MODELS[name].model_validate(body)
    except ValidationError as exc:
        details = validation_details(exc)
        first = details[0]
        more = (
            f" (and {count_phrase(len(details) - 1, 'more problem')})" if len(details) > 1 else ""
        )
        rejected = reject(
            ErrorCode.VALIDATION_ERROR, f"{first.field}: {first.reason}{more}", details
        )
        return Rejected(command_id, name, rejected.error)
    return IncomingCommand(command_id=command_id, name=name, body=command)
