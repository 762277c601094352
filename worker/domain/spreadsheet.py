"""Reading the rows of the "load unique numbers from an Excel file" command.

Column A holds the variant id, B the unique number, C its type (UIT or IMEI). The file is an
.xls (BIFF, read with xlrd) or an .xlsx (read with openpyxl in read-only mode), told apart by its
first bytes, never by its name. Only the first worksheet is read; any other sheet must be empty.

A unique number is taken byte for byte from a text cell: it is never stripped or normalised, and
whatever cannot be read exactly (a number cell that may have lost digits, a date, an error value)
becomes a problem of its row rather than a guess. A problem of the whole file (not a workbook,
damaged, encrypted, too big) raises `UnreadableFile`.

A file is read in a child process (forked, so it starts at once), which may use at most
`limits.read_memory_bytes` of memory more than the worker and `limits.read_seconds` of time: a
file that stays within the size limits and still takes more (an XML bomb: millions of empty
cells, a row of a hundred million) is refused with UnreadableFile, and the worker is untouched.

The reader keeps no state between calls and may be called from several threads at once (it
reads one file at a time: see `_READING`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import io
import multiprocessing
import re
import resource
import signal
import threading
import warnings
import zipfile
from array import array
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO, Any, Final

import xlrd
from openpyxl.reader.excel import ExcelReader
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS

# openpyxl's own parser for the other parts of the file: defusedxml when installed, else the
# standard library's (expat >= 2.4 refuses entity expansion bombs; no external entity is read).
from openpyxl.xml.functions import iterparse
from xlrd import compdoc, xldate

from schemas.fields import (
    LIMITS,
    WHITESPACE,
    Limits,
    NumberType,
    identifier_problem,
    unique_number_problem,
)

__all__ = [
    "RowProblem",
    "SheetReadout",
    "SheetRow",
    "UnreadableFile",
    "read_in_this_process",
    "read_number_rows",
]


@dataclass(frozen=True, slots=True)
class SheetRow:
    """One data row, as text ready for validation."""

    row: int  # 1-based row number as Excel shows it
    variant_id: str
    unique_number: str
    type: str  # canonical NumberType value


@dataclass(frozen=True, slots=True)
class RowProblem:
    row: int
    column: str  # "A", "B" or "C"
    reason: str  # a sentence a person can act on


@dataclass(frozen=True)
class SheetReadout:
    format: str  # "xls" or "xlsx"
    rows: list[SheetRow]
    problems: list[RowProblem]  # at most limits.problems_reported kept
    problems_total: int
    header_row: int | None = None  # the row skipped as a header, if one was


class UnreadableFile(Exception):
    """A problem of the whole file; str(exc) is the message for a person."""


OLE2_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC: Final = b"PK\x03\x04"

# A spreadsheet number is an IEEE double, and Excel keeps 15 significant digits of what is typed:
# a 16-digit number loses its last digit as it is entered (1234567890123456 becomes
# 1234567890123450), so from 10**15 on, the digits in the file may not be the ones the person
# typed. Smaller integers (every 15-digit IMEI among them) are exact. 10**15 < 2**53, so this
# also refuses the doubles that cannot hold every integer.
EXACT_NUMBER_LIMIT: Final = 10**15

EXCEL_ROWS: Final = 1_048_576  # rows of an .xlsx sheet; an .xls sheet has 65,536

# Zip bomb guard, besides limits.unpacked_xlsx_bytes for the sum of the declared sizes: a member
# above RATIO_FLOOR bytes may be at most MAX_RATIO times its compressed size. Real worksheets
# deflate 4-16 to 1 (measured: 200,000 rows of one value repeated, 11 to 1).
MAX_RATIO: Final = 200
RATIO_FLOOR: Final = 1024 * 1024

_COLUMNS: Final = {"A": "variant id", "B": "unique number", "C": "type"}
# Each type's one str object: a million rows share it rather than hold a copy each.
_TYPES: Final = {t.value: t.value for t in NumberType}
_TYPE_LIST: Final = ", ".join(_TYPES)
# Whitespace stripped around a variant id and a type: what str.strip() removes, except the
# information separators U+001C-U+001F (a GS must never vanish silently, even from an id).
_SPACES: Final = WHITESPACE
# Office Open XML writes characters XML cannot carry (GS among them) as _xHHHH_, and an
# underscore that would otherwise start such a sequence as _x005F_ (ECMA-376 ST_Xstring).
_XML_ESCAPE: Final = re.compile(r"_x([0-9A-Fa-f]{4})_")
_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")
_SI_TAG: Final = f"{{{SHEET_MAIN_NS}}}si"
_T_TAG: Final = f"{{{SHEET_MAIN_NS}}}t"
_R_TAG: Final = f"{{{SHEET_MAIN_NS}}}r"
_XLS_ERRORS: Final[dict[int, str]] = dict(xlrd.error_text_from_code)

_ENCRYPTED: Final = (
    "the workbook is password-protected (encrypted), so it cannot be read: open it in Excel, "
    "remove the password and save it again"
)


@dataclass(frozen=True)
class _Special:
    """A cell that is neither text nor a number: its kind, how it shows in Excel, what to do."""

    kind: str  # "a date or time", "a TRUE/FALSE value", "the error value"
    shown: str
    advice: str = "format the cell as Text and type the value again"


_ERROR_ADVICE: Final = "put the value itself in the cell, not a formula that fails"


_Cell = str | int | float | _Special | None
_Raw = tuple[int, tuple[_Cell, _Cell, _Cell]]  # (row number, cells of columns A, B, C)


@dataclass(frozen=True)
class _Bad:
    reason: str


# Files are read one at a time, so that the worker needs memory for one reader at most.
_READING: Final = threading.Lock()


def read_number_rows(content: bytes, limits: Limits = LIMITS) -> SheetReadout:
    """The rows of the first sheet of the .xls or .xlsx file `content`, and their problems,
    read in a child process within `limits.read_memory_bytes` and `limits.read_seconds`."""
    with _READING:
        return _read_in_a_child(content, limits)


def read_in_this_process(content: bytes, limits: Limits = LIMITS) -> SheetReadout:
    """The same, read in this process, without the memory and time limits (for tests)."""
    with _READING, warnings.catch_warnings():
        _ignore_library_warnings()
        return _read_number_rows(content, limits)


def _ignore_library_warnings() -> None:
    # openpyxl warns (warnings.warn) about what it repairs or leaves out of a file: a date cell
    # whose serial is out of range (read as #VALUE!), a workbook without styles, defined names
    # it cannot place. Those warnings say nothing the rows do not, and how they are handled must
    # not depend on the process's warning filters (an "error" filter would turn a readable file
    # into a damaged one).
    warnings.simplefilter("ignore")


def _read_in_a_child(content: bytes, limits: Limits) -> SheetReadout:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(content, limits, sender), name="spreadsheet-reader", daemon=True
    )
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns that forking a process with threads may deadlock the child: this
            # child only parses the file, with no lock that another thread may hold.
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            process.start()
        sender.close()
        if not receiver.poll(limits.read_seconds):
            raise UnreadableFile(
                f"the workbook takes more than {limits.read_seconds:g} s to read, so it was not "
                "read (a plain list of numbers reads far faster): save the rows in a new "
                "workbook, or split it"
            )
        try:
            kind, payload = receiver.recv()
        except EOFError:  # the child died without a word: killed (out of memory) or crashed
            process.join(10)
            raise UnreadableFile(_died_message(process.exitcode, limits)) from None
    finally:
        receiver.close()
        sender.close()
        if process.is_alive():
            process.kill()
        if process.pid is not None:
            process.join()
        process.close()
    if kind == "rows":
        return _unpacked(payload)
    if kind == "unreadable":
        raise UnreadableFile(str(payload))
    if kind == "memory":
        raise UnreadableFile(_memory_message(limits))
    raise RuntimeError(f"the spreadsheet reader failed: {payload}")


def _child(content: bytes, limits: Limits, sender: Connection) -> None:
    """Run in the child process: read, and send back the outcome."""
    # The worker's objects, inherited from the fork, are left out of the child's garbage
    # collections: traversing them would write to (and so copy) every page that holds one.
    gc.freeze()
    _ignore_library_warnings()
    _limit_memory(limits.read_memory_bytes)
    outcome: tuple[str, object]
    try:
        outcome = ("rows", _packed(_read_number_rows(content, limits)))
    except UnreadableFile as exc:
        outcome = ("unreadable", str(exc))
    except MemoryError:
        outcome = ("memory", None)
    except Exception as exc:  # a defect of the reader: the worker answers INTERNAL_ERROR
        outcome = ("defect", f"{type(exc).__name__}: {exc}")
    try:
        sender.send(outcome)
    except MemoryError:  # the rows are pickled to be sent, which takes memory too
        sender.send(("memory", None))
    sender.close()


def _packed(readout: SheetReadout) -> tuple[object, ...]:
    """The readout as a few flat lists: pickled several times faster than a SheetRow each.
    Variant ids and types, which repeat, go as their distinct values and an index a row, so
    that the worker holds one string of each rather than one a row (200,000 rows: ~25 MB)."""
    rows = readout.rows
    return (
        readout.format,
        array("Q", (r.row for r in rows)),
        _coded([r.variant_id for r in rows]),
        [r.unique_number for r in rows],
        _coded([r.type for r in rows]),
        readout.problems,
        readout.problems_total,
        readout.header_row,
    )


def _coded(values: list[str]) -> tuple[list[str], array[int]]:
    index: dict[str, int] = {}
    codes = array("I", (index.setdefault(v, len(index)) for v in values))
    return list(index), codes


def _decoded(coded: tuple[list[str], array[int]]) -> list[str]:
    distinct, codes = coded
    return [distinct[i] for i in codes]


def _unpacked(packed: Any) -> SheetReadout:
    file_format, numbers, variants, values, types, problems, total, header = packed
    return SheetReadout(
        format=file_format,
        rows=list(map(SheetRow, numbers, _decoded(variants), values, _decoded(types))),
        problems=problems,
        problems_total=total,
        header_row=header,
    )


def _limit_memory(extra: int) -> None:
    """Let this process use at most `extra` bytes of address space more than it uses now."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            size = int(statm.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _memory_message(limits: Limits) -> str:
    return (
        f"reading the workbook needs more than {limits.read_memory_bytes // (1024 * 1024)} MiB "
        "of memory, so it was not read: it is not a plain list of numbers (an XML bomb?); save "
        "the rows in a new workbook"
    )


