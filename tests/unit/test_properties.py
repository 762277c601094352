"""Properties of the message schemas, the decoder and the spreadsheet reader, over generated input.

The round trip of random valid rows through the spreadsheet reader is in test_spreadsheet.py.
"""

from __future__ import annotations

import base64
import json
import zipfile
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.commands import COMMAND_MODELS, CommandName, DocType
from schemas.fields import LIMITS, WHITESPACE, NumberType, identifier_problem, unique_number_problem
from schemas.results import ErrorCode
from tests.unit.spreadsheet_files import GS, raw_xlsx, shared_strings_xlsx, xls_file, xlsx_file
from worker.domain.service import IncomingCommand
from worker.domain.spreadsheet import (
    OLE2_MAGIC,
    ZIP_MAGIC,
    SheetReadout,
    UnreadableFile,
    read_in_this_process,
)
from worker.transport.decoding import Rejected, decode_command
from worker.transport.records import SourceRecord

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_BYTES = 1024 * 1024


def decode(name: CommandName, value: bytes | None) -> IncomingCommand | Rejected:
    record = SourceRecord(f"unique-numbers.{name.value}", 1, 7, b"k", value, [])
    return decode_command(record, name, MAX_BYTES)


def as_json(body: Any, ascii_only: bool = False) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")


# --- strategies of valid values ------------------------------------------------------------------

# Printable text as codes hold it: any letter, digit, punctuation or symbol of any script, spaces
# inside, the GS separator, and the characters that break naive SQL, shells and JSON.
_code_chars = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85"
) | st.sampled_from([GS, '"', "'", "%", "/", "\\", "`", "$", ";", "-", "_", "{", "}"])

unique_numbers = st.text(
    alphabet=_code_chars, min_size=1, max_size=LIMITS.unique_number_max_length
).filter(lambda v: unique_number_problem(v) is None)

_id_chars = st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85") | (
    st.sampled_from(["'", '"', "%", "/", "\\", "-", "_"])
)


def identifiers(limit: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=_id_chars, min_size=1, max_size=limit).filter(
        lambda v: identifier_problem(v, limit) is None
    )


variant_ids = identifiers(LIMITS.variant_id_max_length)
command_ids = st.none() | identifiers(LIMITS.command_id_max_length)
number_types = st.sampled_from([t.value for t in NumberType])


def with_command_id(body: dict[str, Any], command_id: str | None) -> dict[str, Any]:
    return body if command_id is None else {**body, "commandId": command_id}


load_json_bodies = st.builds(
    lambda items, command_id: with_command_id({"items": items}, command_id),
    st.lists(
        st.fixed_dictionaries(
            {
                "variantId": variant_ids,
                "uniqueNumbers": st.lists(
                    st.fixed_dictionaries({"uniqueNumber": unique_numbers, "type": number_types}),
                    min_size=1,
                    max_size=4,
                ),
            }
        ),
        min_size=1,
        max_size=3,
    ),
    command_ids,
)
load_excel_bodies = st.builds(
    lambda content, name, command_id: with_command_id(
        {"upFile": base64.b64encode(content).decode(), **({"fileName": name} if name else {})},
        command_id,
    ),
    st.binary(min_size=1, max_size=200),
    st.none() | identifiers(LIMITS.file_name_max_length),
    command_ids,
)
list_bodies = st.builds(
    lambda variant, used, page, size, command_id: with_command_id(
        {
            "variantId": variant,
            **({} if used is None else {"isUsed": used}),
            **({} if page is None else {"page": page}),
            **({} if size is None else {"size": size}),
        },
        command_id,
    ),
    variant_ids,
    st.none() | st.booleans(),
    st.none() | st.integers(0, 10_000_000),
    st.none() | st.integers(1, LIMITS.list_page_size_max),
    command_ids,
)
reserve_bodies = st.builds(
    lambda variant, number_type, document, camel, command_id: with_command_id(
        {
            ("variantId" if camel else "variant_id"): variant,
            ("type" if camel else "type_unique_number"): number_type,
            **(
                {}
                if document is None
                else {"id": document[0], ("docType" if camel else "doc_type"): document[1]}
            ),
        },
        command_id,
    ),
    variant_ids,
    number_types,
    st.none()
    | st.tuples(
        identifiers(LIMITS.document_id_max_length), st.sampled_from([t.value for t in DocType])
    ),
    st.booleans(),
    command_ids,
)
mark_used_bodies = st.builds(
    lambda variant, number, command_id: with_command_id(
        {"variantId": variant, "uniqueNumber": number}, command_id
    ),
    variant_ids,
    unique_numbers,
    command_ids,
)
BODIES: dict[CommandName, st.SearchStrategy[dict[str, Any]]] = {
    CommandName.LOAD_JSON: load_json_bodies,
    CommandName.LOAD_EXCEL: load_excel_bodies,
    CommandName.LIST: list_bodies,
    CommandName.RESERVE: reserve_bodies,
    CommandName.MARK_USED: mark_used_bodies,
}
commands = st.sampled_from(list(CommandName)).flatmap(
    lambda name: st.tuples(st.just(name), BODIES[name])
)


