"""Workbooks written in the tests: .xls by xlwt, .xlsx by openpyxl or as raw XML, OLE2 by hand.

Nothing here is a checked-in binary: every file is built from the values a test states.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape as xml_escape

import openpyxl
import xlrd
import xlwt  # type: ignore[import-untyped]

Value = object
Rows = Sequence[Sequence[Value]]

GS = "\x1d"


@dataclass(frozen=True)
class Error:
    """An error cell such as #N/A."""

    text: str


@dataclass(frozen=True)
class Formula:
    """A formula cell (xlwt and openpyxl store no calculated value with it)."""

    text: str


@dataclass(frozen=True)
class Merge:
    """Merged cells, as 0-based (first_row, last_row, first_col, last_col)."""

    first_row: int
    last_row: int
    first_col: int
    last_col: int


# --- .xls (xlwt) ----------------------------------------------------------------------------------

_XLS_DATE = xlwt.easyxf(num_format_str="YYYY-MM-DD")
_XLS_ERROR_CODES = {text: code for code, text in xlrd.error_text_from_code.items()}


def xls_file(*sheets: Rows, merges: Sequence[Merge] = (), names: Sequence[str] = ()) -> bytes:
    """An .xls (BIFF8) file; row lists may hold None (no cell), str, int, float, bool, dates,
    Error and Formula. `merges` apply to the first sheet."""
    book = xlwt.Workbook()
    for index, rows in enumerate(sheets or ([],)):
        sheet = book.add_sheet(names[index] if index < len(names) else f"Sheet{index + 1}")
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                _xls_write(sheet, r, c, value)
        if index == 0:
            for m in merges:
                sheet.merge(m.first_row, m.last_row, m.first_col, m.last_col)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _xls_write(sheet: xlwt.Worksheet, r: int, c: int, value: Value) -> None:
    if value is None:
        return
    if isinstance(value, Error):
        # xlwt's own table lacks "#N/A" and maps "#VALUE!" wrongly: give it the BIFF code
        sheet.row(r).set_cell_error(c, _XLS_ERROR_CODES[value.text])
    elif isinstance(value, Formula):
        sheet.write(r, c, xlwt.Formula(value.text))
    elif isinstance(value, dt.date):
        sheet.write(r, c, value, _XLS_DATE)
    else:
        sheet.write(r, c, value)


# --- .xlsx (openpyxl) -----------------------------------------------------------------------------

_ESCAPABLE = re.compile(r"_(?=x[0-9A-Fa-f]{4})|[\x00-\x08\x0b\x0c\x0e-\x1f]")


def excel_escape(text: str) -> str:
    """Text as Excel writes it in an .xlsx: control characters as _xHHHH_, and an underscore
    that would start such an escape as _x005F_."""
    return _ESCAPABLE.sub(lambda m: f"_x{ord(m.group()):04X}_", text)


def xlsx_file(*sheets: Rows, merges: Sequence[Merge] = (), names: Sequence[str] = ()) -> bytes:
    """An .xlsx written by openpyxl (strings go in as inline strings, escaped as Excel does)."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    for index, rows in enumerate(sheets or ([],)):
        sheet = book.create_sheet(names[index] if index < len(names) else f"Sheet{index + 1}")
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is None:
                    continue
                cell = sheet.cell(row=r, column=c)
                if isinstance(value, Error):
                    cell.value = value.text
                    cell.data_type = "e"
                elif isinstance(value, Formula):
                    cell.value = "=" + value.text
                elif isinstance(value, str):
                    cell.value = excel_escape(value)
                    cell.data_type = "s"  # never a formula, even when it starts with "="
                else:
                    cell.value = value
        if index == 0:
            for m in merges:
                sheet.merge_cells(
                    start_row=m.first_row + 1,
                    end_row=m.last_row + 1,
                    start_column=m.first_col + 1,
                    end_column=m.last_col + 1,
                )
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# --- .xlsx written as raw XML (shared strings, cached formula values, as Excel writes them) ---

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def raw_xlsx(
    sheet_xml: Sequence[str],
    shared_strings: Sequence[str] = (),
    *,
    compression: int = zipfile.ZIP_DEFLATED,
    names: Sequence[str] = (),
) -> bytes:
    """An .xlsx from the <sheetData> content of each sheet and the raw <si> contents of the
    shared string table (both already escaped as the file should hold them). Style 1 is a date.
    `names` are the sheets' names (Sheet1, Sheet2 ... for those not given), of any length."""
    sheets = list(sheet_xml) or [""]
    titles = [
        xml_escape(names[i - 1], {'"': "&quot;"}) if i <= len(names) else f"Sheet{i}"
        for i in range(1, len(sheets) + 1)
    ]
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="{_CT}.worksheet+xml"/>'
        for i in range(1, len(sheets) + 1)
    )
    parts = {
        "[Content_Types].xml": (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{_CT}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{_CT}.styles+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{_CT}.sharedStrings+xml"/>'
            f"{overrides}</Types>"
        ),
        "_rels/.rels": (
            f'<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
            f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'
        ),
        "xl/workbook.xml": (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            + "".join(
                f'<sheet name="{titles[i - 1]}" sheetId="{i}" r:id="rId{i}"/>'
                for i in range(1, len(sheets) + 1)
            )
            + "</sheets></workbook>"
        ),
        "xl/_rels/workbook.xml.rels": (
            f'<Relationships xmlns="{_PKG_REL}">'
            + "".join(
                f'<Relationship Id="rId{i}" Type="{_REL}/worksheet" '
                f'Target="worksheets/sheet{i}.xml"/>'
                for i in range(1, len(sheets) + 1)
            )
            + f'<Relationship Id="rIdS" Type="{_REL}/sharedStrings" Target="sharedStrings.xml"/>'
            f'<Relationship Id="rIdY" Type="{_REL}/styles" Target="styles.xml"/>'
            "</Relationships>"
        ),
        "xl/styles.xml": (
            f'<styleSheet xmlns="{_MAIN}">'
            '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
            '<fills count="1"><fill><patternFill patternType="none"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
            "</borders>"
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
            "</cellStyleXfs>"
            '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
            '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" '
            'applyNumberFormat="1"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
            "</cellStyles></styleSheet>"
        ),
        "xl/sharedStrings.xml": (
            f'<sst xmlns="{_MAIN}" count="{len(shared_strings)}" '
            f'uniqueCount="{len(shared_strings)}">'
            + "".join(f"<si>{si}</si>" for si in shared_strings)
            + "</sst>"
        ),
    }
    for i, data in enumerate(sheets, start=1):
        parts[f"xl/worksheets/sheet{i}.xml"] = (
            f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}"><sheetData>{data}</sheetData></worksheet>'
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, text in parts.items():
            archive.writestr(
                name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + text
            )
    return out.getvalue()


