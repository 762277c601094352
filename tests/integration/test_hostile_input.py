"""The hostile-input corpus (hostile_corpus.py) through the real Kafka and PostgreSQL.

Each case is sent as a raw record, followed on its partition by a valid command. One
worker answers them all; then every answer is checked against the case (code, exact message,
details, command id), every dead-letter copy against the record (untouched, with the reason),
every follow-up for success, and the database for exactly what the valid commands stored.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import Counter
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from schemas.commands import CommandName
from schemas.fields import LIMITS
from tests.integration.conftest import RunningWorkers
from tests.integration.hostile_corpus import (
    MU_VARIANT,
    POOL_SIZE,
    POOL_VARIANT,
    PRELOADED,
    USED_NUMBER,
    Case,
    Prefix,
    corpus,
    follow_up,
    load_body,
)
from worker.client import CommandClient, command_topic, read_topic
from worker.config import Settings
from worker.transport.kafka_clients import RECORD_OVERHEAD, security_options


def raw_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **security_options(settings),
        acks="all",
        enable_idempotence=True,  # keeps each case before its follow-up on the partition
        max_request_size=settings.message_max_bytes + RECORD_OVERHEAD,
        linger_ms=5,
    )


def check_answer(case: Case, command_id: str, result: dict[str, Any]) -> list[str]:
    """What is wrong with the answer to `case` (nothing: an empty list)."""
    problems: list[str] = []
    if result.get("commandId") != command_id or result.get("command") != case.command.value:
        problems.append(f"answered as {result.get('command')} {result.get('commandId')!r}")
    if case.code is None:
        if result.get("success") is not True:
            return [*problems, f"must succeed, got {result.get('error')}"]
        for name, value in case.result.items():
            if result.get(name) != value:
                problems.append(f"{name} must be {value!r}, got {result.get(name)!r}")
        return problems
    error = result.get("error") or {}
    if result.get("success") is not False or error.get("code") != case.code:
        return [*problems, f"must fail with {case.code}, got {result}"]
    message = error.get("message", "")
    expected = case.message
    if isinstance(expected, Prefix):
        if not message.startswith(expected.text):
            problems.append(f"message must start {expected.text!r}, got {message!r}")
    elif message != expected:
        problems.append(f"message must be {expected!r}, got {message!r}")
    if case.details is not None:
        details = [
            (d.get("row", d.get("field")), d.get("reason")) for d in error.get("details", [])
        ]
        if details != case.details:
            problems.append(f"details must be {case.details}, got {details}")
    if case.details_omitted is not None:
        if error.get("detailsOmitted") != case.details_omitted:
            problems.append(f"detailsOmitted must be {case.details_omitted}, got {error}")
        if len(error.get("details", [])) != 100:
            problems.append("details must list 100 problems")
    return problems


def check_dead_letter(
    case: Case, command_id: str, source: str, result: dict[str, Any], letter: Any
) -> list[str]:
    problems = []
    if letter.value != (case.value or b""):
        problems.append(f"dead letter value is not the record's ({len(letter.value)} bytes)")
    if letter.key != case.record_key():
        problems.append(f"dead letter key {letter.key!r} is not the record's")
    headers = list(letter.headers)
    original = headers[: len(case.record_headers())]
    if original != case.record_headers():
        problems.append(f"dead letter headers {original} are not the record's")
    added = dict(headers[len(case.record_headers()) :])
    expected = {
        "dead-letter-code": case.code.encode() if case.code else b"",
        "dead-letter-reason": result["error"]["message"].encode(),
        "dead-letter-source": source.encode(),
        "dead-letter-command-id": command_id.encode(),
    }
    if added != expected:
        problems.append(f"dead letter headers {added} must be {expected}")
    return problems


async def test_every_hostile_record_gets_its_exact_answer_and_the_next_command_succeeds(
    worker: RunningWorkers, client: CommandClient, settings: Settings, db: asyncpg.Connection
) -> None:
    cases = corpus()
    mark_used_cases = [i for i, case in enumerate(cases) if case.command is CommandName.MARK_USED]
    # The state the cases and their follow-ups need.
    preload = [*PRELOADED, *((f"MU-{i}", MU_VARIANT, "UIT") for i in mark_used_cases)]
    setup = await client.request(CommandName.LOAD_JSON, load_body(*preload))
    assert setup["loaded"] == len(preload), setup
    used = await client.request(
        CommandName.MARK_USED, {"variantId": "MU-DONE", "uniqueNumber": USED_NUMBER}
    )
    assert used["success"], used

    run = uuid.uuid4().hex[:8]
    producer = raw_producer(settings)
    await producer.start()
    try:
        sends = []
        follow_ids = []
        follow_ups = []
        for index, case in enumerate(cases):
            topic = command_topic(settings, case.command)
            # The case and its follow-up on one partition, the follow-up after it.
            partition = index % settings.kafka_topic_partitions
            sends.append(
                await producer.send(
                    topic,
                    case.value,
                    key=case.record_key(),
                    headers=case.record_headers(),
                    partition=partition,
                )
            )
            body, expected, stored = follow_up(case, index)
            follow_id = f"after-{run}-{case.name}"
            follow_ids.append(follow_id)
            follow_ups.append((expected, stored))
            await producer.send(
                topic,
                json.dumps({**body, "commandId": follow_id}).encode(),
                key=f"after-{case.name}".encode(),
                partition=partition,
            )
        sent = await asyncio.gather(*sends)
    finally:
        await producer.stop()

    positions = [
        f"{command_topic(settings, case.command)}:{meta.partition}:{meta.offset}"
        for case, meta in zip(cases, sent, strict=True)
    ]
    command_ids = [case.expected_id() or pos for case, pos in zip(cases, positions, strict=True)]
    results = await client.wait_for([*command_ids, *follow_ids], timeout=240)

    failures: list[str] = []
    for case, command_id in zip(cases, command_ids, strict=True):
        failures += [
            f"{case.name}: {p}" for p in check_answer(case, command_id, results[command_id])
        ]
        if client.result_counts[command_id] != 1:
            failures.append(f"{case.name}: answered {client.result_counts[command_id]} times")
    for case, follow_id, (expected, _) in zip(cases, follow_ids, follow_ups, strict=True):
        answer = results[follow_id]
        if answer.get("success") is not True or any(
            answer.get(k) != v for k, v in expected.items()
        ):
            failures.append(f"{case.name}: the valid command after it got {answer}")

    # Dead letters: exactly the cases whose code the contract copies there, untouched.
    # (A letter too many shows: then one of those expected is not among the first read.)
    expected_letters = sum(case.dead_letter for case in cases)
    letters = await read_topic(settings, settings.topic_dead_letter, expected_letters, 120)
    by_source = {dict(letter.headers)["dead-letter-source"].decode(): letter for letter in letters}
    if len(letters) != expected_letters:
        failures.append(f"{len(letters)} dead letters, expected {expected_letters}")
    for case, command_id, position in zip(cases, command_ids, positions, strict=True):
        letter = by_source.get(position)
        if case.dead_letter and letter is None:
            failures.append(f"{case.name}: no dead-letter copy")
        elif not case.dead_letter and letter is not None:
            failures.append(f"{case.name}: copied to the dead letters, and must not be")
        elif letter is not None:
            failures += [
                f"{case.name}: {p}"
                for p in check_dead_letter(case, command_id, position, results[command_id], letter)
            ]

    assert not failures, f"{len(failures)} wrong answers:\n" + "\n".join(failures)

    # The database holds exactly what the valid commands stored, byte for byte.
    rows = await db.fetch(
        "SELECT unique_number, variant_id, number_type, convert_to(unique_number, 'UTF8') AS raw,"
        " is_reserved, is_used, purchase_order FROM unique_numbers"
    )
    stored = {(r["unique_number"], r["variant_id"], r["number_type"]) for r in rows}
    expected_rows = {
        *preload,
        *(row for case in cases for row in case.stored),
        *(row for _, row in follow_ups if row is not None),
    }
    assert stored == expected_rows, (
        f"missing: {sorted(expected_rows - stored)[:10]}, unexpected: "
        f"{sorted(stored - expected_rows)[:10]}"
    )
    assert all(bytes(r["raw"]) == r["unique_number"].encode("utf-8") for r in rows)

    reserved = [r for r in rows if r["is_reserved"]]
    reserves = [c for c in cases if c.command is CommandName.RESERVE]
    # the valid reserves of the corpus, and the follow-up of every reserve case
    reserves_granted = sum(c.code is None for c in reserves) + len(reserves)
    assert len(reserved) == reserves_granted <= POOL_SIZE
    assert {r["variant_id"] for r in reserved} == {POOL_VARIANT}
    reserved_numbers = Counter(
        results[cid]["uniqueNumber"]
        for cid in [*command_ids, *follow_ids]
        if results[cid]["command"] == "reserve" and results[cid]["success"]
    )
    assert set(reserved_numbers.values()) == {1}  # none handed out twice
    documents = [c.reserved_for for c in cases if c.reserved_for]
    assert sorted(r["purchase_order"] for r in reserved if r["purchase_order"]) == documents

    marked = {r["unique_number"] for r in rows if r["is_used"]}
    assert marked == {
        USED_NUMBER,
        *(f"MU-{i}" for i in mark_used_cases),
        *(c.marked_used for c in cases if c.marked_used),
    }
    assert await db.fetchval("SELECT count(*) FROM processed_commands WHERE result IS NULL") == 0


async def test_the_message_size_limit_is_the_one_configured(
    workers: RunningWorkers, client: CommandClient, settings: Settings
) -> None:
    limit = 4096
    workers.start(message_max_bytes=limit)
    at_limit = json.dumps({"variantId": "V1", "commandId": "fits"}).encode()
    at_limit = at_limit[:-1] + b" " * (limit - len(at_limit)) + b"}"
    over = at_limit[:-1] + b" }"
    await client.send_raw(CommandName.LIST, over, key=b"V1", headers=[("command-id", b"over")])
    await client.send_raw(CommandName.LIST, at_limit, key=b"V1")
    results = await client.wait_for(["over", "fits"])

    assert len(at_limit) == limit
    assert results["fits"]["success"] is True
    assert results["over"]["error"] == {
        "code": "MESSAGE_TOO_LARGE",
        "message": f"list command rejected: the message is {limit + 1} bytes, the limit is {limit}",
        "details": [],
        "detailsOmitted": 0,
    }
    [letter] = await read_topic(settings, settings.topic_dead_letter, 1, timeout=20)
    assert letter.value == over  # type: ignore[attr-defined]
    assert dict(letter.headers)["dead-letter-code"] == b"MESSAGE_TOO_LARGE"  # type: ignore[attr-defined]


def test_the_corpus_is_big_and_covers_every_code() -> None:
    cases = corpus()
    bad = [case for case in cases if case.code is not None]
    assert len(bad) >= 50
    assert {case.code for case in bad} >= {
        "DECODE_ERROR",
        "VALIDATION_ERROR",
        "MESSAGE_TOO_LARGE",
        "BAD_FILE",
        "CONFLICT",
        "NO_FREE_NUMBER",
        "NOT_FOUND",
        "VARIANT_MISMATCH",
        "ALREADY_USED",
    }
    assert {case.command for case in cases} == set(CommandName)
    # every spreadsheet of the corpus is a real file within the size limit
    for case in cases:
        if case.command is CommandName.LOAD_EXCEL and case.code == "BAD_FILE":
            content = base64.b64decode(json.loads(case.value or b"{}")["upFile"])
            assert 0 < len(content) <= LIMITS.file_bytes, case.name
    # Cases run side by side on several partitions: none may depend on another's outcome, so
    # no number that a refused mark-used names is one that a valid case stores.
    stored = {number for case in cases for number, _, _ in case.stored}
    for case in cases:
        if case.command is CommandName.MARK_USED and case.code and case.value:
            with contextlib.suppress(ValueError):
                body = json.loads(case.value)
                assert not isinstance(body, dict) or body.get("uniqueNumber") not in stored