def _died_message(exitcode: int | None, limits: Limits) -> str:
    if exitcode == -signal.SIGKILL:  # the kernel's out-of-memory killer, most likely
        return _memory_message(limits)
    return (
        f"the reader stopped on this workbook (exit code {exitcode}): the file is damaged; open "
        "it in Excel, save it again and resend it"
    )


def _read_number_rows(content: bytes, limits: Limits) -> SheetReadout:
    if not content:
        raise UnreadableFile("the file is empty (0 bytes)")
    if len(content) > limits.file_bytes:
        raise UnreadableFile(
            f"the file is {len(content)} bytes, the limit is {limits.file_bytes}: split it"
        )
    if content.startswith(OLE2_MAGIC):
        file_format, raw_rows = "xls", _xls_rows(content)
    elif content.startswith(ZIP_MAGIC):
        file_format, raw_rows = "xlsx", _xlsx_rows(content, limits)
    else:
        raise UnreadableFile(
            f"the file is not an Excel workbook (.xlsx or .xls): it {_describe_bytes(content)}; "
            "open it in Excel and save it as an Excel workbook (.xlsx)"
        )
    collector = _Collector(limits)
    try:
        for row, cells in _guarded(raw_rows, file_format):
            collector.add(row, cells)
    finally:
        raw_rows.close()  # closes the workbook when reading stops early
    return collector.readout(file_format)


