"""Loading numbers (from JSON or a spreadsheet): all of them are stored, or none is.

A load is held as columns (numbers, variant ids, types, in load order) rather than as an
object per number: a load of 50,000 numbers then costs a few list operations, and where each
number came from (a JSON path, a spreadsheet row) is only worked out for the error messages.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from schemas.commands import LoadJsonItem
from schemas.fields import LIMITS
from schemas.results import ErrorCode, ErrorDetail
from worker.domain.errors import CommandRefused, count_phrase
from worker.domain.ports import NumberStore

# Where the i-th number of a load came from: (spreadsheet row, JSON path), one of them set.
Origin = Callable[[int], tuple[int | None, str | None]]


@dataclass(frozen=True)
class NumbersToLoad:
    numbers: list[str]
    variant_ids: list[str]
    types: list[str]
    origin: Origin

    def where(self, index: int) -> str:
        row, field = self.origin(index)
        return f"row {row}" if row is not None else (field or "?")

    def detail(self, index: int, reason: str) -> ErrorDetail:
        row, field = self.origin(index)
        return ErrorDetail(
            row=row,
            field=field,
            variant_id=self.variant_ids[index],
            unique_number=self.numbers[index],
            reason=reason,
        )


def from_json_items(items: Sequence[LoadJsonItem]) -> NumbersToLoad:
    numbers: list[str] = []
    variant_ids: list[str] = []
    types: list[str] = []
    starts: list[int] = []  # index of each item's first number
    for item in items:
        entries = item.unique_numbers
        starts.append(len(numbers))
        numbers.extend([e.unique_number for e in entries])
        types.extend([e.type.value for e in entries])
        variant_ids.extend([item.variant_id] * len(entries))
    return from_json_columns(numbers, variant_ids, types, starts)


def from_json_columns(
    numbers: list[str], variant_ids: list[str], types: list[str], starts: list[int]
) -> NumbersToLoad:
    """The numbers of a load-json command's items, in order; starts[i] is the index of the
    first number of items[i]."""

    def origin(index: int) -> tuple[int | None, str | None]:
        i = bisect_right(starts, index) - 1
        return None, f"items[{i}].uniqueNumbers[{index - starts[i]}]"

    return NumbersToLoad(numbers, variant_ids, types, origin)


def from_rows(
    numbers: list[str], variant_ids: list[str], types: list[str], rows: list[int]
) -> NumbersToLoad:
    """Numbers read from a spreadsheet; rows[i] is the row number of the i-th."""
    return NumbersToLoad(numbers, variant_ids, types, lambda index: (rows[index], None))


@dataclass(frozen=True)
class LoadOutcome:
    loaded: int
    already_loaded: int


def _refuse_duplicates(load: NumbersToLoad) -> list[int] | None:
    """Drop exact repeats within the load; refuse a number given twice with different variants.

    Returns the indexes of the numbers to insert, or None when there is no repeat (the usual
    case, found without a loop in Python).
    """
    if len(set(load.numbers)) == len(load.numbers):
        return None
    first_seen: dict[str, int] = {}
    kept: list[int] = []
    problems: list[ErrorDetail] = []
    numbers, variants, types = load.numbers, load.variant_ids, load.types
    for index, number in enumerate(numbers):
        earlier = first_seen.get(number)
        if earlier is None:
            first_seen[number] = index
            kept.append(index)
        elif (variants[earlier], types[earlier]) != (variants[index], types[index]):
            problems.append(
                load.detail(
                    index,
                    f"the same number is given at {load.where(earlier)} for variant "
                    f"{variants[earlier]!r} type {types[earlier]}",
                )
            )
    if problems:
        first = f"row {problems[0].row}" if problems[0].row is not None else problems[0].field
        verb = "appears" if len(problems) == 1 else "appear"
        raise CommandRefused(
            ErrorCode.CONFLICT,
            f"{count_phrase(len(problems), 'number')} {verb} twice in this load with different "
            f"variants or types, first at {first}; nothing was loaded",
            problems,
        )
    return kept


async def load_numbers(store: NumberStore, command_id: str, load: NumbersToLoad) -> LoadOutcome:
    kept = _refuse_duplicates(load)
    if kept is None:
        values, variants, types = load.numbers, load.variant_ids, load.types
    else:
        values = [load.numbers[i] for i in kept]
        variants = [load.variant_ids[i] for i in kept]
        types = [load.types[i] for i in kept]
    inserted = await store.insert_numbers(values, variants, types, command_id)
    if inserted < len(values):
        conflicts = await store.conflicting_numbers(
            values, variants, types, LIMITS.problems_reported + 1
        )
        if conflicts:
            where = [c.index if kept is None else kept[c.index] for c in conflicts]
            details = [
                load.detail(
                    i, f"already stored under variant {c.variant_id!r} type {c.number_type}"
                )
                for i, c in zip(where, conflicts, strict=True)
            ]
            more = "" if len(conflicts) <= LIMITS.problems_reported else "more than "
            raise CommandRefused(
                ErrorCode.CONFLICT,
                f"{more}{count_phrase(min(len(conflicts), LIMITS.problems_reported), 'number')} "
                f"of this load {'is' if len(conflicts) == 1 else 'are'} already stored under "
                f"another variant or type, first at {load.where(where[0])} "
                f"(variant {conflicts[0].variant_id!r}); nothing was loaded",
                details,
            )
    return LoadOutcome(loaded=inserted, already_loaded=len(load.numbers) - inserted)
