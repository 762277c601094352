"""Every operation end to end: command in through Kafka, result out, database state checked."""

from __future__ import annotations

import asyncpg

from schemas.commands import CommandName
from tests.integration.conftest import RunningWorkers
from worker.client import CommandClient

GS = "\x1d"
DATAMATRIX = f"0104064211748539215%HefMSHY1egL{GS}91EE06{GS}92I1F/M3Rj'\"%/"
LOAD = CommandName.LOAD_JSON


def load_body(variant: str, *numbers: str, number_type: str = "UIT") -> dict[str, object]:
    return {
        "items": [
            {
                "variantId": variant,
                "uniqueNumbers": [{"uniqueNumber": n, "type": number_type} for n in numbers],
            }
        ]
    }


async def stored(db: asyncpg.Connection) -> list[tuple[str, str, str, bool, bool, str, str]]:
    rows = await db.fetch(
        "SELECT unique_number, variant_id, number_type, is_reserved, is_used,"
        " purchase_order, physical_set FROM unique_numbers ORDER BY id"
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_load_json_stores_every_number_byte_for_byte(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    numbers = [DATAMATRIX, "000123", "1232344456777"]
    result = await client.request(LOAD, load_body("1000", *numbers))

    assert result["success"] is True
    assert result["command"] == "load-json"
    assert (result["loaded"], result["alreadyLoaded"]) == (3, 0)
    assert [r[0] for r in await stored(db)] == numbers
    assert [r[1] for r in await stored(db)] == ["1000"] * 3
    raw = await db.fetchval(
        "SELECT convert_to(unique_number, 'UTF8') FROM unique_numbers ORDER BY id LIMIT 1"
    )
    assert raw == DATAMATRIX.encode("utf-8")


async def test_loading_again_is_not_an_error_and_changes_nothing(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    await client.request(LOAD, load_body("1000", "A1", "A2"))
    again = await client.request(LOAD, load_body("1000", "A2", "A3"))

    assert again["success"] is True
    assert (again["loaded"], again["alreadyLoaded"]) == (1, 1)
    assert [r[0] for r in await stored(db)] == ["A1", "A2", "A3"]


async def test_a_load_touching_another_variants_number_stores_nothing(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    await client.request(LOAD, load_body("1000", "TAKEN"))
    result = await client.request(LOAD, load_body("2000", "NEW-1", "TAKEN", "NEW-2"))

    assert result["success"] is False
    assert result["error"]["code"] == "CONFLICT"
    assert "items[0].uniqueNumbers[1]" in result["error"]["message"]
    assert result["error"]["details"][0]["uniqueNumber"] == "TAKEN"
    assert "'1000'" in result["error"]["details"][0]["reason"]
    assert [r[0] for r in await stored(db)] == ["TAKEN"]


async def test_list_pages_in_load_order_with_the_documented_fields(
    worker: RunningWorkers, client: CommandClient
) -> None:
    await client.request(LOAD, load_body("AA-1025", *(f"N{i:02}" for i in range(5))))
    first = await client.request(CommandName.LIST, {"variantId": "AA-1025", "page": 0, "size": 2})
    last = await client.request(CommandName.LIST, {"variantId": "AA-1025", "page": 2, "size": 2})

    assert first["success"] is True
    assert first["uniqueNumbers"][0] == {
        "disabled": False,
        "isReserved": False,
        "isUsed": False,
        "physicalSet": "",
        "purchaseOrder": "",
        "uniqueNumber": "N00",
        "type": "UIT",
    }
    assert [n["uniqueNumber"] for n in first["uniqueNumbers"]] == ["N00", "N01"]
    assert first["hasMore"] is True
    assert [n["uniqueNumber"] for n in last["uniqueNumbers"]] == ["N04"]
    assert last["hasMore"] is False


async def test_reserve_takes_the_oldest_free_number_and_records_the_document(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    await client.request(LOAD, load_body("1000", "FIRST", "SECOND", "THIRD"))
    by_po = await client.request(
        CommandName.RESERVE,
        {
            "variant_id": "1000",
            "type_unique_number": "UIT",
            "id": "PO-17",
            "doc_type": "PURCHASE_ORDER",
        },
    )
    by_kit = await client.request(
        CommandName.RESERVE,
        {"variantId": "1000", "type": "UIT", "id": "KIT-3", "docType": "PHYSICAL_SET_ORDER"},
    )
    plain = await client.request(
        CommandName.RESERVE, {"variant_id": "1000", "type_unique_number": "UIT"}
    )
    none_left = await client.request(
        CommandName.RESERVE, {"variant_id": "1000", "type_unique_number": "UIT"}
    )

    assert (by_po["success"], by_po["variantId"], by_po["uniqueNumber"]) == (True, "1000", "FIRST")
    assert by_kit["uniqueNumber"] == "SECOND"
    assert plain["uniqueNumber"] == "THIRD"
    assert none_left["success"] is False
    assert none_left["error"]["code"] == "NO_FREE_NUMBER"
    assert "'1000'" in none_left["error"]["message"]
    assert await stored(db) == [
        ("FIRST", "1000", "UIT", True, False, "PO-17", ""),
        ("SECOND", "1000", "UIT", True, False, "", "KIT-3"),
        ("THIRD", "1000", "UIT", True, False, "", ""),
    ]


async def test_mark_used_and_its_refusals(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    await client.request(LOAD, load_body("1000", DATAMATRIX, "OTHER"))
    used = await client.request(
        CommandName.MARK_USED, {"variantId": "1000", "uniqueNumber": DATAMATRIX}
    )
    again = await client.request(
        CommandName.MARK_USED, {"variantId": "1000", "uniqueNumber": DATAMATRIX}
    )
    wrong_variant = await client.request(
        CommandName.MARK_USED, {"variantId": "2000", "uniqueNumber": "OTHER"}
    )
    unknown = await client.request(
        CommandName.MARK_USED, {"variantId": "1000", "uniqueNumber": "NOPE"}
    )
    only_used = await client.request(CommandName.LIST, {"variantId": "1000", "isUsed": True})
    only_unused = await client.request(CommandName.LIST, {"variantId": "1000", "isUsed": False})

    assert used["success"] is True
    assert again["error"]["code"] == "ALREADY_USED"
    assert wrong_variant["error"]["code"] == "VARIANT_MISMATCH"
    assert "'1000'" in wrong_variant["error"]["message"]
    assert unknown["error"]["code"] == "NOT_FOUND"
    assert [n["uniqueNumber"] for n in only_used["uniqueNumbers"]] == [DATAMATRIX]
    assert [n["uniqueNumber"] for n in only_unused["uniqueNumbers"]] == ["OTHER"]
    assert [r[4] for r in await stored(db)] == [True, False]