# --- rows to SheetRow / RowProblem, the same for both formats -------------------------------------


class _Collector:
    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._rows: list[SheetRow] = []
        self._problems: list[RowProblem] = []
        self._problems_total = 0
        self._data_rows = 0
        self._header_row: int | None = None
        self._seen_content = False
        self._variant_ids: dict[str, str] = {}

    def add(self, row: int, cells: tuple[_Cell, _Cell, _Cell]) -> None:
        if all(_is_blank(cell) for cell in cells):
            return
        if not self._seen_content:
            self._seen_content = True
            if _is_header(cells[2]):
                self._header_row = row
                return
        self._data_rows += 1
        if self._data_rows > self._limits.rows_per_file:
            raise UnreadableFile(
                f"the first sheet holds more than {self._limits.rows_per_file} rows of numbers, "
                f"the limit per file: split it into files of at most "
                f"{self._limits.rows_per_file} rows"
            )
        variant_id = _variant_id(cells[0], self._limits)
        if isinstance(variant_id, str):  # one str object per variant, however many rows it has
            variant_id = self._variant_ids.setdefault(variant_id, variant_id)
        unique_number = _unique_number(cells[1])
        number_type = _number_type(cells[2])
        clean = True
        for column, outcome in zip("ABC", (variant_id, unique_number, number_type), strict=True):
            if isinstance(outcome, _Bad):
                clean = False
                self._problems_total += 1
                if len(self._problems) < self._limits.problems_reported:
                    self._problems.append(RowProblem(row, column, outcome.reason))
        if clean:
            assert isinstance(variant_id, str)
            assert isinstance(unique_number, str)
            assert isinstance(number_type, str)
            self._rows.append(SheetRow(row, variant_id, unique_number, number_type))

    def readout(self, file_format: str) -> SheetReadout:
        return SheetReadout(
            format=file_format,
            rows=self._rows,
            problems=self._problems,
            problems_total=self._problems_total,
            header_row=self._header_row,
        )


