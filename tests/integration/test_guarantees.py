"""The guarantees a warehouse relies on: never twice, idempotent, a bad record stops nothing."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg

from schemas.commands import CommandName, ReserveCommand
from tests.integration.conftest import RunningWorkers
from tests.integration.test_operations import load_body
from worker.client import CommandClient, read_topic
from worker.config import Settings
from worker.domain.service import CommandService, IncomingCommand
from worker.storage.database import PgDatabase

RESERVE = {"variant_id": "1000", "type_unique_number": "UIT"}


async def test_eight_concurrent_reservers_never_share_a_number(
    client: CommandClient, worker: RunningWorkers, database_url: str
) -> None:
    numbers = [f"CODE-{i:04}" for i in range(1000)]
    loaded = await client.request(CommandName.LOAD_JSON, load_body("1000", *numbers))
    assert loaded["loaded"] == 1000

    async def reserver(n: int) -> tuple[list[str], str]:
        """One worker's database side: its own pool, reserving until nothing is left."""
        database = await PgDatabase.connect(database_url, "disable", 2)
        service = CommandService(database)
        got: list[str] = []
        try:
            while True:
                body = json.loads(
                    await service.apply(
                        IncomingCommand(
                            f"r{n}-{len(got)}",
                            CommandName.RESERVE,
                            ReserveCommand.model_validate(RESERVE),
                        )
                    )
                )
                if not body["success"]:
                    return got, body["error"]["code"]
                got.append(body["uniqueNumber"])
        finally:
            await database.close()

    outcomes = await asyncio.gather(*(reserver(n) for n in range(8)))

    handed_out = [number for got, _ in outcomes for number in got]
    assert len(handed_out) == 1000
    assert sorted(handed_out) == numbers  # each number once, none twice
    assert [code for _, code in outcomes] == ["NO_FREE_NUMBER"] * 8
    assert all(len(got) > 0 for got, _ in outcomes)  # they really ran side by side


async def test_reserves_through_three_workers_in_one_group(
    client: CommandClient, workers: RunningWorkers, db: asyncpg.Connection
) -> None:
    for _ in range(3):
        workers.start()
    await client.request(
        CommandName.LOAD_JSON, load_body("1000", *(f"N{i:03}" for i in range(300)))
    )
    # Keys spread the reserves over every partition, so all three workers take part.
    ids = [
        await client.send(CommandName.RESERVE, RESERVE, key=str(i), wait=False) for i in range(305)
    ]
    await client.flush()
    results = await client.wait_for(ids, timeout=60)

    numbers = [r["uniqueNumber"] for r in results.values() if r["success"]]
    refused = [r["error"]["code"] for r in results.values() if not r["success"]]
    assert len(numbers) == len(set(numbers)) == 300
    assert refused == ["NO_FREE_NUMBER"] * 5
    assert await db.fetchval("SELECT count(*) FROM unique_numbers WHERE is_reserved") == 300
    assert {client.result_counts[i] for i in ids} == {1}


