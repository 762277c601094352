"""Commands, one model per topic. Field names follow the original API (see docs/contract.md)."""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    model_validator,
)

from schemas.fields import LIMITS, CommandId, DocumentId, NumberType, UniqueNumber, VariantId


class CommandName(StrEnum):
    LOAD_JSON = "load-json"
    LOAD_EXCEL = "load-excel"
    LIST = "list"
    RESERVE = "reserve"
    MARK_USED = "mark-used"


class DocType(StrEnum):
    PURCHASE_ORDER = "PURCHASE_ORDER"
    PHYSICAL_SET_ORDER = "PHYSICAL_SET_ORDER"


class Command(BaseModel):
    """Common to every command: unknown fields are refused, so a typo never goes unnoticed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    command_id: CommandId | None = Field(default=None, alias="commandId")


class NumberEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    unique_number: UniqueNumber = Field(alias="uniqueNumber")
    type: NumberType


class LoadJsonItem(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    variant_id: VariantId = Field(alias="variantId")
    unique_numbers: Annotated[
        list[NumberEntry], Field(min_length=1, max_length=LIMITS.numbers_per_load)
    ] = Field(alias="uniqueNumbers")


class LoadJsonCommand(Command):
    items: Annotated[list[LoadJsonItem], Field(min_length=1, max_length=LIMITS.numbers_per_load)]

    @model_validator(mode="after")
    def _within_the_load_limit(self) -> LoadJsonCommand:
        total = sum(len(item.unique_numbers) for item in self.items)
        if total > LIMITS.numbers_per_load:
            raise ValueError(
                f"the load holds {total} numbers, the limit is {LIMITS.numbers_per_load} "
                "per command: split it"
            )
        return self


def _decode_file(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("upFile must be the file's bytes as a base64 string")
    if len(value) > (LIMITS.file_bytes * 4) // 3 + 4:
        raise ValueError(
            f"the file is larger than the limit of {LIMITS.file_bytes} bytes: split it"
        )
    try:
        content = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"upFile is not valid base64 ({exc})") from exc
    if not content:
        raise ValueError("upFile is empty: send the file's bytes, base64-encoded")
    return content


class LoadExcelCommand(Command):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, ser_json_bytes="base64"
    )

    file_name: Annotated[str, Field(strict=True, min_length=1, max_length=255)] | None = Field(
        default=None, alias="fileName"
    )
    # Sent as base64 text, held decoded.
    up_file: Annotated[bytes, BeforeValidator(_decode_file)] = Field(alias="upFile")


class ListCommand(Command):
    variant_id: VariantId = Field(alias="variantId")
    is_used: StrictBool | None = Field(default=None, alias="isUsed")
    page: Annotated[StrictInt, Field(ge=0, le=10_000_000)] = 0
    size: Annotated[StrictInt, Field(ge=1, le=LIMITS.list_page_size_max)] = 10


class ReserveCommand(Command):
    """The original call took snake_case query parameters; camelCase aliases are accepted too."""

    variant_id: VariantId = Field(validation_alias=AliasChoices("variant_id", "variantId"))
    type: NumberType = Field(validation_alias=AliasChoices("type_unique_number", "type"))
    document_id: DocumentId | None = Field(
        default=None, validation_alias=AliasChoices("id", "docId")
    )
    doc_type: DocType | None = Field(
        default=None, validation_alias=AliasChoices("doc_type", "docType")
    )

    @model_validator(mode="after")
    def _document_needs_its_type(self) -> ReserveCommand:
        if self.document_id is not None and self.doc_type is None:
            raise ValueError(
                "id names a document but doc_type is missing: "
                "say PURCHASE_ORDER or PHYSICAL_SET_ORDER"
            )
        return self


class MarkUsedCommand(Command):
    variant_id: VariantId = Field(alias="variantId")
    unique_number: UniqueNumber = Field(alias="uniqueNumber")


COMMAND_MODELS: dict[CommandName, type[Command]] = {
    CommandName.LOAD_JSON: LoadJsonCommand,
    CommandName.LOAD_EXCEL: LoadExcelCommand,
    CommandName.LIST: ListCommand,
    CommandName.RESERVE: ReserveCommand,
    CommandName.MARK_USED: MarkUsedCommand,
}
