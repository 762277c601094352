"""Turning a consumed record into a command, or into the reason it is not one.

Every rejection names its cause precisely: the byte that is not UTF-8, the place JSON parsing
stopped, the field (as a JSON path), what the field must be and what it was given. Nothing a
record holds can make decoding raise: whatever it is, the outcome is a command or a `Rejected`.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.commands import COMMAND_MODELS, CommandName
from schemas.fields import LIMITS, identifier_problem
from schemas.results import ErrorCode, ErrorDetail, ErrorInfo
from worker.domain.errors import count_phrase
from worker.domain.service import IncomingCommand
from worker.transport.records import SourceRecord

COMMAND_ID_HEADER = "command-id"

# No field takes an integer longer than this; a longer one is refused by its length before
# Python converts it (which it refuses itself past 4300 digits).
MAX_INTEGER_DIGITS = 30

_UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Rejected:
    """A record that is not a valid command: answered with `error`, copied to the dead letters."""

    command_id: str
    name: CommandName
    error: ErrorInfo


class _DuplicateKeyError(ValueError):
    pass


@dataclass(frozen=True)
class _LongInteger:
    """Stands for a JSON integer too long for any field, so that its place can be named."""

    digits: int


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(f"key {_show(key)} appears twice in one object")
        result[key] = value
    return result


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _find_long_integer(body: Any) -> tuple[str, int] | None:
    """The JSON path and length of the first integer too long for any field, if there is one
    (iteratively: the body may nest as deeply as the JSON parser allows)."""
    stack: list[tuple[tuple[int | str, ...], Any]] = [((), body)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, _LongInteger):
            return _path(loc), value.digits
        if isinstance(value, dict):
            stack.extend((((*loc, k), v) for k, v in reversed(value.items())))
        elif isinstance(value, list):
            stack.extend((((*loc, i), v) for i, v in reversed(list(enumerate(value)))))
    return None


def _header_command_id(record: SourceRecord) -> tuple[str | None, str | None]:
    """The command id of the header, or why the header cannot be one (None, None: no header)."""
    raw = record.header(COMMAND_ID_HEADER)
    if raw is None:
        return None, None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, (f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})")
    problem = identifier_problem(text, LIMITS.command_id_max_length)
    if problem is not None:
        return None, problem
    return text, None


def _body_command_id(body: dict[str, Any]) -> str | None:
    value = body.get("commandId")
    if isinstance(value, str) and identifier_problem(value, LIMITS.command_id_max_length) is None:
        return value
    return None


def _path(loc: tuple[int | str, ...]) -> str:
    """A JSON path such as items[3].uniqueNumbers[0].type; a long key is cut (a message must
    stay small whatever the record holds: it is published, and copied into a header)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        name = part if len(part) <= 60 else f"{part[:50]}...({len(part)} characters)"
        text += f".{name}" if text else name
    return text or "(the message)"


# --- what a person reads about a field that failed validation --------------------------------


def _json_kind(value: Any) -> str:
    """A given JSON value, described: short values shown, long ones only by kind and size."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _LongInteger):
        return f"an integer of {value.digits} digits"
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= 20 else f"an integer of {len(text)} digits"
    if isinstance(value, float):
        return f"the number {value!r}" if math.isfinite(value) else "a number beyond any range"
    if isinstance(value, str):
        return _show(value)
    if isinstance(value, list):
        return f"an array of {count_phrase(len(value), 'item')}" if value else "an empty array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - JSON has no other kinds


def _show(text: str) -> str:
    """A string for a message: quoted, control characters escaped, long ones cut."""
    if len(text) > 60:
        return f"{text[:50]!r}... ({len(text)} characters)"
    return repr(text)


_EXPECTED_KIND = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _names_of(field_name: str, field: Any) -> list[str]:
    """Every key a model field accepts: its alias(es) first, then its Python name."""
    names: list[str] = []
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        names.append(alias)
    elif alias is not None:
        names.extend(choice for choice in alias.choices if isinstance(choice, str))
    if field_name not in names:
        names.append(field_name)
    return names


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that validates the object at `loc` (a path inside a `model` object)."""
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        for name, field in current.model_fields.items():
            if part in _names_of(name, field):
                found = _inner_model(field.annotation)
                if found is None:
                    return None
                current = found
                break
        else:
            return None
    return current


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _unknown_field_reason(
    model: type[BaseModel], name: CommandName, loc: tuple[int | str, ...], body: Any
) -> str:
    owner = _model_at(model, loc[:-1])
    if owner is None:  # pragma: no cover - an extra key is always inside a model
        return "is not a field here"
    key = loc[-1]
    parent = body
    for part in loc[:-1]:
        parent = parent[part]
    for field_name, field in owner.model_fields.items():
        names = _names_of(field_name, field)
        if key in names:
            given = [n for n in names if n != key and n in parent]
            return f"names the same field as {given[0]}, which is given too: give it once"
    fields = ", ".join(_names_of(n, f)[0] for n, f in owner.model_fields.items())
    where = f"a {name.value} command" if owner is model else "this object"
    return f"is not a field of {where} (misspelt?); the fields are: {fields}"


