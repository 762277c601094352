"""Commands, one model per topic. Field names follow the original API (see docs/contract.md)."""

from __future__ import annotations

import base64
import binascii
import re
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
    StrictStr,
    field_serializer,
    model_validator,
)

from schemas.fields import (
    LIMITS,
    CommandId,
    DocumentId,
    FileName,
    NumberType,
    UniqueNumber,
    VariantId,
)


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


_BASE64_ALPHABET = re.compile(r"[^A-Za-z0-9+/=]")


def base64_problem(value: str) -> str:
    """Why `value`, which b64decode refused, is not base64: the first character outside the
    alphabet, misplaced or excess padding, or a length that is not a multiple of 4."""
    bad = _BASE64_ALPHABET.search(value)
    if bad is not None:
        char = bad.group()
        if char in "\r\n":
            what = "a line break"
        elif char in "-_":
            what = f"{char!r} (URL-safe base64 is not accepted: use + and /)"
        else:
            what = repr(char)
        return (
            f"upFile is not base64: {what} at position {bad.start() + 1} is not in the "
            "base64 alphabet (A-Z, a-z, 0-9, +, / and = padding, no line breaks)"
        )
    first_pad = value.find("=")
    if first_pad != -1 and value.rstrip("=") != value[:first_pad]:
        return f"upFile is not base64: '=' padding at position {first_pad + 1} is not at the end"
    if len(value) % 4:
        return (
            f"upFile is not base64: it is {len(value)} characters long, padding included, but "
            "base64 comes in groups of 4 characters (was it cut short?)"
        )
    return f"upFile is not base64: {len(value) - len(value.rstrip('='))} '=' is too much padding"


def _decode_file(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("upFile must be the file's bytes as a base64 string")
    if len(value) > (LIMITS.file_bytes * 4) // 3 + 4:
        raise ValueError(
            f"the file is about {len(value) * 3 // 4} bytes, the limit is {LIMITS.file_bytes}: "
            "split it"
        )
    try:
        content = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(base64_problem(value)) from exc
    if not content:
        raise ValueError("upFile is empty: send the file's bytes, base64-encoded")
    return content


class LoadExcelCommand(Command):
    file_name: FileName | None = Field(default=None, alias="fileName")
    # Sent as base64 text, held decoded.
    up_file: Annotated[bytes, BeforeValidator(_decode_file)] = Field(alias="upFile")

    @field_serializer("up_file", when_used="json")
    def _file_as_base64(self, content: bytes) -> str:
        # The standard alphabet, as the command is sent (pydantic's own "base64" is URL-safe,
        # which _decode_file refuses).
        return base64.b64encode(content).decode("ascii")


class ListCommand(Command):
    variant_id: VariantId = Field(alias="variantId")
    is_used: StrictBool | None = Field(default=None, alias="isUsed")
    page: Annotated[StrictInt, Field(ge=0, le=10_000_000)] = 0
    size: Annotated[StrictInt, Field(ge=1, le=LIMITS.list_page_size_max)] = 10
    # Keyset cursor: the `nextCursor` of the page before. As fast at any depth as page 0.
    after: Annotated[StrictStr, Field(pattern=r"^[0-9]{1,18}$")] | None = None

    @model_validator(mode="after")
    def _cursor_or_page(self) -> ListCommand:
        if self.after is not None and self.page != 0:
            raise ValueError("give either after (a nextCursor) or page, not both")
        return self


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