def _is_blank(cell: _Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip(_SPACES))


def _is_header(cell: _Cell) -> bool:
    """The first row is a header when its column C is text and not a type."""
    return (
        isinstance(cell, str) and not _is_blank(cell) and cell.strip(_SPACES).upper() not in _TYPES
    )


def _variant_id(cell: _Cell, limits: Limits) -> str | _Bad:
    text = _cell_text(cell, "A")
    if isinstance(text, _Bad):
        return text
    value = text.strip(_SPACES)
    problem = identifier_problem(value, limits.variant_id_max_length)
    if problem is not None:
        return _Bad(f"the variant id {_show(value)} {problem}")
    return value


def _unique_number(cell: _Cell) -> str | _Bad:
    value = _cell_text(cell, "B")
    if isinstance(value, _Bad):
        return value
    problem = unique_number_problem(value)
    if problem is not None:
        return _Bad(f"the unique number {_show(value)} {problem}")
    return value


def _number_type(cell: _Cell) -> str | _Bad:
    text = _cell_text(cell, "C")
    if isinstance(text, _Bad):
        return text
    value = _TYPES.get(text.strip(_SPACES).upper())
    if value is None:
        return _Bad(f"the type {_show(text)} is not one of {_TYPE_LIST}")
    return value


def _cell_text(cell: _Cell, column: str) -> str | _Bad:
    """The text of a cell, exactly; a number only when its digits are certainly the typed ones."""
    what = f"column {column} ({_COLUMNS[column]})"
    if cell is None or (isinstance(cell, str) and not cell):
        return _Bad(f"{what} is empty")
    if isinstance(cell, str):
        if not cell.strip(_SPACES):
            return _Bad(f"{what} holds only whitespace")
        bad = _SURROGATE.search(cell)
        if bad is not None:
            return _Bad(
                f"{what} holds a broken character (a lone UTF-16 surrogate "
                f"U+{ord(bad.group()):04X}): retype the value"
            )
        return cell
    if isinstance(cell, _Special):
        return _Bad(f"{what} holds {cell.kind} ({cell.shown}), not text: {cell.advice}")
    if isinstance(cell, float) and not cell.is_integer():
        return _Bad(f"{what} holds the number {cell!r}, not text: store it as a text cell")
    if abs(cell) >= EXACT_NUMBER_LIMIT:
        shown = str(int(cell)) if abs(cell) < 1e21 else repr(cell)
        return _Bad(
            f"{what} holds the number {shown}: the number has more digits than a spreadsheet "
            "number keeps exactly (it may have lost digits); store it as a text cell"
        )
    return str(int(cell))


def _show(value: str) -> str:
    """A value for a message: quoted, control characters escaped, long ones cut."""
    if len(value) > 60:
        return repr(value[:50]) + f"... ({len(value)} characters)"
    return repr(value)


# --- .xls -----------------------------------------------------------------------------------------


