"""Field rules shared by every message and by the spreadsheet reader.

A unique number is stored byte for byte, so it is validated, never normalised: no trimming,
no case folding, no Unicode normalisation. What is rejected is what cannot be a marking code
or an IMEI and is almost always a mistake upstream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import Annotated

from pydantic import AfterValidator, StringConstraints


class NumberType(StrEnum):
    """Kinds of unique number. The original API knew UIT only; IMEI is the other kind in use."""

    UIT = "UIT"
    IMEI = "IMEI"


@dataclass(frozen=True)
class Limits:
    """Explicit limits of the contract (docs/contract.md lists them)."""

    unique_number_max_length: int = 255
    variant_id_max_length: int = 100
    document_id_max_length: int = 100
    command_id_max_length: int = 200
    file_name_max_length: int = 255
    # A command is keyed by its variant id; the key comes back on the result, which must fit
    # the results topic whatever the key.
    record_key_bytes: int = 1024
    numbers_per_load: int = 50_000
    rows_per_file: int = 1_000_000
    file_bytes: int = 10 * 1024 * 1024
    unpacked_xlsx_bytes: int = 512 * 1024 * 1024
    # What reading one spreadsheet may take, beyond what the worker already uses: a file built to
    # exhaust memory or time within the size limits (millions of empty cells in one row) is
    # refused instead of taking the worker down.
    read_memory_bytes: int = 2 * 1024 * 1024 * 1024
    read_seconds: float = 180.0
    list_page_size_max: int = 1000
    problems_reported: int = 100


LIMITS = Limits()

GS = "\x1d"
# Control characters (C0, DEL, C1) other than the GS1 group separator are never part of a code.
# Lone surrogates (possible in JSON's \uD800 escapes) are not text and cannot be stored either.
_FORBIDDEN_CONTROL = re.compile(r"[\x00-\x1c\x1e\x1f\x7f-\x9f\ud800-\udfff]")


# What counts as surrounding whitespace: Python's whitespace less U+001C..U+001F, which
# str.strip() would also remove and of which GS (U+001D) belongs to a DataMatrix code.
WHITESPACE = "".join(
    c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f"
)


def unique_number_problem(value: str) -> str | None:
    """Why `value` cannot be stored as a unique number, or None when it can."""
    if not value:
        return "is empty"
    if not value.strip(WHITESPACE):
        return "is only whitespace"
    if len(value) > LIMITS.unique_number_max_length:
        return f"is {len(value)} characters long, the limit is {LIMITS.unique_number_max_length}"
    if value != value.strip(WHITESPACE):
        return "starts or ends with whitespace (numbers are stored byte for byte, never trimmed)"
    bad = _FORBIDDEN_CONTROL.search(value)
    if bad is not None:
        code = ord(bad.group())
        if 0xD800 <= code <= 0xDFFF:
            return (
                f"holds a lone UTF-16 surrogate U+{code:04X} at position {bad.start() + 1}, "
                "which is not a character"
            )
        return (
            f"holds control character U+{code:04X} at position {bad.start() + 1} "
            "(only the GS separator U+001D is allowed)"
        )
    return None


_WHITESPACE_SET = frozenset(WHITESPACE)
# _FORBIDDEN_CONTROL's characters that are ASCII, as bytes.
_FORBIDDEN_ASCII = bytes([*range(0x00, 0x1D), 0x1E, 0x1F, 0x7F])
_first_characters = itemgetter(0)
_last_characters = itemgetter(-1)


def unique_numbers_storable(numbers: Sequence[str], joined: str | None = None) -> bool:
    """Whether every one of `numbers` (strings) can be stored: the verdict of
    `unique_number_problem` on each, reached in a few passes over all of them at once instead of
    a call per number (a load holds up to 50,000). `joined` is "".join(numbers), if the caller
    has it. When it is False, `unique_number_problem` tells which number is wrong and why."""
    if not numbers:
        return True
    if min(map(len, numbers)) < 1 or max(map(len, numbers)) > LIMITS.unique_number_max_length:
        return False
    # Whitespace at either end (a number of whitespace only has some at both).
    if not _WHITESPACE_SET.isdisjoint("".join(map(_first_characters, numbers))):
        return False
    if not _WHITESPACE_SET.isdisjoint("".join(map(_last_characters, numbers))):
        return False
    if joined is None:
        joined = "".join(numbers)
    if joined.isascii():  # the usual case, and a flag of the string: no scan
        as_bytes = joined.encode("ascii")
        return len(as_bytes.translate(None, _FORBIDDEN_ASCII)) == len(as_bytes)
    return _FORBIDDEN_CONTROL.search(joined) is None


def identifier_problem(value: str, limit: int) -> str | None:
    """Why `value` cannot be a variant or document id, or None when it can."""
    if not value.strip(WHITESPACE):
        return "is empty or blank"
    if len(value) > limit:
        return f"is {len(value)} characters long, the limit is {limit}"
    if value != value.strip(WHITESPACE):
        return "starts or ends with whitespace"
    bad = re.search(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]", value)
    if bad is not None:
        return f"holds control character U+{ord(bad.group()):04X}"
    return None


def file_name_problem(value: str) -> str | None:
    """Why `value` cannot be the file name of a load-excel command, or None when it can. The name
    is only a label for messages (nothing is written under it), so any printable text will do."""
    if not value.strip(WHITESPACE):
        return "is empty or blank"
    if len(value) > LIMITS.file_name_max_length:
        return f"is {len(value)} characters long, the limit is {LIMITS.file_name_max_length}"
    bad = re.search(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]", value)
    if bad is not None:
        return f"holds control character U+{ord(bad.group()):04X}"
    return None


def _check_unique_number(value: str) -> str:
    problem = unique_number_problem(value)
    if problem is not None:
        raise ValueError(f"unique number {problem}")
    return value


def _identifier_checker(what: str, limit: int) -> AfterValidator:
    def check(value: str) -> str:
        problem = identifier_problem(value, limit)
        if problem is not None:
            raise ValueError(f"{what} {problem}")
        return value

    return AfterValidator(check)


UniqueNumber = Annotated[str, StringConstraints(strict=True), AfterValidator(_check_unique_number)]
VariantId = Annotated[
    str,
    StringConstraints(strict=True),
    _identifier_checker("variant id", LIMITS.variant_id_max_length),
]
DocumentId = Annotated[
    str,
    StringConstraints(strict=True),
    _identifier_checker("document id", LIMITS.document_id_max_length),
]


def _check_file_name(value: str) -> str:
    problem = file_name_problem(value)
    if problem is not None:
        raise ValueError(f"file name {problem}")
    return value


FileName = Annotated[str, StringConstraints(strict=True), AfterValidator(_check_file_name)]
CommandId = Annotated[
    str,
    StringConstraints(strict=True),
    _identifier_checker("command id", LIMITS.command_id_max_length),
]