async def test_a_reserve_delivered_twice_hands_out_one_number(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    await client.request(CommandName.LOAD_JSON, load_body("1000", "ONE", "TWO"))
    body = {**RESERVE, "commandId": "pick-7"}
    await client.send(CommandName.RESERVE, body)
    first = (await client.wait_for(["pick-7"]))["pick-7"]
    client.results.pop("pick-7")
    await client.send(CommandName.RESERVE, body)  # the producer's retry, or a replay
    second = (await client.wait_for(["pick-7"]))["pick-7"]

    assert first == second
    assert first["uniqueNumber"] == "ONE"
    assert client.result_counts["pick-7"] == 2  # answered each time it was delivered
    assert await db.fetchval("SELECT count(*) FROM unique_numbers WHERE is_reserved") == 1


async def test_reusing_a_command_id_for_another_command_is_refused(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    await client.request(CommandName.LOAD_JSON, load_body("1000", "ONE", "TWO"))
    await client.request(CommandName.RESERVE, {**RESERVE, "commandId": "same"})
    client.results.pop("same")
    reused = await client.request(
        CommandName.RESERVE,
        {**RESERVE, "id": "PO-1", "doc_type": "PURCHASE_ORDER", "commandId": "same"},
    )
    assert reused["error"]["code"] == "COMMAND_ID_REUSED"
    assert await db.fetchval("SELECT count(*) FROM unique_numbers WHERE is_reserved") == 1


async def test_a_poison_message_is_answered_dead_lettered_and_the_next_one_applied(
    worker: RunningWorkers, client: CommandClient, settings: Settings
) -> None:
    poison = b"\x00\xffnot json at all"
    await client.send_raw(
        CommandName.RESERVE, poison, key=b"1000", headers=[("command-id", b"poison-1")]
    )
    valid = await client.request(CommandName.LOAD_JSON, load_body("1000", "AFTER"))
    bad = (await client.wait_for(["poison-1"]))["poison-1"]

    assert valid["success"] is True
    assert bad["success"] is False
    assert bad["error"]["code"] == "DECODE_ERROR"
    assert "not UTF-8" in bad["error"]["message"]
    [letter] = await read_topic(settings, settings.topic_dead_letter, 1, timeout=20)
    assert letter.value == poison  # type: ignore[attr-defined]
    assert letter.key == b"1000"  # type: ignore[attr-defined]
    headers = dict(letter.headers)  # type: ignore[attr-defined]
    assert headers["command-id"] == b"poison-1"
    assert headers["dead-letter-code"] == b"DECODE_ERROR"
    assert headers["dead-letter-source"].startswith(settings.topic_reserve.encode() + b":")


async def test_an_invalid_command_gets_a_result_under_its_own_id(
    worker: RunningWorkers, client: CommandClient
) -> None:
    command_id = str(uuid.uuid4())
    result = await client.request(
        CommandName.LIST, {"commandId": command_id, "variantId": "1000", "size": 0}
    )
    assert result["commandId"] == command_id
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert result["error"]["details"][0]["field"] == "size"


async def test_a_long_load_holds_up_no_reserve_of_another_partition(
    client: CommandClient, worker: RunningWorkers
) -> None:
    """Each partition is applied at its own pace (worker/transport/lanes.py): reserves sent
    after three loads of 50,000 numbers are answered while the loads are still being stored."""
    await client.request(CommandName.LOAD_JSON, load_body("1000", *(f"R{i}" for i in range(5))))
    loads = [
        await client.send(
            CommandName.LOAD_JSON,
            load_body("big", *(f"BIG-{n}-{i:05}" for i in range(50_000))),
            key="big",
        )
        for n in range(3)
    ]
    reserves = [await client.send(CommandName.RESERVE, RESERVE) for _ in range(5)]

    answered = await client.wait_for(reserves, timeout=60)
    loads_answered_by_then = [i for i in loads if i in client.results]
    assert sorted(r["uniqueNumber"] for r in answered.values()) == [f"R{i}" for i in range(5)]
    assert loads_answered_by_then == []
    assert all(r["success"] for r in (await client.wait_for(loads, timeout=120)).values())


async def test_loads_beyond_what_the_lanes_may_hold_are_all_answered(
    client: CommandClient, workers: RunningWorkers, db: asyncpg.Connection
) -> None:
    """With MESSAGE_MAX_BYTES at 200 kB the lanes together hold at most 800 kB: 24 loads of
    ~100 kB over every partition pause and resume their partitions, and lose nothing."""
    workers.start(message_max_bytes=200_000)
    ids = [
        await client.send(
            CommandName.LOAD_JSON,
            load_body(f"V{n}", *(f"HELD-{n:02}-{i:04}-{'x' * 20}" for i in range(2_000))),
            key=f"V{n}",
            wait=False,
        )
        for n in range(24)
    ]
    await client.flush()
    results = await client.wait_for(ids, timeout=120)

    assert [results[i]["loaded"] for i in ids] == [2_000] * 24
    assert await db.fetchval("SELECT count(*) FROM unique_numbers") == 48_000
    assert {client.result_counts[i] for i in ids} == {1}