# --- the schemas and the decoder -----------------------------------------------------------------


@FAST
@given(command=commands, ascii_only=st.booleans())
def test_valid_commands_round_trip_through_json_and_validation(
    command: tuple[CommandName, dict[str, Any]], ascii_only: bool
) -> None:
    name, body = command
    model = COMMAND_MODELS[name]
    outcome = decode(name, as_json(body, ascii_only))

    assert isinstance(outcome, IncomingCommand), outcome
    assert outcome.body == model.model_validate(body)
    assert outcome.command_id == body.get("commandId", f"unique-numbers.{name.value}:1:7")
    # What the model writes back as JSON is the same command again.
    dumped = outcome.body.model_dump(mode="json", by_alias=True, exclude_none=True)
    again = decode(name, as_json(dumped))
    assert isinstance(again, IncomingCommand), again
    assert again.body == outcome.body
    assert again.payload_hash() == outcome.payload_hash()


@FAST
@given(number=unique_numbers, ascii_only=st.booleans())
@example(number="'; DROP TABLE unique_numbers; --", ascii_only=False)
@example(number=f"{GS}0104064211748539215%HefMSHY1egL{GS}", ascii_only=True)
@example(number="$(rm -rf /) `id` %s %n \\\\ \\u0000", ascii_only=False)
@example(number="e\u0301 \u202e\U0001f600", ascii_only=True)
def test_any_valid_unique_number_is_decoded_unchanged(number: str, ascii_only: bool) -> None:
    body = {"variantId": "1000", "uniqueNumber": number}
    outcome = decode(CommandName.MARK_USED, as_json(body, ascii_only))
    assert isinstance(outcome, IncomingCommand), outcome
    decoded = outcome.body.unique_number  # type: ignore[attr-defined]
    assert decoded == number
    assert decoded.encode("utf-8") == number.encode("utf-8")

    load = {
        "items": [{"variantId": "1000", "uniqueNumbers": [{"uniqueNumber": number, "type": "UIT"}]}]
    }
    outcome = decode(CommandName.LOAD_JSON, as_json(load, ascii_only))
    assert isinstance(outcome, IncomingCommand), outcome
    assert outcome.body.items[0].unique_numbers[0].unique_number == number  # type: ignore[attr-defined]


_controls = st.sampled_from(
    [chr(c) for c in [*range(0x00, 0x1D), 0x1E, 0x1F, *range(0x7F, 0xA0)]]
    + ["\ud800", "\udfff", "\udc00"]
)
_edge_spaces = st.sampled_from(list(WHITESPACE))
invalid_numbers = st.one_of(
    # a control character (other than GS) or a lone surrogate anywhere
    st.tuples(unique_numbers, _controls, st.integers(0, 300)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
    ),
    # longer than the limit
    st.text(alphabet=_code_chars, min_size=LIMITS.unique_number_max_length + 1, max_size=400)
    .map(lambda v: v.strip(WHITESPACE))
    .filter(lambda v: len(v) > LIMITS.unique_number_max_length),
    # whitespace at either end
    st.tuples(unique_numbers, _edge_spaces, st.booleans()).map(
        lambda t: t[1] + t[0] if t[2] else t[0] + t[1]
    ),
    st.text(alphabet=_edge_spaces, max_size=5),  # empty, or nothing but whitespace
)


@FAST
@given(number=invalid_numbers, ascii_only=st.booleans())
def test_invalid_unique_numbers_are_refused_naming_the_field(number: str, ascii_only: bool) -> None:
    assert unique_number_problem(number) is not None
    cases = [
        (CommandName.MARK_USED, {"variantId": "1000", "uniqueNumber": number}, "uniqueNumber"),
        (
            CommandName.LOAD_JSON,
            {
                "items": [
                    {
                        "variantId": "1000",
                        "uniqueNumbers": [
                            {"uniqueNumber": "OK-1", "type": "UIT"},
                            {"uniqueNumber": number, "type": "UIT"},
                        ],
                    }
                ]
            },
            "items[0].uniqueNumbers[1].uniqueNumber",
        ),
    ]
    # A lone surrogate has no UTF-8 form: JSON carries it only as an escape such as \\ud800.
    ascii_only = ascii_only or any(0xD800 <= ord(c) <= 0xDFFF for c in number)
    for name, body, field in cases:
        outcome = decode(name, as_json(body, ascii_only))
        assert isinstance(outcome, Rejected), (name, number)
        assert outcome.error.code is ErrorCode.VALIDATION_ERROR
        assert [d.field for d in outcome.error.details] == [field]
        assert outcome.error.details[0].reason.startswith("unique number ")
        assert outcome.error.message.startswith(f"{name.value} command rejected: {field}: ")


