"""Loads read the fast way (orjson, checked a column at a time) and the usual way (json.loads
with its hooks, then the pydantic models) give the same command, payload hash and columns, or
the same rejection."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

from hypothesis import example, given
from hypothesis import strategies as st

from schemas.commands import CommandName, LoadJsonCommand
from schemas.fields import LIMITS, WHITESPACE, unique_number_problem, unique_numbers_storable
from tests.unit.test_properties import (
    FAST,
    invalid_numbers,
    load_json_bodies,
    unique_numbers,
)
from worker.domain.loading import from_json_items
from worker.domain.service import IncomingCommand
from worker.transport import decoding
from worker.transport.decoding import Rejected, decode_command
from worker.transport.records import SourceRecord

GS = "\x1d"
LOAD = CommandName.LOAD_JSON


def record(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> SourceRecord:
    return SourceRecord("unique-numbers.load-json", 2, 9, b"1000", value, headers or [])


@contextmanager
def the_usual_way_only() -> Iterator[None]:
    with mock.patch.object(decoding, "_prepared_load", return_value=None):
        yield


def both_ways(
    value: bytes, headers: list[tuple[str, bytes]] | None = None
) -> tuple[IncomingCommand | Rejected, IncomingCommand | Rejected]:
    fast = decode_command(record(value, headers), LOAD, 16 * 1024 * 1024)
    with the_usual_way_only():
        usual = decode_command(record(value, headers), LOAD, 16 * 1024 * 1024)
    return fast, usual


def old_payload_hash(command: IncomingCommand) -> bytes:
    """The payload hash as it has always been computed (stored hashes must still match)."""
    canonical = command.body.model_dump_json(exclude={"command_id"}, by_alias=True)
    return hashlib.sha256(f"{command.name}\n{canonical}".encode()).digest()


def assert_same(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> bool:
    """The two ways agree on `value`; returns whether the fast way read it."""
    fast, usual = both_ways(value, headers)
    if isinstance(usual, Rejected):
        assert fast == usual
        return False
    assert isinstance(fast, IncomingCommand)
    assert isinstance(usual, IncomingCommand)
    assert usual.prepared is None
    read_fast = fast.prepared is not None
    assert fast.payload_hash() == usual.payload_hash() == old_payload_hash(usual)
    columns = fast.operand if read_fast else from_json_items(fast.body.items)  # type: ignore[attr-defined]
    expected = from_json_items(usual.body.items)  # type: ignore[attr-defined]
    assert columns.numbers == expected.numbers
    assert [n.encode() for n in columns.numbers] == [n.encode() for n in expected.numbers]
    assert columns.variant_ids == expected.variant_ids
    assert columns.types == expected.types
    for index in range(len(expected.numbers)):
        assert columns.origin(index) == expected.origin(index)
    assert fast == usual  # builds the fast one's body: command id, name and body
    assert fast.body == LoadJsonCommand.model_validate(json.loads(value))
    return read_fast


def load(count: int, per_item: int = 250, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    for n in range(count):
        if n % per_item == 0:
            items.append({"variantId": str(100_000 + len(items)), "uniqueNumbers": []})
        tail = "".join(rng.choice("ABCabc123%&:/\"'\\") for _ in range(rng.randrange(5, 40)))
        number = f"0104600000000{n:06d}21{tail}" + (f"{GS}91EE06{GS}92{tail}" if n % 2 else "")
        items[-1]["uniqueNumbers"].append(
            {"uniqueNumber": number, "type": "UIT" if n % 3 else "IMEI"}
        )
    return {"commandId": "c-1", "items": items}


def test_a_big_load_is_read_the_fast_way_into_the_same_command() -> None:
    body = load(10_000)
    for text in (json.dumps(body), json.dumps(body, ensure_ascii=False, separators=(",", ":"))):
        assert assert_same(text.encode())


def test_the_payload_hash_is_the_same_with_the_id_in_the_header() -> None:
    body = load(50)
    in_body = decode_command(record(json.dumps(body).encode()), LOAD, 1 << 20)
    del body["commandId"]
    in_header = decode_command(
        record(json.dumps(body).encode(), [("command-id", b"c-1")]), LOAD, 1 << 20
    )
    assert isinstance(in_body, IncomingCommand)
    assert isinstance(in_header, IncomingCommand)
    assert in_body.prepared is not None
    assert in_header.prepared is not None
    assert in_header.command_id == in_body.command_id == "c-1"
    assert in_header.payload_hash() == in_body.payload_hash() == old_payload_hash(in_body)


def _entry(number: str = "N-1", type_: Any = "UIT") -> dict[str, Any]:
    return {"uniqueNumber": number, "type": type_}


def _body(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"items": [{"variantId": "V", "uniqueNumbers": list(entries)}], **top}


# Records the fast way must leave to the usual way (which refuses, or reads them differently).
UNUSUAL = [
    # a key twice, at each level, with or without colons in the strings around it
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "a", "uniqueNumber": "b",'
    b' "type": "UIT"}]}]}',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "a:b", "type": "UIT",'
    b' "type": "UIT"}]}]}',
    b'{"items": [{"variantId": "V:1", "variantId": "V:1", "uniqueNumbers": [{"uniqueNumber": "a",'
    b' "type": "UIT"}]}]}',
    b'{"commandId": "c:1", "items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "a",'
    b' "type": "UIT"}]}], "commandId": "c:1"}',
    # ... and a colon written as an escape, which would hide a duplicate from the count
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "a\\u003ab",'
    b' "type": "UIT", "type": "UIT"}]}]}',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "a\\u003Ab",'
    b' "type": "UIT"}]}]}',
    # the Python field names, a field too many or missing
    json.dumps({"items": [{"variantId": "V", "unique_numbers": [_entry()]}]}).encode(),
    json.dumps(_body({"unique_number": "N-1", "type": "UIT"})).encode(),
    json.dumps(_body({"uniqueNumber": "N-1", "type": "UIT", "row": 1})).encode(),
    json.dumps(_body(_entry(), colour="red")).encode(),
    json.dumps(_body({"uniqueNumber": "N-1"})).encode(),
    # values of the wrong kind, or beyond a limit
    json.dumps(_body(_entry(), commandId=" c")).encode(),
    json.dumps(_body(_entry(), commandId=7)).encode(),
    json.dumps(_body(_entry(type_="EAN"))).encode(),
    json.dumps(_body(_entry(type_=["UIT"]))).encode(),
    json.dumps(_body(_entry(type_=None))).encode(),
    json.dumps(_body({"uniqueNumber": 1234, "type": "UIT"})).encode(),
    json.dumps(_body({"uniqueNumber": ["N"], "type": "UIT"})).encode(),
    json.dumps(_body(_entry(), ["N", "UIT"])).encode(),  # type: ignore[arg-type]
    json.dumps(_body(_entry(), "N")).encode(),  # type: ignore[arg-type]
    json.dumps(_body()).encode(),
    json.dumps({"items": []}).encode(),
    json.dumps({"items": {}}).encode(),
    json.dumps({"items": [[]]}).encode(),
    json.dumps({"commandId": "c"}).encode(),
    json.dumps({"items": [{"variantId": "", "uniqueNumbers": [_entry()]}]}).encode(),
    json.dumps({"items": [{"variantId": 5, "uniqueNumbers": [_entry()]}]}).encode(),
    json.dumps({"items": [{"variantId": "V", "uniqueNumbers": _entry()}]}).encode(),
    json.dumps(_body(*[_entry(f"N-{i}") for i in range(LIMITS.numbers_per_load + 1)])).encode(),
    json.dumps(
        {
            "items": [
                {"variantId": "V", "uniqueNumbers": [_entry(f"N-{i}-{j}") for j in range(25_001)]}
                for i in range(2)
            ]
        }
    ).encode(),
    # numbers that cannot be stored
    *(
        json.dumps(_body(_entry(), _entry(number))).encode()
        for number in ["", " ", "N ", "\u3000N", "N\x00", "N\x1e", "N\x7f", "N\x85", "x" * 256]
    ),
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N\\ud800",'
    b' "type": "UIT"}]}]}',
    # JSON that orjson or json refuses, or reads otherwise
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": NaN, "type": "UIT"}]}]}',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N", "type": "UIT"}]}],'
    b' "commandId": 1234567890123456789012345678901234567890}',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N\x1d", "type": "UIT"}]}]}',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N", "type": "UIT"}]}]} x',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N", "type": "UIT"}]}]',
    b'\xef\xbb\xbf{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N",'
    b' "type": "UIT"}]}]}',
    b'{"items": [{"variantId": "V", "uniqueNumbers": [{"uniqueNumber": "N\xff", "type": "UIT"}]}]}',
    b"[]",
    b'"items"',
    b"null",
]


def test_unusual_records_are_read_the_usual_way_with_the_same_answer() -> None:
    for value in UNUSUAL:
        assert not assert_same(value), value


def test_what_the_fast_way_reads() -> None:
    plain = [
        json.dumps(_body(_entry("N:1"), _entry(f"{GS}x{GS}"), commandId="c:2")).encode(),
        json.dumps(_body(_entry("e\u0301 \u2028\u202e\U0001f600"), _entry(type_="IMEI"))).encode(),
        json.dumps(_body(_entry(), commandId=None)).encode(),
        # keys in another order than the models' fields (the payload hash has theirs)
        json.dumps(_body({"type": "UIT", "uniqueNumber": "N-1"}, _entry("N-2"))).encode(),
        json.dumps(
            {
                "items": [
                    {"variantId": "V", "uniqueNumbers": [_entry("N-1:"), _entry("N-2")]},
                    {"uniqueNumbers": [_entry("N-3")], "variantId": "W"},
                ],
                "commandId": "c",
            }
        ).encode(),
        json.dumps(_body(_entry("\\u003a"))).encode(),  # a backslash, then u003a: not an escape
        b' \n{"items":[{"variantId":"V","uniqueNumbers":[{"uniqueNumber":"\\u004e\\/1",'
        b'"\\u0074ype":"UIT"}]}]}\n',
    ]
    assert [assert_same(value) for value in plain] == [True, True, True, True, True, False, True]


def _key_colon_written(text: str) -> str:
    """JSON whose colons inside strings are written as \\u003a escapes."""
    return text.replace(":", "\\u003a").replace("\x01", ":")


@st.composite
def load_records(draw: st.DrawFn) -> bytes:
    """A valid load as JSON, perhaps written unusually, perhaps spoilt."""
    body = draw(load_json_bodies)
    items = body["items"]
    change = draw(st.sampled_from(["none", "duplicate", "extra", "reorder", "invalid", "colons"]))
    item = draw(st.sampled_from(items))
    entry = draw(st.sampled_from(item["uniqueNumbers"]))
    if change == "invalid":
        entry["uniqueNumber"] = draw(invalid_numbers)
    elif change == "extra":
        draw(st.sampled_from([body, item, entry]))["x:y"] = draw(unique_numbers)
    elif change == "reorder":
        target = draw(st.sampled_from([item, entry]))
        reordered = dict(reversed(list(target.items())))
        target.clear()
        target.update(reordered)
    ascii_only = draw(st.booleans())
    compact = draw(st.booleans())
    separators = (",", ":") if compact else (", ", ": ")
    if change == "colons":
        text = json.dumps(body, ensure_ascii=ascii_only, separators=(separators[0], "\x01"))
        return _key_colon_written(text).encode("utf-8", "surrogatepass")
    text = json.dumps(body, ensure_ascii=ascii_only, separators=separators)
    if change == "duplicate":
        # The first key of some object, given again (same value or another) right after it.
        key = draw(st.sampled_from(["uniqueNumber", "type", "variantId", "items"]))
        again = json.dumps(draw(st.sampled_from(["UIT", "x:y", "N"])))
        marker = f'"{key}"{separators[1]}'
        if marker in text:
            start = text.index(marker)
            text = f"{text[:start]}{marker}{again}{separators[0]}{text[start:]}"
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes that are not UTF-8


@FAST
@given(value=load_records(), id_in_header=st.booleans())
@example(value=json.dumps(_body(_entry("a:b"), _entry("c"))).encode(), id_in_header=True)
def test_both_ways_agree_on_any_load(value: bytes, id_in_header: bool) -> None:
    assert_same(value, [("command-id", b"h-1")] if id_in_header else None)


_some_numbers = st.lists(
    unique_numbers | invalid_numbers | st.text(max_size=5) | st.sampled_from(list(WHITESPACE)),
    max_size=6,
)


@FAST
@given(numbers=_some_numbers)
@example(numbers=["N", "N\x85"])
@example(numbers=["N", f"{GS}\u00e9{GS}"])
@example(numbers=["N", "N\ud800"])
def test_numbers_are_storable_together_as_each_is_alone(numbers: list[str]) -> None:
    each = all(unique_number_problem(n) is None for n in numbers)
    assert unique_numbers_storable(numbers) == each
    assert unique_numbers_storable(numbers, "".join(numbers)) == each