def _reason(problem: ErrorDetails, model: type[BaseModel], name: CommandName, body: Any) -> str:
    kind = problem["type"]
    ctx: dict[str, Any] = dict(problem.get("ctx") or {})
    given = problem.get("input")
    if kind == "value_error":
        return problem["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return _unknown_field_reason(model, name, problem["loc"], body)
    if kind in _EXPECTED_KIND:
        return f"must be {_EXPECTED_KIND[kind]}, got {_json_kind(given)}"
    if kind == "enum":
        options = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return f"must be one of {options}, got {_json_kind(given)}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {_json_kind(given)}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {_json_kind(given)}"
    if kind == "too_short":
        return (
            f"must hold at least {count_phrase(ctx['min_length'], 'item')}, got {_json_kind(given)}"
        )
    if kind == "string_too_short":
        return f"must not be empty, got {_json_kind(given)}"
    if kind == "string_too_long":
        return (
            f"must be at most {count_phrase(ctx['max_length'], 'character')}, "
            f"got {_json_kind(given)}"
        )
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}, got {_json_kind(given)}"
    if kind == "too_long":
        return (
            f"must hold at most {count_phrase(ctx['max_length'], 'item')}, "
            f"got {ctx['actual_length']}"
        )
    return problem["msg"]  # pragma: no cover - every rule of schemas/ is named above


def validation_details(
    error: ValidationError, model: type[BaseModel], name: CommandName, body: Any
) -> list[ErrorDetail]:
    return [
        ErrorDetail(field=_path(problem["loc"]), reason=_reason(problem, model, name, body))
        for problem in error.errors(include_url=False)
    ]


# --- the decoding itself ---------------------------------------------------------------------


def decode_command(
    record: SourceRecord, name: CommandName, max_bytes: int
) -> IncomingCommand | Rejected:
    header_id, header_problem = _header_command_id(record)
    fallback_id = header_id or record.position

    def reject(
        code: ErrorCode,
        message: str,
        details: list[ErrorDetail] | None = None,
        command_id: str = fallback_id,
    ) -> Rejected:
        info = ErrorInfo(code=code, message=f"{name.value} command rejected: {message}")
        if details:
            kept = details[: LIMITS.problems_reported]
            info = info.model_copy(
                update={"details": kept, "details_omitted": len(details) - len(kept)}
            )
        return Rejected(command_id, name, info)

    value = record.value
    if not value:
        return reject(ErrorCode.DECODE_ERROR, "the message is empty; send a JSON object")
    if len(value) > max_bytes:
        return reject(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"the message is {len(value)} bytes, the limit is {max_bytes}",
        )
    if value.startswith(_UTF8_BOM):
        return reject(
            ErrorCode.DECODE_ERROR,
            "the message starts with a byte order mark (EF BB BF); send the JSON without it",
        )
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return reject(
            ErrorCode.DECODE_ERROR,
            f"the message is not UTF-8 text (byte 0x{value[exc.start]:02x} at offset {exc.start})",
        )
    long_integers = 0

    def parse_int(digits: str) -> int | _LongInteger:
        nonlocal long_integers
        length = len(digits.lstrip("-"))
        if length > MAX_INTEGER_DIGITS:
            long_integers += 1
            return _LongInteger(length)
        return int(digits)

    try:
        body = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_no_constants,
            parse_int=parse_int,
        )
    except _DuplicateKeyError as exc:
        return reject(ErrorCode.VALIDATION_ERROR, f"{exc}")
    except RecursionError:
        return reject(
            ErrorCode.DECODE_ERROR,
            "the message nests arrays or objects too deeply to be read (a command nests 4 "
            "levels at most)",
        )
    except ValueError as exc:
        return reject(ErrorCode.DECODE_ERROR, f"the message is not JSON ({exc})")
    if not isinstance(body, dict):
        return reject(
            ErrorCode.DECODE_ERROR,
            f"the message must be a JSON object, it is {_json_value_kind(body)}",
        )
    command_id = _body_command_id(body) or fallback_id
    key_length = len(record.key or b"")
    if key_length > LIMITS.record_key_bytes:
        reason = (
            f"is {key_length} bytes, the limit is {LIMITS.record_key_bytes}; key a command by "
            "its variant id"
        )
        return reject(
            ErrorCode.VALIDATION_ERROR,
            f"the record's key {reason}",
            [ErrorDetail(field="(the record's key)", reason=reason)],
            command_id,
        )
    if header_problem is not None and "commandId" not in body:
        # Answering under another id would lose the command for its sender, and apply each of
        # its retries anew: refuse it instead.
        return reject(
            ErrorCode.VALIDATION_ERROR,
            f"the {COMMAND_ID_HEADER} header {header_problem}; fix it or send commandId in "
            "the body",
            [ErrorDetail(field=f"{COMMAND_ID_HEADER} header", reason=header_problem)],
        )
    long_integer = _find_long_integer(body) if long_integers else None
    if long_integer is not None:
        where, digits = long_integer
        reason = (
            f"an integer of {digits} digits is longer than any field takes "
            f"({MAX_INTEGER_DIGITS} digits at most)"
        )
        return reject(
            ErrorCode.VALIDATION_ERROR,
            f"{where}: {reason}",
            [ErrorDetail(field=where, reason=reason)],
            command_id,
        )
    model = COMMAND_MODELS[name]
    try:
        command = model.model_validate(body)
    except ValidationError as exc:
        details = validation_details(exc, model, name, body)
        first = details[0]
        more = (
            f" (and {count_phrase(len(details) - 1, 'more problem')})" if len(details) > 1 else ""
        )
        return reject(
            ErrorCode.VALIDATION_ERROR, f"{first.field}: {first.reason}{more}", details, command_id
        )
    return IncomingCommand(command_id=command_id, name=name, body=command)


def _json_value_kind(value: Any) -> str:
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, list):
        return "a JSON array"
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return f"JSON {'true' if value else 'false'}"
    return "a JSON number"