def _xls_rows(content: bytes) -> Generator[_Raw, None, None]:
    log = io.StringIO()  # xlrd's warnings go to a log file; they are no business of the sender
    directory = {entry.name for entry in compdoc.CompDoc(content, logfile=log).dirlist}
    if "EncryptedPackage" in directory or "EncryptionInfo" in directory:
        raise UnreadableFile(_ENCRYPTED)
    if "Workbook" not in directory and "Book" not in directory:
        raise UnreadableFile(
            "the file is not an Excel workbook: it is an OLE2 compound document without a "
            "workbook inside (a Word .doc, an Outlook .msg or the like); save the numbers as an "
            "Excel workbook (.xlsx)"
        )
    try:
        book = xlrd.open_workbook(file_contents=content, logfile=log, on_demand=True)
    except xlrd.XLRDError as exc:
        if "encrypted" in str(exc).lower():
            raise UnreadableFile(_ENCRYPTED) from exc
        raise
    try:
        for index in range(1, book.nsheets):
            sheet = book.sheet_by_index(index)
            for row in range(sheet.nrows):
                for column, (ctype, value) in enumerate(
                    zip(sheet.row_types(row), sheet.row_values(row), strict=True)
                ):
                    if not _is_blank(_xls_cell(ctype, value, book.datemode)):
                        raise UnreadableFile(_other_sheet_message(sheet.name, index, row, column))
            book.unload_sheet(index)
        sheet = book.sheet_by_index(0)
        for row in range(sheet.nrows):
            end = min(3, sheet.row_len(row))
            cells = [
                _xls_cell(ctype, value, book.datemode)
                for ctype, value in zip(
                    sheet.row_types(row, 0, end), sheet.row_values(row, 0, end), strict=True
                )
            ]
            cells += [None] * (3 - len(cells))
            yield row + 1, (cells[0], cells[1], cells[2])
    finally:
        book.release_resources()


def _xls_cell(ctype: int, value: Any, datemode: int) -> _Cell:
    if ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
        return None
    if ctype == xlrd.XL_CELL_TEXT:
        return str(value)
    if ctype == xlrd.XL_CELL_NUMBER:
        return float(value)
    if ctype == xlrd.XL_CELL_DATE:
        try:
            shown = _show_datetime(xldate.xldate_as_datetime(value, datemode))
        except (ValueError, OverflowError, xldate.XLDateError):
            shown = f"serial {value!r}"
        return _Special("a date or time", shown)
    if ctype == xlrd.XL_CELL_BOOLEAN:
        return _Special("a TRUE/FALSE value", "TRUE" if value else "FALSE")
    if ctype == xlrd.XL_CELL_ERROR:
        return _Special(
            "the error value", _XLS_ERRORS.get(value, f"error code {value}"), _ERROR_ADVICE
        )
    return _Special("a cell of unknown kind", f"type {ctype}")


# --- .xlsx ----------------------------------------------------------------------------------------


def _xlsx_rows(content: bytes, limits: Limits) -> Generator[_Raw, None, None]:
    _check_zip(content, limits)
    reader = _ExcelReader(
        io.BytesIO(content),
        read_only=True,
        keep_vba=False,
        data_only=True,  # a formula reads as the value Excel last calculated, or as empty
        keep_links=False,
        rich_text=False,
    )
    try:
        try:
            reader.read()
        except OSError as exc:
            if "no valid workbook part" in str(exc):
                raise UnreadableFile(
                    "the file is a zip archive but not an Excel workbook (it has no workbook "
                    "part); save the numbers as an Excel workbook (.xlsx)"
                ) from exc
            raise
        worksheets = reader.wb.worksheets
        if not worksheets:
            raise UnreadableFile("the workbook has no worksheet: put the rows on a first sheet")
        for index, sheet in enumerate(worksheets[1:], start=1):
            sheet.reset_dimensions()  # the stated size may be wrong: read every row there is
            for row, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                _check_row_number(row)
                for column, value in enumerate(values):
                    text = _unescape(value) if isinstance(value, str) else value
                    if text is not None and not _is_blank(text):
                        raise UnreadableFile(
                            _other_sheet_message(sheet.title, index, row - 1, column)
                        )
        sheet = worksheets[0]
        sheet.reset_dimensions()
        for expected_row, cells in enumerate(sheet.iter_rows(max_col=3), start=1):
            row = next((cell.row for cell in cells if getattr(cell, "row", None)), expected_row)
            _check_row_number(max(row, expected_row))
            yield row, (_xlsx_cell(cells[0]), _xlsx_cell(cells[1]), _xlsx_cell(cells[2]))
    finally:
        reader.archive.close()


