"""Loading numbers (from JSON or a spreadsheet): all of them are stored, or none is."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.fields import LIMITS
from schemas.results import ErrorCode, ErrorDetail
from worker.domain.errors import CommandRefused, count_phrase
from worker.domain.ports import NumberStore


@dataclass(frozen=True)
class NumberToLoad:
    variant_id: str
    unique_number: str
    number_type: str
    # Where the number came from, for error messages: a spreadsheet row or a JSON path.
    row: int | None = None
    field: str | None = None

    def where(self) -> str:
        return f"row {self.row}" if self.row is not None else (self.field or "?")


@dataclass(frozen=True)
class LoadOutcome:
    loaded: int
    already_loaded: int


def _refuse_duplicates(numbers: list[NumberToLoad]) -> list[NumberToLoad]:
    """Drop exact repeats within the load; refuse a number given twice with different variants."""
    first_seen: dict[str, NumberToLoad] = {}
    unique: list[NumberToLoad] = []
    problems: list[ErrorDetail] = []
    for entry in numbers:
        earlier = first_seen.get(entry.unique_number)
        if earlier is None:
            first_seen[entry.unique_number] = entry
            unique.append(entry)
        elif (earlier.variant_id, earlier.number_type) != (entry.variant_id, entry.number_type):
            problems.append(
                ErrorDetail(
                    row=entry.row,
                    field=entry.field,
                    variant_id=entry.variant_id,
                    unique_number=entry.unique_number,
                    reason=(
                        f"the same number is given at {earlier.where()} for variant "
                        f"{earlier.variant_id!r} type {earlier.number_type}"
                    ),
                )
            )
    if problems:
        first = f"row {problems[0].row}" if problems[0].row is not None else problems[0].field
        raise CommandRefused(
            ErrorCode.CONFLICT,
            f"{count_phrase(len(problems), 'number')} appear twice in this load with different "
            f"variants or types, first at {first}; nothing was loaded",
            problems,
        )
    return unique


async def load_numbers(
    store: NumberStore, command_id: str, numbers: list[NumberToLoad]
) -> LoadOutcome:
    unique = _refuse_duplicates(numbers)
    values = [n.unique_number for n in unique]
    variants = [n.variant_id for n in unique]
    types = [n.number_type for n in unique]
    inserted = await store.insert_numbers(values, variants, types, command_id)
    if inserted < len(unique):
        conflicts = await store.conflicting_numbers(
            values, variants, types, LIMITS.problems_reported + 1
        )
        if conflicts:
            details = [
                ErrorDetail(
                    row=unique[c.index].row,
                    field=unique[c.index].field,
                    variant_id=unique[c.index].variant_id,
                    unique_number=unique[c.index].unique_number,
                    reason=(f"already stored under variant {c.variant_id!r} type {c.number_type}"),
                )
                for c in conflicts
            ]
            more = "" if len(conflicts) <= LIMITS.problems_reported else "more than "
            first = unique[conflicts[0].index]
            raise CommandRefused(
                ErrorCode.CONFLICT,
                f"{more}{count_phrase(min(len(conflicts), LIMITS.problems_reported), 'number')} "
                f"of this load {'is' if len(conflicts) == 1 else 'are'} already stored under "
                f"another variant or type, first at {first.where()} "
                f"(variant {conflicts[0].variant_id!r}); nothing was loaded",
                details,
            )
    return LoadOutcome(loaded=inserted, already_loaded=len(numbers) - inserted)
