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
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from schemas.commands import COMMAND_MODELS, CommandName, LoadJsonCommand
from schemas.fields import LIMITS, NumberType, identifier_problem, unique_numbers_storable
from schemas.results import ErrorCode, ErrorDetail, ErrorInfo
from worker.domain.errors import count_phrase
from worker.domain.loading import from_json_columns
from worker.domain.service import IncomingCommand, PreparedLoad, payload_hash_of
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
    if (
        name is CommandName.LOAD_JSON
        and header_problem is None
        and len(record.key or b"") <= LIMITS.record_key_bytes
    ):
        prepared = _prepared_load(value, fallback_id)
        if prepared is not None:
            return prepared
    long_integers = 0

    def parse_int(digits: str) -> int | _LongInteger:
        nonlocal long_integers
        length = len(digits.lstrip("-"))
        if length > MAX_INTEGER_DIGITS:
            long_integers += 1
            return _LongInteger(length)
        return int(digits)

    try:
        body = _plain_object(value)
        if body is None:  # not plainly a flat object: read the careful way, which says why
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


def _plain_object(value: bytes) -> dict[str, Any] | None:
    """`value` parsed by orjson if it is plainly a flat JSON object of strings, numbers,
    booleans and nulls with no key twice (every command but a load is one); else None, and
    the careful parse (hooks for duplicate keys, constants and long integers) reads it.

    A key twice is found by counting colons: one a key, plus those in the string values, is
    every colon of the record when no key repeats (a key given twice puts its colon, and its
    dropped value's, in the record but not in the object), unless a colon was written as an
    escape (then the careful way) or sits in a key (the count no longer matches: careful way).
    """
    if b"u003a" in value or b"u003A" in value:
        return None
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:  # also NaN, Infinity and integers past 64 bits
        return None
    if type(body) is not dict:
        return None
    colons = len(body)
    for item in body.values():
        kind = type(item)
        if kind is str:
            colons += item.count(":")
        elif kind is float:
            if not math.isfinite(item):
                return None
        elif kind is not int and kind is not bool and item is not None:
            return None  # an object or array inside: the careful way
    if value.count(b":") != colons:
        return None
    return body


# --- loads, the fast way --------------------------------------------------------------------
#
# Read the usual way, a load of 10,000 numbers is a json.loads with a hook per object, then
# 10,000 pydantic models with a Python validator each, then their JSON again for the payload
# hash: most of a worker's time on loads. Nearly every load is valid and plainly written, so
# it is first read with orjson and checked a column at a time; whatever that cannot vouch for
# (any invalid value, a duplicate key, the Python field names, an escaped colon, what orjson
# reads more strictly than json) is read the usual way, which gives the same command or the
# exact rejection as before.

_LOAD_KEYS = frozenset({"items", "commandId"})
_ITEM_KEYS = ("variantId", "uniqueNumbers")  # in the order of the models' fields
_ENTRY_KEYS = ("uniqueNumber", "type")
_ITEM_KEY_SET = frozenset(_ITEM_KEYS)
_NUMBER_TYPES = frozenset(t.value for t in NumberType)
_numbers_of = itemgetter("uniqueNumber")
_types_of = itemgetter("type")


def _prepared_load(value: bytes, fallback_id: str) -> IncomingCommand | None:
    """The load-json command of `value` (UTF-8 without a BOM), its numbers as columns and its
    payload hash computed, if it is certainly valid; else None."""
    # A duplicate key (or one too many) is found by counting colons: each key of each object
    # has one, and the others are in the strings, where the decoded strings show them all
    # unless a \u003a escape wrote one.
    if b"u003a" in value or b"u003A" in value:
        return None
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(body) is not dict or "items" not in body or not body.keys() <= _LOAD_KEYS:
        return None
    command_id = body.get("commandId")
    if command_id is not None and (
        type(command_id) is not str
        or identifier_problem(command_id, LIMITS.command_id_max_length) is not None
    ):
        return None
    items = body["items"]
    if type(items) is not list or not items:
        return None
    string_colons = command_id.count(":") if command_id is not None else 0
    variant_ids: list[str] = []
    starts: list[int] = []
    entry_lists: list[list[Any]] = []
    for item in items:
        if type(item) is not dict or item.keys() != _ITEM_KEY_SET:
            return None
        variant_id, entries = item["variantId"], item["uniqueNumbers"]
        if (
            type(variant_id) is not str
            or identifier_problem(variant_id, LIMITS.variant_id_max_length) is not None
            or type(entries) is not list
            or not entries
        ):
            return None
        starts.append(len(variant_ids))
        variant_ids.extend([variant_id] * len(entries))
        if len(variant_ids) > LIMITS.numbers_per_load:
            return None
        string_colons += variant_id.count(":")
        entry_lists.append(entries)
    entries = list(chain.from_iterable(entry_lists))
    try:
        numbers: list[str] = list(map(_numbers_of, entries))  # KeyError, or TypeError: not
        types: list[str] = list(map(_types_of, entries))  # an object
        numbers_text = "".join(numbers)  # TypeError unless every number is a string
        if not _NUMBER_TYPES.issuperset(types):  # TypeError: a type that is an array, ...
            return None
    except (KeyError, TypeError):
        return None
    if not unique_numbers_storable(numbers, numbers_text):
        return None
    # Each entry holds both keys: counting colons tells whether it holds others or a key twice.
    string_colons += numbers_text.count(":")
    key_colons = len(body) + len(_ITEM_KEYS) * len(items) + len(_ENTRY_KEYS) * len(entries)
    if value.count(b":") != key_colons + string_colons:
        return None
    # What model_dump_json(exclude={"command_id"}, by_alias=True) writes for this body: its
    # keys in the order of the models' fields, and orjson escapes the strings of a valid body
    # as pydantic does (tests/unit/test_fast_loads.py compares them).
    canonical_items: list[dict[str, Any]] = items
    # Holding exactly its two keys, an entry whose first key is uniqueNumber has them in order.
    if set(map(next, map(iter, entries))) != {_ENTRY_KEYS[0]} or any(
        tuple(item) != _ITEM_KEYS for item in items
    ):
        ends = [*starts[1:], len(numbers)]
        canonical_items = [
            {
                "variantId": item["variantId"],
                "uniqueNumbers": [
                    {"uniqueNumber": number, "type": type_}
                    for number, type_ in zip(numbers[start:end], types[start:end], strict=True)
                ],
            }
            for item, start, end in zip(items, starts, ends, strict=True)
        ]
    canonical = b'{"items":' + orjson.dumps(canonical_items) + b"}"
    prepared = PreparedLoad(
        numbers=from_json_columns(numbers, variant_ids, types, starts),
        payload_hash=payload_hash_of(CommandName.LOAD_JSON, canonical),
        # Read again if asked for: keeping `body` would keep its 10,000 dicts too.
        build_body=lambda: LoadJsonCommand.model_validate(orjson.loads(value)),
    )
    return IncomingCommand(command_id or fallback_id, CommandName.LOAD_JSON, prepared=prepared)


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