# JSON values of every kind, as a hostile sender may nest them.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "commandId", "items", "variantId", "variant_id", "uniqueNumbers", "uniqueNumber", "type",
        "type_unique_number", "id", "doc_type", "docType", "isUsed", "page", "size", "fileName",
        "upFile",
    ]
)  # fmt: skip
command_like = st.dictionaries(_keys, json_values, max_size=6)


def _mutations(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` cut short, or with a few bytes changed."""
    cut = st.integers(0, max(0, len(data) - 1)).map(lambda n: data[:n])
    flips = st.lists(
        st.tuples(st.integers(0, max(0, len(data) - 1)), st.integers(1, 255)),
        min_size=1,
        max_size=8,
    )

    def flip(changes: list[tuple[int, int]]) -> bytes:
        out = bytearray(data)
        for position, xor in changes:
            out[position] ^= xor
        return bytes(out)

    return cut | flips.map(flip)


hostile_records = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(as_json),
    command_like.map(as_json),
    commands.flatmap(lambda c: _mutations(as_json(c[1]))),
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 3000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.integers(20, 6000).map(lambda digits: b'{"variantId": "1", "page": ' + b"9" * digits + b"}"),
)


@FAST
@given(name=st.sampled_from(list(CommandName)), value=hostile_records)
@example(name=CommandName.LIST, value=b"[" * 100_000)
@example(name=CommandName.LIST, value=b'{"size": ' + b"1" * 10_000 + b"}")
@example(name=CommandName.RESERVE, value=b'{"variant_id": "1", "variantId": "1", "type": "UIT"}')
def test_no_record_makes_decoding_raise(name: CommandName, value: bytes | None) -> None:
    outcome = decode(name, value)
    if isinstance(outcome, IncomingCommand):
        assert isinstance(outcome.body, COMMAND_MODELS[name])
        return
    assert isinstance(outcome, Rejected)
    assert outcome.error.code in {ErrorCode.DECODE_ERROR, ErrorCode.VALIDATION_ERROR}
    assert outcome.error.message.startswith(f"{name.value} command rejected: ")
    assert len(outcome.error.message) < 2000
    assert len(outcome.error.details) <= LIMITS.problems_reported
    for detail in outcome.error.details:
        assert detail.field  # every problem names where it is


# --- the spreadsheet reader ----------------------------------------------------------------------

_ROWS = [
    ["variant", "number", "type"],
    ["V1", f"01{GS}93abc", "UIT"],
    ["V2", 356938035643809, "IMEI"],
]
BASE_FILES = {
    "xls": xls_file(_ROWS),
    "xlsx": xlsx_file(_ROWS),
    "xlsx-shared-strings": shared_strings_xlsx(_ROWS),
    # stored, not deflated: a change lands in the XML itself, not in compressed data
    "xlsx-stored": raw_xlsx(
        ['<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
         '<c r="C1" t="s"><v>2</v></c></row>'],
        ["<t>V1</t>", "<t>01_x001D_93</t>", "<t>UIT</t>"],
        compression=zipfile.ZIP_STORED,
    ),
}  # fmt: skip


def read_or_refuse(content: bytes) -> SheetReadout | UnreadableFile:
    try:
        return read_in_this_process(content)
    except UnreadableFile as exc:
        refusal = exc
    assert str(refusal)  # always a message for a person
    return refusal


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.sampled_from(sorted(BASE_FILES)).flatmap(lambda kind: _mutations(BASE_FILES[kind]))
)
def test_a_damaged_workbook_is_refused_as_unreadable_never_with_another_error(
    content: bytes,
) -> None:
    outcome = read_or_refuse(content)
    if isinstance(outcome, SheetReadout):
        for row in outcome.rows:  # what is read from a damaged file still obeys the field rules
            assert unique_number_problem(row.unique_number) is None
            assert identifier_problem(row.variant_id, LIMITS.variant_id_max_length) is None
            assert row.type in {t.value for t in NumberType}


@FAST
@given(
    content=st.one_of(
        st.binary(max_size=2000),
        st.binary(max_size=2000).map(lambda b: OLE2_MAGIC + b),
        st.binary(max_size=2000).map(lambda b: ZIP_MAGIC + b),
    )
)
def test_random_bytes_are_refused_as_unreadable(content: bytes) -> None:
    assert isinstance(read_or_refuse(content), UnreadableFile)
