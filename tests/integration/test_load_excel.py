"""load-excel end to end, with real .xls and .xlsx files written in the test."""

from __future__ import annotations

import base64
from collections.abc import Callable

import asyncpg
import pytest

from schemas.commands import CommandName
from tests.integration.conftest import RunningWorkers
from tests.unit.spreadsheet_files import GS, xls_file, xlsx_file
from worker.client import CommandClient

CODE = f"0104064211748539215%HefMSHY1egL{GS}91EE06{GS}92I1F/M3Rj'\"="
ROWS = [
    ["variant_id", "unique_number", "type"],  # a header row
    [1000, CODE, "UIT"],  # variant id in a numeric cell
    [None, None, None],  # an empty row
    ["AA-1025", "0113mldks!", "UIT"],  # the spec's example
    [],
    ["AA-1025", "000777", "UIT"],  # leading zeros in a text cell
    ["2000", 356938035643809, "IMEI"],  # an IMEI typed as a number
]
EXPECTED = [
    (CODE, "1000", "UIT"),
    ("0113mldks!", "AA-1025", "UIT"),
    ("000777", "AA-1025", "UIT"),
    ("356938035643809", "2000", "IMEI"),
]

Writer = Callable[..., bytes]


@pytest.mark.parametrize(("writer", "name"), [(xls_file, "codes.xls"), (xlsx_file, "codes.xlsx")])
async def test_a_spreadsheet_is_loaded_exactly(
    worker: RunningWorkers,
    client: CommandClient,
    db: asyncpg.Connection,
    writer: Writer,
    name: str,
) -> None:
    content = writer(ROWS)
    result = await client.request(
        CommandName.LOAD_EXCEL,
        {"fileName": name, "upFile": base64.b64encode(content).decode()},
    )

    assert result == {
        "commandId": result["commandId"],
        "command": "load-excel",
        "success": True,
        "loaded": 4,
        "alreadyLoaded": 0,
    }
    rows = await db.fetch(
        "SELECT unique_number, variant_id, number_type FROM unique_numbers ORDER BY id"
    )
    assert [tuple(r) for r in rows] == EXPECTED


async def test_the_format_is_told_by_content_not_name(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    content = xlsx_file([["AA-1", "X-1", "UIT"]])
    result = await client.request(
        CommandName.LOAD_EXCEL,
        {"fileName": "codes.xls", "upFile": base64.b64encode(content).decode()},
    )
    assert result["success"] is True
    assert await db.fetchval("SELECT unique_number FROM unique_numbers") == "X-1"


async def test_a_bad_row_names_its_row_and_nothing_is_stored(
    worker: RunningWorkers, client: CommandClient, db: asyncpg.Connection
) -> None:
    content = xls_file([["AA-1", "OK-1", "UIT"], ["AA-1", 2.0**60, "UIT"], ["AA-1", "OK-2", "EAN"]])
    result = await client.request(
        CommandName.LOAD_EXCEL,
        {"fileName": "codes.xls", "upFile": base64.b64encode(content).decode()},
    )

    assert result["success"] is False
    assert result["error"]["code"] == "BAD_FILE"
    assert "row 2 column B" in result["error"]["message"]
    assert [(d["row"], d["field"]) for d in result["error"]["details"]] == [(2, "B"), (3, "C")]
    assert await db.fetchval("SELECT count(*) FROM unique_numbers") == 0


async def test_a_file_that_is_not_a_spreadsheet(
    worker: RunningWorkers, client: CommandClient
) -> None:
    result = await client.request(
        CommandName.LOAD_EXCEL,
        {"fileName": "codes.xls", "upFile": base64.b64encode(b"%PDF-1.7 ...").decode()},
    )
    assert result["error"]["code"] == "BAD_FILE"
    assert result["error"]["message"].startswith("codes.xls: ")


async def test_invalid_base64_is_a_validation_error(
    worker: RunningWorkers, client: CommandClient
) -> None:
    result = await client.request(CommandName.LOAD_EXCEL, {"upFile": "not base64!"})
    assert result["error"]["code"] == "VALIDATION_ERROR"
    assert "base64" in result["error"]["message"]
