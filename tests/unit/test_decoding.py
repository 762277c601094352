"""Decoding a record into a command, or into the precise reason it is not one."""

from __future__ import annotations

import json

import pytest

from schemas.commands import CommandName, ReserveCommand
from worker.domain.service import IncomingCommand
from worker.transport.decoding import Rejected, decode_command
from worker.transport.records import SourceRecord


def record(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> SourceRecord:
    return SourceRecord("unique-numbers.reserve", 3, 42, b"1000", value, headers or [])


def decode(value: bytes | None, **kwargs: object) -> IncomingCommand | Rejected:
    return decode_command(record(value, **kwargs), CommandName.RESERVE, 1000)  # type: ignore[arg-type]


def rejected(value: bytes | None, **kwargs: object) -> Rejected:
    outcome = decode(value, **kwargs)
    assert isinstance(outcome, Rejected)
    return outcome


def test_a_valid_command_without_id_gets_topic_partition_offset() -> None:
    outcome = decode(b'{"variant_id": "1000", "type_unique_number": "UIT"}')
    assert isinstance(outcome, IncomingCommand)
    assert outcome.command_id == "unique-numbers.reserve:3:42"
    assert outcome.body == ReserveCommand.model_validate({"variantId": "1000", "type": "UIT"})


def test_the_id_comes_from_the_body_before_the_header() -> None:
    body = b'{"commandId": "c-1", "variantId": "1000", "type": "UIT"}'
    assert decode(body, headers=[("command-id", b"h-1")]).command_id == "c-1"
    no_id = b'{"variantId": "1000", "type": "UIT"}'
    assert decode(no_id, headers=[("command-id", b"h-1")]).command_id == "h-1"


@pytest.mark.parametrize(
    ("value", "code", "phrase"),
    [
        (None, "DECODE_ERROR", "empty"),
        (b"", "DECODE_ERROR", "empty"),
        (b"\xff\xfe{}", "DECODE_ERROR", "not UTF-8 text (byte 0xff at offset 0)"),
        (b"{not json", "DECODE_ERROR", "not JSON"),
        (b"[1, 2]", "DECODE_ERROR", "it is a JSON array"),
        (b'{"variantId": NaN}', "DECODE_ERROR", "NaN is not a JSON number"),
        (b"x" * 1001, "MESSAGE_TOO_LARGE", "1001 bytes, the limit is 1000"),
        (b'{"variantId": "1", "variantId": "2", "type": "UIT"}', "VALIDATION_ERROR", "twice"),
    ],
)
def test_undecodable_records_are_rejected_with_the_reason(
    value: bytes | None, code: str, phrase: str
) -> None:
    outcome = rejected(value)
    assert outcome.error.code == code
    assert phrase in outcome.error.message
    assert outcome.command_id == "unique-numbers.reserve:3:42"


def test_an_invalid_command_names_each_field_and_keeps_its_command_id() -> None:
    body = {"commandId": "c-9", "variant_id": "", "type_unique_number": "EAN", "color": "red"}
    outcome = rejected(json.dumps(body).encode())

    assert outcome.command_id == "c-9"
    assert outcome.error.code == "VALIDATION_ERROR"
    fields = {d.field: d.reason for d in outcome.error.details}
    assert fields["variant_id"] == "variant id is empty or blank"
    assert fields["type_unique_number"] == "must be one of UIT, IMEI, got 'EAN'"
    assert fields["color"] == (
        "is not a field of a reserve command (misspelt?); "
        "the fields are: commandId, variant_id, type_unique_number, id, doc_type"
    )
    assert outcome.error.message.startswith("reserve command rejected: ")


def test_a_document_id_needs_its_type() -> None:
    outcome = rejected(b'{"variant_id": "1", "type_unique_number": "UIT", "id": "PO-1"}')
    assert "doc_type is missing" in outcome.error.message


def test_json_paths_of_nested_problems() -> None:
    body = {
        "items": [
            {"variantId": "1", "uniqueNumbers": [{"uniqueNumber": "ok", "type": "UIT"}]},
            {"variantId": "1", "uniqueNumbers": [{"uniqueNumber": "bad\x00", "type": "UIT"}]},
        ]
    }
    outcome = decode_command(record(json.dumps(body).encode()), CommandName.LOAD_JSON, 10_000)
    assert isinstance(outcome, Rejected)
    detail = outcome.error.details[0]
    assert detail.field == "items[1].uniqueNumbers[0].uniqueNumber"
    assert detail.reason == (
        "unique number holds control character U+0000 at position 4 "
        "(only the GS separator U+001D is allowed)"
    )


def test_a_key_over_the_limit_is_refused_under_the_body_command_id() -> None:
    body = b'{"commandId": "c-7", "variant_id": "1", "type_unique_number": "UIT"}'
    big = SourceRecord("unique-numbers.reserve", 3, 42, b"k" * 1025, body, [])
    outcome = decode_command(big, CommandName.RESERVE, 10_000)
    assert isinstance(outcome, Rejected)
    assert outcome.command_id == "c-7"
    assert outcome.error.message == (
        "reserve command rejected: the record's key is 1025 bytes, the limit is 1024; "
        "key a command by its variant id"
    )
    fits = SourceRecord("unique-numbers.reserve", 3, 42, b"k" * 1024, body, [])
    assert isinstance(decode_command(fits, CommandName.RESERVE, 10_000), IncomingCommand)


def test_what_a_record_holds_is_echoed_short() -> None:
    def decode_big(value: bytes) -> Rejected:
        outcome = decode_command(record(value), CommandName.RESERVE, 100_000)
        assert isinstance(outcome, Rejected)
        return outcome

    long_key = "x" * 10_000
    outcome = decode_big(json.dumps({"variant_id": "1", "type": "UIT", long_key: 1}).encode())
    [detail] = outcome.error.details
    assert detail.field == "x" * 50 + "...(10000 characters)"
    duplicate = f'{{"{long_key}": 1, "{long_key}": 2}}'.encode()
    assert len(decode_big(duplicate).error.message) < 200


@pytest.mark.parametrize(
    "value",
    [
        b'{"variantId": "1", "variantId": "2", "type": "UIT"}',
        b'{"variantId": "1", "type": "UIT", "variantId": "1"}',
        # A colon in a value, in a key, or written as an escape must not hide a key twice.
        b'{"variantId": "a:b", "variantId": "c", "type": "UIT"}',
        b'{"variantId": "c", "variantId": "\\u003a", "type": "UIT"}',
        b'{"variantId": "c", "variantId": "\\u003A:", "type": "UIT"}',
        b'{"x:y": "1", "x:y": "2", "variantId": "1", "type": "UIT"}',
        b'{"variantId": "1", "variantId": {"a": 1}, "type": "UIT"}',
        b'{"variantId": "1", "type": "UIT", "type": "UIT"}',
    ],
)
def test_a_key_twice_is_refused_however_the_object_is_written(value: bytes) -> None:
    outcome = rejected(value)
    assert outcome.error.code == "VALIDATION_ERROR"
    assert "appears twice" in outcome.error.message


@pytest.mark.parametrize(
    "value",
    [
        b'{"variantId": "V:1", "type": "UIT"}',  # colons in values, read the fast way
        b'{"variantId": "V\\u003a1", "type": "UIT"}',  # an escaped colon, the careful way
        b'{"variantId": "V1", "type": "UIT", "docId": null, "doc_type": null}',
        b'{"variantId": "V1", "type": "UIT", "commandId": "a:b:c"}',
    ],
)
def test_plain_and_careful_reading_give_the_same_command(value: bytes) -> None:
    outcome = decode(value)
    assert isinstance(outcome, IncomingCommand)
    assert outcome.body == ReserveCommand.model_validate(json.loads(value))