def _check_row_number(row: int) -> None:
    """openpyxl makes up the empty rows a sheet skips: stop at the last row Excel can have."""
    if row > EXCEL_ROWS:
        raise UnreadableFile(
            f"a sheet of the workbook has a row numbered beyond {EXCEL_ROWS}, the last row "
            "Excel has: the file is damaged; open it in Excel, save it again and resend it"
        )


def _check_zip(content: bytes, limits: Limits) -> None:
    """Refuse what is not a workbook, an encrypted zip, a zip bomb; before openpyxl opens it."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        raise UnreadableFile(_damaged_message("xlsx", exc)) from exc
    names = {member.filename for member in members}
    if "xl/workbook.xml" not in names:
        if "xl/workbook.bin" in names:
            kind = "a binary Excel workbook (.xlsb), which cannot be read"
        elif "word/document.xml" in names:
            kind = "a Word document (.docx)"
        elif "ppt/presentation.xml" in names:
            kind = "a PowerPoint presentation (.pptx)"
        elif "mimetype" in names and "content.xml" in names:
            kind = "an OpenDocument file (.ods, .odt), which cannot be read"
        elif "[Content_Types].xml" in names:
            kind = ""  # an Office package after all: openpyxl looks for the workbook part
        else:
            kind = "a zip archive without xl/workbook.xml"
        if kind:
            raise UnreadableFile(
                f"the file is not an Excel workbook: it is {kind}; save the numbers as an Excel "
                "workbook (.xlsx)"
            )
    if any(member.flag_bits & 0x1 for member in members):
        raise UnreadableFile(_ENCRYPTED)
    unpacked = sum(member.file_size for member in members)
    if unpacked > limits.unpacked_xlsx_bytes:
        raise UnreadableFile(
            f"the workbook unpacks to {unpacked} bytes, the limit is "
            f"{limits.unpacked_xlsx_bytes}: it is not a plain list of numbers; split it"
        )
    for member in members:
        if member.file_size > RATIO_FLOOR and member.file_size > MAX_RATIO * member.compress_size:
            raise UnreadableFile(
                f"the workbook part {member.filename!r} unpacks from {member.compress_size} to "
                f"{member.file_size} bytes, more than {MAX_RATIO} times: this is not a plain "
                "list of numbers (a zip bomb?); save the rows in a new workbook"
            )


class _ExcelReader(ExcelReader):  # type: ignore[misc]
    """openpyxl's reader, with shared strings read raw, and the workbook metadata not read.

    openpyxl leaves _xHHHH_ escapes as they are in inline strings, but in shared strings it only
    deletes every "x005F_", which makes an escaped GS (_x001D_) and the literal text "_x001D_"
    (written _x005F_x001D_) read the same. Reading them raw lets `_unescape` decode every string
    the same, correct, way. Document properties and the theme are not needed, and a fault in
    them must not make the rows unreadable.
    """

    def read_strings(self) -> None:
        part = self.package.find(SHARED_STRINGS)
        if part is not None:
            with self.archive.open(part.PartName[1:]) as source:
                self.shared_strings = _raw_shared_strings(source)

    def read_properties(self) -> None:
        pass

    def read_custom(self) -> None:
        pass

    def read_theme(self) -> None:
        pass


def _raw_shared_strings(source: IO[bytes]) -> _SharedStrings:
    """The shared string table, escapes left in: the text of each <si>, phonetic runs left out."""
    strings = _SharedStrings()
    root = None
    for event, element in iterparse(source, events=("start", "end")):
        if root is None:
            root = element
        elif event == "end" and element.tag == _SI_TAG:
            parts = []
            for child in element:
                if child.tag == _T_TAG:
                    parts.append(child.text or "")
                elif child.tag == _R_TAG:
                    parts.extend(t.text or "" for t in child.iter(_T_TAG))
            strings.append("".join(parts))
            root.clear()  # drop the finished <si>: the tree never grows with the table
    return strings


class _SharedStrings:
    """The shared string table in two flat arrays: the UTF-8 text, and where each string ends.

    A 10 MB workbook can hold millions of short shared strings; as a list of str they would
    take about 60 bytes each besides their text, so a table of 4 million took 650 MB.
    """

    def __init__(self) -> None:
        self._text = bytearray()
        self._ends = array("Q")

    def append(self, value: str) -> None:
        self._text += value.encode("utf-8", "surrogatepass")
        self._ends.append(len(self._text))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self._ends):
            raise IndexError(f"shared string {index} of {len(self._ends)}")
        start = self._ends[index - 1] if index else 0
        return self._text[start : self._ends[index]].decode("utf-8", "surrogatepass")


def _xlsx_cell(cell: Any) -> _Cell:
    value = cell.value
    if value is None:
        return None
    if cell.data_type == "e":
        return _Special("the error value", str(value), _ERROR_ADVICE)
    if isinstance(value, bool):
        return _Special("a TRUE/FALSE value", "TRUE" if value else "FALSE")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        return _unescape(value)
    if isinstance(value, dt.datetime | dt.date | dt.time | dt.timedelta):
        return _Special("a date or time", _show_datetime(value))
    return _Special("a cell of unknown kind", type(value).__name__)


def _unescape(value: str) -> str:
    """Decode the _xHHHH_ escapes of Office Open XML, as Excel does when it opens the file."""
    if "_x" not in value:
        return value
    text = _XML_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), value)
    if _SURROGATE.search(text):
        # A character beyond U+FFFF is escaped as two UTF-16 halves: join them. A lone half is
        # left in, and the row reports it.
        with contextlib.suppress(UnicodeDecodeError):
            text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    return text


# --- shared helpers -------------------------------------------------------------------------------


def _guarded(rows: Iterator[_Raw], file_format: str) -> Iterator[_Raw]:
    """The rows, any failure of the library that reads them turned into UnreadableFile."""
    while True:
        try:
            item = next(rows)
        except StopIteration:
            return
        except (UnreadableFile, MemoryError):
            raise
        except Exception as exc:
            raise UnreadableFile(_damaged_message(file_format, exc)) from exc
        yield item


def _damaged_message(file_format: str, exc: BaseException) -> str:
    detail = f"{type(exc).__name__}: {exc}"
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return (
        f"the file starts like an .{file_format} workbook but is damaged or truncated, so it "
        f"cannot be read; open it in Excel, save it again and resend it (detail: {detail})"
    )


def _other_sheet_message(title: str, index: int, row: int, column: int) -> str:
    cell = f"{_column_letter(column)}{row + 1}"
    return (
        f"sheet {index + 1} ({_show(title)}) is not empty (cell {cell} holds a value), but only "
        "the first sheet is read: put every row on the first sheet and delete the other sheets "
        "or leave them empty"
    )


def _column_letter(column: int) -> str:
    letters = ""
    column += 1
    while column:
        column, remainder = divmod(column - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def _show_datetime(value: dt.datetime | dt.date | dt.time | dt.timedelta) -> str:
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date().isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return value.isoformat()


_SIGNATURES: Final = (
    (b"%PDF", "a PDF document"),
    (b"PK", "a zip archive of an unusual layout (an empty or spanned zip)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"{\\rtf", "an RTF document"),
    (b"\x09\x00", "an Excel 2.x workbook, too old to be read"),
    (b"\x09\x02", "an Excel 3.0 workbook, too old to be read"),
    (b"\x09\x04", "an Excel 4.0 workbook, too old to be read"),
)


def _describe_bytes(content: bytes) -> str:
    """What a file that is not a workbook looks like, for the message."""
    head = content[:16]
    for magic, kind in _SIGNATURES:
        if content.startswith(magic):
            return f"starts with {_show_bytes(head)}, so it is {kind}"
    text = content[:1024].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    if text.startswith("<"):
        if "urn:schemas-microsoft-com:office:spreadsheet" in text:
            kind = "an Excel 2003 XML spreadsheet"
        elif "<html" in text or "<!doctype html" in text or "<table" in text:
            kind = "a web page (HTML), which some programs save under an .xls name"
        else:
            kind = "an XML document"
        return f"starts with {_show_bytes(head)}, so it is {kind}"
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text[:200]):
        return f"starts with {_show_bytes(head)}, so it looks like text (CSV?)"
    return f"starts with the bytes {head[:8].hex(' ')}, which no spreadsheet starts with"


def _show_bytes(head: bytes) -> str:
    return repr(head.decode("latin-1"))