def si(text: str) -> str:
    """A plain shared string, escaped as Excel writes it."""
    return f'<t xml:space="preserve">{xml_escape(excel_escape(text))}</t>'


def shared_strings_xlsx(rows: Rows) -> bytes:
    """An .xlsx whose text cells are shared strings, the way Excel saves a workbook."""
    strings: list[str] = []
    index: dict[str, int] = {}
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{'ABC'[c]}{r}"
            if isinstance(value, str):
                if value not in index:
                    index[value] = len(strings)
                    strings.append(si(value))
                cells.append(f'<c r="{ref}" t="s"><v>{index[value]}</v></c>')
            elif value is not None:
                cells.append(f'<c r="{ref}"><v>{value!r}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    return raw_xlsx(["".join(xml_rows)], strings)


# --- OLE2 compound files ------------------------------------------------------------------------

_FREE, _END, _FATSECT, _NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
_SECTOR = 512


def compound_file(streams: Mapping[str, bytes]) -> bytes:
    """A minimal OLE2 compound file (version 3) holding `streams` in the root storage.

    Each stream is padded to 4096 bytes at least, so that every one lives in regular sectors
    (no mini stream is needed). Siblings form a chain sorted as the format orders names.
    """
    names = sorted(streams, key=lambda n: (len(n), n.upper()))
    data = [streams[n] + b"\0" * max(0, 4096 - len(streams[n])) for n in names]
    sizes = [len(d) for d in data]
    stream_sectors = [-(-len(d) // _SECTOR) for d in data]
    dir_sectors = -(-(len(names) + 1) // 4)
    fat_sectors = 1
    while fat_sectors * 128 < fat_sectors + dir_sectors + sum(stream_sectors):
        fat_sectors += 1
    assert fat_sectors <= 109
    fat: list[int] = [_FATSECT] * fat_sectors
    dir_start = len(fat)
    fat += [*range(dir_start + 1, dir_start + dir_sectors), _END]
    starts = []
    for count in stream_sectors:
        start = len(fat)
        starts.append(start)
        fat += [*range(start + 1, start + count), _END]
    fat += [_FREE] * (fat_sectors * 128 - len(fat))

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        encoded = (name + "\0").encode("utf-16-le") if name else b""
        return (
            encoded.ljust(64, b"\0")
            + struct.pack("<HBBIII", len(encoded), kind, 1, _NOSTREAM, right, child)
            + b"\0" * 36
            + struct.pack("<IQ", start, size)
        )

    directory = entry("Root Entry", 5, _NOSTREAM, 1 if names else _NOSTREAM, _END, 0)
    for i, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        right = i + 2 if i + 1 < len(names) else _NOSTREAM
        directory += entry(names[i], 2, right, _NOSTREAM, start, size)
    while len(directory) < dir_sectors * _SECTOR:
        directory += entry("", 0, _NOSTREAM, _NOSTREAM, _END, 0)
    difat = [*range(fat_sectors), *[_FREE] * (109 - fat_sectors)]
    header = (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
        + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6)
        + b"\0" * 6
        + struct.pack("<IIIIIIIII", 0, fat_sectors, dir_start, 0, 4096, _END, 0, _END, 0)
        + struct.pack("<109I", *difat)
    )
    assert len(header) == _SECTOR
    body = struct.pack(f"<{len(fat)}I", *fat) + directory
    for d in data:
        body += d.ljust(-(-len(d) // _SECTOR) * _SECTOR, b"\0")
    return header + body


def encrypted_xlsx() -> bytes:
    """What Excel makes of an .xlsx saved with a password: an OLE2 file with EncryptionInfo and
    EncryptedPackage streams (their content does not matter to the reader)."""
    return compound_file(
        {"EncryptionInfo": b"\x04\x00\x04\x00\x40\x00\x00\x00", "EncryptedPackage": b"\x01" * 8}
    )


def encrypted_xls() -> bytes:
    """An .xls whose workbook stream has a FILEPASS record right after its BOF, as Excel writes
    a workbook saved with a password (the rest of the stream is not really encrypted)."""
    book = xlwt.Workbook()
    book.add_sheet("Sheet1").write(0, 0, "secret")
    biff = book.get_biff_data()
    code, length = struct.unpack("<HH", biff[:4])
    assert code == 0x0809  # BOF
    bof_end = 4 + length
    filepass = struct.pack("<HHHHH", 0x002F, 6, 0, 0x1234, 0x5678)  # XOR obfuscation
    return compound_file({"Workbook": biff[:bof_end] + filepass + biff[bof_end:]})
