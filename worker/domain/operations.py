"""The five operations of the contract, each run inside the transaction the service opened."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from schemas.commands import (
    CommandName,
    DocType,
    ListCommand,
    LoadExcelCommand,
    LoadJsonCommand,
    MarkUsedCommand,
    ReserveCommand,
)
from schemas.results import (
    ErrorCode,
    ErrorDetail,
    ListedNumber,
    ListResult,
    LoadResult,
    MarkUsedResult,
    ReserveResult,
)
from worker.domain.errors import CommandRefused, count_phrase
from worker.domain.loading import NumbersToLoad, from_json_items, from_rows, load_numbers
from worker.domain.ports import NumberStore, ReserveRequest
from worker.domain.spreadsheet import UnreadableFile, read_number_rows


async def _load(
    store: NumberStore, command_id: str, name: CommandName, numbers: NumbersToLoad
) -> LoadResult:
    outcome = await load_numbers(store, command_id, numbers)
    return LoadResult(
        command_id=command_id,
        command=name.value,
        loaded=outcome.loaded,
        already_loaded=outcome.already_loaded,
    )


async def load_json(
    store: NumberStore, command_id: str, command: LoadJsonCommand | NumbersToLoad
) -> LoadResult:
    """`command` is the model, or its numbers when the decoder read them as columns."""
    numbers = command if isinstance(command, NumbersToLoad) else from_json_items(command.items)
    return await _load(store, command_id, CommandName.LOAD_JSON, numbers)


async def load_excel(store: NumberStore, command_id: str, command: LoadExcelCommand) -> LoadResult:
    content = command.up_file
    name = command.file_name or "the file"
    try:
        # Parsing a workbook is CPU work: keep the event loop free for the other partitions.
        readout = await asyncio.to_thread(read_number_rows, content)
    except UnreadableFile as exc:
        raise CommandRefused(ErrorCode.BAD_FILE, f"{name}: {exc}") from exc
    if readout.problems_total:
        first = readout.problems[0]
        raise CommandRefused(
            ErrorCode.BAD_FILE,
            f"{name}: {count_phrase(readout.problems_total, 'problem')} in its rows, first at "
            f"row {first.row} column {first.column}: {first.reason}; nothing was loaded",
            [ErrorDetail(row=p.row, field=p.column, reason=p.reason) for p in readout.problems],
            total=readout.problems_total,
        )
    if not readout.rows:
        raise CommandRefused(ErrorCode.BAD_FILE, f"{name} holds no rows of numbers")
    rows = readout.rows
    numbers = from_rows(
        [r.unique_number for r in rows],
        [r.variant_id for r in rows],
        [r.type for r in rows],
        [r.row for r in rows],
    )
    return await _load(store, command_id, CommandName.LOAD_EXCEL, numbers)


async def list_numbers(store: NumberStore, command_id: str, command: ListCommand) -> ListResult:
    rows = await store.list_numbers(
        command.variant_id,
        command.is_used,
        command.size + 1,
        command.page * command.size,
        after=int(command.after) if command.after is not None else None,
    )
    has_more = len(rows) > command.size
    return ListResult(
        command_id=command_id,
        command="list",
        unique_numbers=[
            ListedNumber(
                disabled=r.disabled,
                is_reserved=r.is_reserved,
                is_used=r.is_used,
                physical_set=r.physical_set,
                purchase_order=r.purchase_order,
                unique_number=r.unique_number,
                type=r.number_type,
            )
            for r in rows[: command.size]
        ],
        page=command.page,
        size=command.size,
        has_more=has_more,
        next_cursor=str(rows[command.size - 1].id) if has_more else None,
    )


def _reserve_request(command_id: str, command: ReserveCommand) -> ReserveRequest:
    document = command.document_id or ""
    return ReserveRequest(
        variant_id=command.variant_id,
        number_type=command.type.value,
        command_id=command_id,
        purchase_order=document if command.doc_type is DocType.PURCHASE_ORDER else "",
        physical_set=document if command.doc_type is DocType.PHYSICAL_SET_ORDER else "",
    )


def _reserved(command_id: str, command: ReserveCommand, number: str | None) -> ReserveResult:
    if number is None:
        raise CommandRefused(
            ErrorCode.NO_FREE_NUMBER,
            f"variant {command.variant_id!r} has no free {command.type.value} number left: "
            "load more numbers for it",
        )
    return ReserveResult(
        command_id=command_id,
        command="reserve",
        variant_id=command.variant_id,
        unique_number=number,
        type=command.type.value,
        doc_type=command.doc_type.value if command.doc_type else None,
        document_id=command.document_id,
    )


async def reserve(store: NumberStore, command_id: str, command: ReserveCommand) -> ReserveResult:
    request = _reserve_request(command_id, command)
    number = await store.reserve_number(
        request.variant_id,
        request.number_type,
        command_id,
        purchase_order=request.purchase_order,
        physical_set=request.physical_set,
    )
    return _reserved(command_id, command, number)


async def reserve_many(
    store: NumberStore, commands: Sequence[tuple[str, ReserveCommand]]
) -> list[ReserveResult | CommandRefused]:
    """`reserve` for each command in turn, in one statement; a refusal is returned, not raised
    (a refused reserve writes nothing, so the others stand)."""
    numbers = await store.reserve_numbers([_reserve_request(i, c) for i, c in commands])
    results: list[ReserveResult | CommandRefused] = []
    for (command_id, command), number in zip(commands, numbers, strict=True):
        try:
            results.append(_reserved(command_id, command, number))
        except CommandRefused as refusal:
            results.append(refusal)
    return results


async def mark_used(
    store: NumberStore, command_id: str, command: MarkUsedCommand
) -> MarkUsedResult:
    stored = await store.number_for_update(command.unique_number)
    if stored is None:
        raise CommandRefused(
            ErrorCode.NOT_FOUND,
            f"unique number {command.unique_number!r} is not stored: load it first",
        )
    if stored.variant_id != command.variant_id:
        raise CommandRefused(
            ErrorCode.VARIANT_MISMATCH,
            f"unique number {command.unique_number!r} belongs to variant "
            f"{stored.variant_id!r}, not {command.variant_id!r}",
        )
    if stored.is_used:
        raise CommandRefused(
            ErrorCode.ALREADY_USED,
            f"unique number {command.unique_number!r} of variant {command.variant_id!r} "
            "is already marked used",
        )
    await store.mark_used(command.unique_number, command_id)
    return MarkUsedResult(
        command_id=command_id,
        command="mark-used",
        variant_id=command.variant_id,
        unique_number=command.unique_number,
    )
