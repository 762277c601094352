"""A partition's batch in one transaction: the same outcome as the commands one by one.

Also the fast paths of the storage: COPY for loads (falling back to the insert that skips
stored numbers), and the list cursor.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from schemas.commands import (
    CommandName,
    ListCommand,
    LoadJsonCommand,
    MarkUsedCommand,
    ReserveCommand,
)
from tests.integration.test_operations import load_body
from worker.domain.service import CommandService, IncomingCommand
from worker.storage.database import PgDatabase


@pytest.fixture
async def service(database_url: str) -> Any:
    database = await PgDatabase.connect(database_url, "disable", 2)
    yield CommandService(database)
    await database.close()


def reserve(command_id: str, variant: str, **extra: str) -> IncomingCommand:
    body = {"variant_id": variant, "type_unique_number": "UIT", **extra}
    return IncomingCommand(command_id, CommandName.RESERVE, ReserveCommand.model_validate(body))


def load(command_id: str, variant: str, *numbers: str) -> IncomingCommand:
    body = LoadJsonCommand.model_validate(load_body(variant, *numbers))
    return IncomingCommand(command_id, CommandName.LOAD_JSON, body)


def listing(**body: Any) -> IncomingCommand:
    return IncomingCommand("list", CommandName.LIST, ListCommand.model_validate(body))


async def results(service: CommandService, *commands: IncomingCommand) -> list[dict[str, Any]]:
    return [json.loads(body) for body in await service.apply_batch(list(commands))]


async def test_reserves_in_one_batch_get_what_they_would_one_by_one(
    service: CommandService, db: asyncpg.Connection
) -> None:
    await service.apply(load("l1", "A", "A-1", "A-2", "A-3"))
    await service.apply(load("l2", "B", "B-1"))
    batch = [
        reserve("r1", "A", id="PO-1", doc_type="PURCHASE_ORDER"),
        reserve("r2", "B"),
        reserve("r3", "A", id="KIT-1", doc_type="PHYSICAL_SET_ORDER"),
        reserve("r4", "B"),
        reserve("r5", "A"),
        reserve("r6", "A"),
    ]
    got = await results(service, *batch)
    assert [r.get("uniqueNumber") for r in got] == ["A-1", "B-1", "A-2", None, "A-3", None]
    assert [r["success"] for r in got] == [True, True, True, False, True, False]
    assert got[3]["error"]["code"] == got[5]["error"]["code"] == "NO_FREE_NUMBER"
    rows = await db.fetch(
        "SELECT unique_number, reserved_by_command, purchase_order, physical_set"
        " FROM unique_numbers WHERE is_reserved ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("A-1", "r1", "PO-1", ""),
        ("A-2", "r3", "", "KIT-1"),
        ("A-3", "r5", "", ""),
        ("B-1", "r2", "", ""),
    ]
    # Each stored result is what was answered: a redelivery of the batch changes nothing.
    again = await results(service, *(batch[i] for i in (0, 2, 4, 5)))
    assert again == [got[i] for i in (0, 2, 4, 5)]
    assert await db.fetchval("SELECT count(*) FROM unique_numbers WHERE is_reserved") == 4


async def test_a_command_id_twice_in_a_batch_is_applied_once(
    service: CommandService, db: asyncpg.Connection
) -> None:
    await service.apply(load("l1", "A", "A-1", "A-2", "A-3"))
    got = await results(
        service,
        reserve("same", "A"),
        reserve("other", "A"),
        reserve("same", "A"),  # a redelivery within the batch
        reserve("same", "A", id="PO-9", doc_type="PURCHASE_ORDER"),  # the id reused
    )
    assert got[0] == got[2]
    assert got[0]["uniqueNumber"] == "A-1"
    assert got[1]["uniqueNumber"] == "A-2"
    assert got[3]["error"]["code"] == "COMMAND_ID_REUSED"
    assert await db.fetchval("SELECT count(*) FROM unique_numbers WHERE is_reserved") == 2


async def test_a_refused_load_in_a_batch_undoes_only_itself(
    service: CommandService, db: asyncpg.Connection
) -> None:
    mark = MarkUsedCommand.model_validate({"variantId": "A", "uniqueNumber": "A-1"})
    got = await results(
        service,
        load("l1", "A", "A-1", "A-2"),
        load("l2", "B", "B-1", "A-2"),  # A-2 is A's: refused, B-1 not stored
        IncomingCommand("m1", CommandName.MARK_USED, mark),
        load("l3", "B", "B-1"),
    )
    assert [r["success"] for r in got] == [True, False, True, True]
    assert got[1]["error"]["code"] == "CONFLICT"
    numbers = await db.fetch("SELECT unique_number, is_used FROM unique_numbers ORDER BY id")
    assert [tuple(r) for r in numbers] == [("A-1", True), ("A-2", False), ("B-1", False)]


async def test_a_large_load_is_copied_and_a_reload_falls_back_to_skipping_stored_numbers(
    service: CommandService, db: asyncpg.Connection
) -> None:
    numbers = [f"N-{i:05}" for i in range(1000)]  # above the COPY threshold
    first = json.loads(await service.apply(load("l1", "A", *numbers)))
    assert (first["loaded"], first["alreadyLoaded"]) == (1000, 0)
    more = [*numbers[500:], *(f"M-{i:05}" for i in range(500))]
    second = json.loads(await service.apply(load("l2", "A", *more)))
    assert (second["loaded"], second["alreadyLoaded"]) == (500, 500)
    conflict = json.loads(
        await service.apply(load("l3", "B", *(f"X-{i}" for i in range(499)), "N-00007"))
    )
    assert conflict["error"]["code"] == "CONFLICT"
    assert conflict["error"]["details"][0]["field"] == "items[0].uniqueNumbers[499]"
    assert await db.fetchval("SELECT count(*) FROM unique_numbers") == 1500
    order = await db.fetch("SELECT unique_number FROM unique_numbers ORDER BY id")
    assert [r[0] for r in order] == [*numbers, *(f"M-{i:05}" for i in range(500))]


async def test_the_cursor_pages_through_every_number_once(service: CommandService) -> None:
    await service.apply(load("l1", "A", *(f"A-{i:03}" for i in range(25))))
    await service.apply(load("l2", "B", "B-1"))
    seen: list[str] = []
    page = json.loads(await service.apply(listing(variantId="A", size=10)))
    seen += [n["uniqueNumber"] for n in page["uniqueNumbers"]]
    while page["hasMore"]:
        page = json.loads(
            await service.apply(listing(variantId="A", size=10, after=page["nextCursor"]))
        )
        seen += [n["uniqueNumber"] for n in page["uniqueNumbers"]]
    assert seen == [f"A-{i:03}" for i in range(25)]
    assert "nextCursor" not in page
    by_page = json.loads(await service.apply(listing(variantId="A", size=10, page=1)))
    assert by_page["uniqueNumbers"][0]["uniqueNumber"] == "A-010"
    unused = json.loads(
        await service.apply(listing(variantId="A", size=10, isUsed=False, after="0"))
    )
    assert len(unused["uniqueNumbers"]) == 10


@pytest.mark.parametrize(
    "body",
    [
        {"variantId": "A", "after": "12", "page": 1},  # a cursor or a page, not both
        {"variantId": "A", "after": "twelve"},
        {"variantId": "A", "after": 12},
        {"variantId": "A", "after": "1" * 19},
    ],
)
def test_a_cursor_that_cannot_be_one_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"after|cursor"):
        ListCommand.model_validate(body)


async def test_pages_by_offset_skip_exactly_the_rows_before_them(service: CommandService) -> None:
    await service.apply(load("l1", "A", *(f"A-{i:03}" for i in range(25))))
    await service.apply(load("l2", "B", *(f"B-{i:03}" for i in range(5))))
    mark = MarkUsedCommand.model_validate({"variantId": "A", "uniqueNumber": "A-001"})
    await service.apply(IncomingCommand("m1", CommandName.MARK_USED, mark))

    async def page(**body: Any) -> list[str]:
        result = json.loads(await service.apply(listing(variantId="A", **body)))
        return [n["uniqueNumber"] for n in result["uniqueNumbers"]]

    assert await page(size=10, page=2) == [f"A-{i:03}" for i in range(20, 25)]
    assert await page(size=10, page=3) == []
    assert await page(size=5, page=1, isUsed=False) == [f"A-{i:03}" for i in range(6, 11)]
    assert await page(size=5, page=0, isUsed=True) == ["A-001"]
    assert await page(size=5, page=1, isUsed=True) == []
