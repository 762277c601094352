"""Result events published on the results topic, one per command."""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class ErrorCode(StrEnum):
    """Stable error codes: consumers branch on these, never on the message text."""

    DECODE_ERROR = "DECODE_ERROR"  # not UTF-8, not JSON, or not a JSON object
    VALIDATION_ERROR = "VALIDATION_ERROR"  # JSON of the wrong shape, types or values
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    BAD_FILE = "BAD_FILE"  # the spreadsheet cannot be read, or a row of it is invalid
    CONFLICT = "CONFLICT"  # a number is already stored under another variant or type
    NO_FREE_NUMBER = "NO_FREE_NUMBER"
    NOT_FOUND = "NOT_FOUND"
    VARIANT_MISMATCH = "VARIANT_MISMATCH"
    ALREADY_USED = "ALREADY_USED"
    COMMAND_ID_REUSED = "COMMAND_ID_REUSED"  # the id came before with a different command
    INTERNAL_ERROR = "INTERNAL_ERROR"  # a defect of the worker; the command is on the dead letters


class ErrorDetail(BaseModel):
    """One problem of a command: which row or item, which field, and why."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    row: int | None = None
    item: int | None = None
    field: str | None = None
    variant_id: str | None = Field(default=None, alias="variantId")
    unique_number: str | None = Field(default=None, alias="uniqueNumber")
    reason: str


class ErrorInfo(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)

    code: ErrorCode
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    details_omitted: int = Field(default=0, alias="detailsOmitted")


class ListedNumber(BaseModel):
    """One entry of a list result, with the fields of the original API (and `isUsed`)."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    disabled: bool
    is_reserved: bool = Field(alias="isReserved")
    is_used: bool = Field(alias="isUsed")
    physical_set: str = Field(alias="physicalSet")
    purchase_order: str = Field(alias="purchaseOrder")
    unique_number: str = Field(alias="uniqueNumber")
    type: str


class _Result(BaseModel):
    """Every result names its command; the rest mirrors the original API's response."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    command_id: str = Field(alias="commandId")
    command: str
    success: bool


class LoadResult(_Result):
    success: bool = True
    loaded: int
    already_loaded: int = Field(alias="alreadyLoaded")


class ListResult(_Result):
    success: bool = True
    unique_numbers: list[ListedNumber] = Field(alias="uniqueNumbers")
    page: int
    size: int
    has_more: bool = Field(alias="hasMore")
    # With hasMore: the `after` that asks for the next page (absent on the last page).
    next_cursor: str | None = Field(default=None, alias="nextCursor")


class ReserveResult(_Result):
    success: bool = True
    variant_id: str = Field(alias="variantId")
    unique_number: str = Field(alias="uniqueNumber")
    type: str
    doc_type: str | None = Field(default=None, alias="docType")
    document_id: str | None = Field(default=None, alias="id")


class MarkUsedResult(_Result):
    success: bool = True
    variant_id: str = Field(alias="variantId")
    unique_number: str = Field(alias="uniqueNumber")


class FailureResult(_Result):
    success: bool = False
    error: ErrorInfo


AnyResult = LoadResult | ListResult | ReserveResult | MarkUsedResult | FailureResult


def result_to_json_dict(result: AnyResult) -> dict[str, object]:
    """The JSON body published for `result` (aliases, no null extras)."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def encode_result(result: AnyResult) -> bytes:
    """The exact bytes published (and stored for replays): UTF-8 JSON, GS escaped as \\u001d."""
    return json.dumps(result_to_json_dict(result), ensure_ascii=False).encode("utf-8")
