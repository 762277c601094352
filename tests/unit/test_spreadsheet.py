"""The reader of the load-excel command: real .xls (xlwt) and .xlsx (openpyxl, raw XML) files."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Callable

import pytest
import xlrd
import xlwt  # type: ignore[import-untyped]
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas.fields import LIMITS, Limits, identifier_problem, unique_number_problem
from tests.unit.spreadsheet_files import (
    GS,
    Error,
    Formula,
    Merge,
    compound_file,
    encrypted_xls,
    encrypted_xlsx,
    excel_escape,
    raw_xlsx,
    shared_strings_xlsx,
    si,
    xls_file,
    xlsx_file,
)
from worker.domain import spreadsheet
from worker.domain.spreadsheet import (
    RowProblem,
    SheetReadout,
    SheetRow,
    UnreadableFile,
    read_in_this_process,
    read_number_rows,
)

Writer = Callable[..., bytes]
WRITERS = [pytest.param(xls_file, id="xls"), pytest.param(xlsx_file, id="xlsx")]
# Text rows only: the Excel-like .xlsx (shared strings) is written by hand and takes str/int/float.
ALL_WRITERS = [*WRITERS, pytest.param(shared_strings_xlsx, id="xlsx-shared-strings")]


# The reader's rules, read in this process (fast, and monkeypatches apply); the child process
# that read_number_rows reads in is tested in test_spreadsheet_limits.py.
def read(content: bytes, limits: Limits = LIMITS) -> SheetReadout:
    return read_in_this_process(content, limits)


def unreadable(content: bytes, limits: Limits = LIMITS) -> str:
    with pytest.raises(UnreadableFile) as caught:
        read_in_this_process(content, limits)
    return str(caught.value)


def only_problem(readout: SheetReadout) -> RowProblem:
    assert readout.rows == []
    assert readout.problems_total == 1
    assert len(readout.problems) == 1
    return readout.problems[0]


def sheet_xml(*rows: str) -> str:
    return "".join(f'<row r="{r}">{cells}</row>' for r, cells in enumerate(rows, start=1))


# --- the rows ------------------------------------------------------------------------------------


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_the_spec_example_without_header(write: Writer) -> None:
    readout = read(write([["AA-1025", "0113mldks!", "UIT"]]))
    assert readout.rows == [SheetRow(1, "AA-1025", "0113mldks!", "UIT")]
    assert readout.problems == []
    assert readout.problems_total == 0
    assert readout.header_row is None
    assert readout.format == ("xls" if write is xls_file else "xlsx")


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_a_header_row_is_skipped_and_rows_keep_their_excel_numbers(write: Writer) -> None:
    readout = read(
        write(
            [
                ["variant_id", "unique_number", "type"],
                ["AA-1025", "0113mldks!", "UIT"],
                ["AA-1026", "490154203237518", "imei"],
            ]
        )
    )
    assert readout.header_row == 1
    assert readout.rows == [
        SheetRow(2, "AA-1025", "0113mldks!", "UIT"),
        SheetRow(3, "AA-1026", "490154203237518", "IMEI"),
    ]
    assert readout.problems == []


@pytest.mark.parametrize("write", WRITERS)
def test_the_header_is_the_first_non_empty_row(write: Writer) -> None:
    readout = read(
        write([[], [None, None, None, "note"], ["Артикул", "Код", " Тип "], ["V", "N", "UIT"]])
    )
    assert readout.header_row == 3
    assert readout.rows == [SheetRow(4, "V", "N", "UIT")]


@pytest.mark.parametrize("write", WRITERS)
def test_a_first_row_whose_type_is_known_is_data_not_a_header(write: Writer) -> None:
    readout = read(write([["V1", "N1", " uit "], ["V2", "N2", "Imei"]]))
    assert readout.header_row is None
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT"), SheetRow(2, "V2", "N2", "IMEI")]


@pytest.mark.parametrize("write", WRITERS)
def test_a_first_row_without_a_type_is_a_problem_not_a_silent_header(write: Writer) -> None:
    problem = only_problem(read(write([["V1", "N1"]])))
    assert problem == RowProblem(1, "C", "column C (type) is empty")


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_empty_rows_in_the_middle_are_skipped(write: Writer) -> None:
    readout = read(write([["V1", "N1", "UIT"], [], [None, None, None], ["V4", "N4", "UIT"]]))
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT"), SheetRow(4, "V4", "N4", "UIT")]
    assert readout.problems_total == 0


@pytest.mark.parametrize("write", WRITERS)
def test_rows_of_whitespace_only_are_empty_rows(write: Writer) -> None:
    readout = read(write([["V1", "N1", "UIT"], [" ", "\u00a0", "\t"], ["V3", "N3", "UIT"]]))
    assert [row.row for row in readout.rows] == [1, 3]
    assert readout.problems_total == 0


@pytest.mark.parametrize("write", WRITERS)
def test_columns_after_c_are_ignored(write: Writer) -> None:
    readout = read(write([["V1", "N1", "UIT", "comment", 12.5], [None, None, None, "x"]]))
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT")]
    assert readout.problems_total == 0


CODES = [
    "0104601234567890215'bR2%" + GS + '93"/a%',  # GS, quotes, percent, slash
    GS.join(["0104650117240408215ZvpAy", "91EE11", "92ZbbfMdWKaflQJyy7rM="]),
    "00012345",  # leading zeros of a text cell
    "0",
    '"quoted"',
    "a b  c",  # inner spaces are part of the number
    "=not a formula",
    "Код-№5",
    "_x001D_ literal",  # what Excel shows as text, not an escape
    "tail_xD8F4" + GS + "93ab",  # an underscore run right before an escaped GS
]


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_codes_come_back_byte_for_byte(write: Writer) -> None:
    readout = read(write([[f"V{i}", code, "UIT"] for i, code in enumerate(CODES)]))
    assert readout.problems == []
    assert [row.unique_number for row in readout.rows] == CODES
    assert readout.rows[0].unique_number.encode() == (b"0104601234567890215'bR2%\x1d93\"/a%")


@pytest.mark.parametrize("write", WRITERS)
def test_a_unique_number_is_never_trimmed(write: Writer) -> None:
    problem = only_problem(read(write([["V1", " 0113mldks! ", "UIT"]])))
    assert problem.row == 1
    assert problem.column == "B"
    assert problem.reason == (
        "the unique number ' 0113mldks! ' starts or ends with whitespace "
        "(numbers are stored byte for byte, never trimmed)"
    )


@pytest.mark.parametrize("write", WRITERS)
def test_the_variant_id_and_the_type_are_stripped(write: Writer) -> None:
    readout = read(write([["  AA-1025\t", "N1", " imei\u00a0"]]))
    assert readout.rows == [SheetRow(1, "AA-1025", "N1", "IMEI")]


@pytest.mark.parametrize("write", WRITERS)
def test_a_gs_is_never_stripped_from_a_variant_id(write: Writer) -> None:
    problem = only_problem(read(write([["AA-1025" + GS, "N1", "UIT"]])))
    assert problem.column == "A"
    # a GS is a control character, never whitespace (schemas.fields), and no id holds one
    assert problem.reason == "the variant id 'AA-1025\\x1d' holds control character U+001D"


@pytest.mark.parametrize("write", WRITERS)
def test_an_unknown_type_lists_the_allowed_ones(write: Writer) -> None:
    readout = read(write([["V1", "N1", "UIT"], ["V2", "N2", "EAN"]]))
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT")]
    assert readout.problems == [RowProblem(2, "C", "the type 'EAN' is not one of UIT, IMEI")]


@pytest.mark.parametrize("write", WRITERS)
def test_a_row_missing_columns_has_one_problem_per_missing_column(write: Writer) -> None:
    readout = read(write([["V1", "N1", "UIT"], ["V2", None, None], [None, "N3", "UIT"]]))
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT")]
    assert readout.problems == [
        RowProblem(2, "B", "column B (unique number) is empty"),
        RowProblem(2, "C", "column C (type) is empty"),
        RowProblem(3, "A", "column A (variant id) is empty"),
    ]
    assert readout.problems_total == 3


@pytest.mark.parametrize("write", WRITERS)
def test_a_blank_unique_number_says_so(write: Writer) -> None:
    problem = only_problem(read(write([["V1", "   ", "UIT"]])))
    assert problem == RowProblem(1, "B", "column B (unique number) holds only whitespace")


@pytest.mark.parametrize("write", WRITERS)
def test_identifier_and_number_rules_of_schemas_fields_apply(write: Writer) -> None:
    long_id = "V" * (LIMITS.variant_id_max_length + 1)
    long_number = "9" * (LIMITS.unique_number_max_length + 1)
    readout = read(write([[long_id, "N1", "UIT"], ["V2", long_number, "UIT"]]))
    assert [(p.row, p.column) for p in readout.problems] == [(1, "A"), (2, "B")]
    assert readout.problems[0].reason.endswith(
        f"is {LIMITS.variant_id_max_length + 1} characters long, "
        f"the limit is {LIMITS.variant_id_max_length}"
    )
    assert readout.problems[0].reason.startswith("the variant id 'VVVVV")
    assert f"({LIMITS.variant_id_max_length + 1} characters)" in readout.problems[0].reason
    assert readout.problems[1].reason.endswith(
        f"is {LIMITS.unique_number_max_length + 1} characters long, "
        f"the limit is {LIMITS.unique_number_max_length}"
    )


def test_the_number_of_problems_kept_is_capped_but_all_are_counted() -> None:
    rows = [["V", None, "UIT"]] * 5
    readout = read(xlsx_file(rows), Limits(problems_reported=2))
    assert readout.problems_total == 5
    assert readout.problems == [
        RowProblem(1, "B", "column B (unique number) is empty"),
        RowProblem(2, "B", "column B (unique number) is empty"),
    ]


# --- numbers, dates, booleans, errors, formulas ------------------------------------------------


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_integral_number_cells_become_their_plain_digits(write: Writer) -> None:
    readout = read(
        write(
            [
                [1000, 490154203237518, "IMEI"],  # a 15-digit IMEI typed as a number
                [1000.0, 1.23e14, "UIT"],  # shown by Excel as 1.23E+14
                [-7, 0, "UIT"],
                [999_999_999_999_999, 12, "UIT"],  # the largest number kept exactly
            ]
        )
    )
    assert readout.problems == []
    assert readout.rows == [
        SheetRow(1, "1000", "490154203237518", "IMEI"),
        SheetRow(2, "1000", "123000000000000", "UIT"),
        SheetRow(3, "-7", "0", "UIT"),
        SheetRow(4, "999999999999999", "12", "UIT"),
    ]


def test_numbers_written_in_exponent_form_in_the_xml_become_digits() -> None:
    # Excel writes large numbers as 1.23E+14 in the <v> element; openpyxl makes them floats.
    content = raw_xlsx(
        [
            sheet_xml(
                '<c r="A1"><v>1E+3</v></c><c r="B1"><v>1.23E+14</v></c>'
                '<c r="C1" t="s"><v>0</v></c>',
                '<c r="A2"><v>5</v></c><c r="B2"><v>4.90154203237518E+14</v></c>'
                '<c r="C2" t="s"><v>0</v></c>',
            )
        ],
        [si("UIT")],
    )
    assert read(content).rows == [
        SheetRow(1, "1000", "123000000000000", "UIT"),
        SheetRow(2, "5", "490154203237518", "UIT"),
    ]


BEYOND = "the number has more digits than a spreadsheet number keeps exactly"


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_a_number_beyond_2_to_the_53_is_rejected_with_its_row(write: Writer) -> None:
    readout = read(write([["V1", "N1", "UIT"], ["V2", 2.0**53 + 2, "UIT"]]))
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT")]
    assert readout.problems == [
        RowProblem(
            2,
            "B",
            f"column B (unique number) holds the number 9007199254740994: {BEYOND} "
            "(it may have lost digits); store it as a text cell",
        )
    ]


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_a_16_digit_number_is_rejected_as_excel_keeps_15_digits(write: Writer) -> None:
    # 1234567890123456 < 2**53 is exact as a double, but Excel turns it into ...450 as it is
    # typed: from 10**15 on, the digits in a file are not certainly the typed ones.
    readout = read(write([[10**15, 1234567890123456, "UIT"]]))
    assert [(p.row, p.column) for p in readout.problems] == [(1, "A"), (1, "B")]
    assert readout.problems[0].reason.startswith(
        "column A (variant id) holds the number 1000000000000000:"
    )
    assert BEYOND in readout.problems[1].reason


def test_a_large_integer_in_an_xlsx_is_rejected_even_when_exact_in_the_xml() -> None:
    content = raw_xlsx(
        [
            sheet_xml(
                '<c r="A1" t="s"><v>0</v></c><c r="B1"><v>12345678901234567890</v></c>'
                '<c r="C1" t="s"><v>1</v></c>'
            )
        ],
        [si("V1"), si("UIT")],
    )
    problem = only_problem(read(content))
    assert problem.row == 1
    assert problem.column == "B"
    assert problem.reason.startswith(
        "column B (unique number) holds the number 12345678901234567890:"
    )
    assert BEYOND in problem.reason


@pytest.mark.parametrize("write", ALL_WRITERS)
def test_a_non_integral_number_asks_for_a_text_cell(write: Writer) -> None:
    problem = only_problem(read(write([["V1", 12.5, "UIT"]])))
    assert problem == RowProblem(
        1, "B", "column B (unique number) holds the number 12.5, not text: store it as a text cell"
    )


@pytest.mark.parametrize("write", WRITERS)
def test_a_number_as_type_is_not_a_type(write: Writer) -> None:
    problem = only_problem(read(write([["V1", "N1", 1]])))
    assert problem == RowProblem(1, "C", "the type '1' is not one of UIT, IMEI")


@pytest.mark.parametrize("write", WRITERS)
def test_a_date_cell_is_rejected_naming_its_kind(write: Writer) -> None:
    problem = only_problem(read(write([["V1", dt.date(2024, 1, 2), "UIT"]])))
    assert problem == RowProblem(
        1,
        "B",
        "column B (unique number) holds a date or time (2024-01-02), not text: "
        "format the cell as Text and type the value again",
    )


def test_a_date_styled_number_in_an_xlsx_is_a_date() -> None:
    # Style 1 of the raw workbook has number format 14 (a date), as Excel writes 2024-01-02.
    content = raw_xlsx(
        [
            sheet_xml(
                '<c r="A1" s="1"><v>45293</v></c><c r="B1" t="s"><v>0</v></c>'
                '<c r="C1" t="s"><v>1</v></c>'
            )
        ],
        [si("N1"), si("UIT")],
    )
    problem = only_problem(read(content))
    assert problem.column == "A"
    assert problem.reason.startswith("column A (variant id) holds a date or time (2024-01-02)")


def test_times_and_durations_are_dates_too() -> None:
    readout = read(xlsx_file([[dt.time(1, 2), dt.datetime(2024, 1, 2, 3, 4), "UIT"]]))
    assert [p.reason.split(", not text")[0] for p in readout.problems] == [
        "column A (variant id) holds a date or time (01:02:00)",
        "column B (unique number) holds a date or time (2024-01-02T03:04:00)",
    ]


@pytest.mark.parametrize("write", WRITERS)
def test_a_boolean_cell_is_rejected(write: Writer) -> None:
    problem = only_problem(read(write([["V1", True, "UIT"]])))
    assert problem == RowProblem(
        1,
        "B",
        "column B (unique number) holds a TRUE/FALSE value (TRUE), not text: "
        "format the cell as Text and type the value again",
    )


@pytest.mark.parametrize("write", WRITERS)
def test_an_error_cell_is_rejected(write: Writer) -> None:
    problem = only_problem(read(write([["V1", Error("#N/A"), "UIT"]])))
    assert problem == RowProblem(
        1,
        "B",
        "column B (unique number) holds the error value (#N/A), not text: "
        "put the value itself in the cell, not a formula that fails",
    )


@pytest.mark.parametrize("write", WRITERS)
def test_a_formula_without_a_calculated_value_reads_as_empty(write: Writer) -> None:
    # openpyxl writes <f> without <v>; xlwt writes a FORMULA record whose cached result is an
    # empty string. Neither was ever calculated by Excel, so the cell has no value to load.
    problem = only_problem(read(write([["V1", Formula('"01"&"23"'), "UIT"]])))
    assert problem == RowProblem(1, "B", "column B (unique number) is empty")


def test_a_formula_reads_as_the_value_excel_calculated() -> None:
    content = raw_xlsx(
        [
            sheet_xml(
                '<c r="A1"><f>999+1</f><v>1000</v></c>'
                '<c r="B1" t="str"><f>"01"&amp;CHAR(29)&amp;"93"</f><v>01_x001D_93</v></c>'
                '<c r="C1" t="str"><f>"UIT"</f><v>UIT</v></c>',
                '<c r="A2" t="str"><f>"V2"</f><v>V2</v></c>'
                '<c r="B2" t="e"><f>1/0</f><v>#DIV/0!</v></c>'
                '<c r="C2" t="str"><f>"UIT"</f><v>UIT</v></c>',
            )
        ]
    )
    readout = read(content)
    assert readout.rows == [SheetRow(1, "1000", "01\x1d93", "UIT")]
    assert [(p.row, p.column, p.reason.split(", not")[0]) for p in readout.problems] == [
        (2, "B", "column B (unique number) holds the error value (#DIV/0!)")
    ]


@pytest.mark.parametrize("write", WRITERS)
def test_merged_cells_leave_the_other_rows_empty(write: Writer) -> None:
    rows = [["V1", "N1", "UIT"], ["V2", "N2", "UIT"], [None, "N3", "UIT"]]
    readout = read(write(rows, merges=[Merge(1, 2, 0, 0)]))  # A2:A3
    assert readout.rows == [SheetRow(1, "V1", "N1", "UIT"), SheetRow(2, "V2", "N2", "UIT")]
    assert readout.problems == [RowProblem(3, "A", "column A (variant id) is empty")]


# --- .xlsx text escapes -------------------------------------------------------------------------


def test_xlsx_escapes_are_decoded_as_excel_does() -> None:
    texts = [
        "<t>01_x001D_93ab</t>",  # GS as Excel writes it
        "<t>_x005F_x001D_</t>",  # the literal text _x001D_
        "<t>a_x005F_b</t>",  # an escaped underscore not before an escape
        "<t>tail_x005F_xD8F4_x001D_93</t>",  # literal _xD8F4 then a GS
        "<t>_x001d_</t>",  # lower-case hex
        "<t>x_x1D_y_x001G_z</t>",  # not escapes: left as they are
        "<t>_xD83D__xDE00_</t>",  # a character beyond U+FFFF, as two UTF-16 halves
        "<r><t>01</t></r><r><rPr><b/></rPr><t>_x001D_93</t></r>",  # rich text runs
        '<t>ab</t><rPh sb="0" eb="1"><t>PHONETIC</t></rPh>',  # phonetic hints are no text
    ]
    expected = [
        "01\x1d93ab",
        "_x001D_",
        "a_b",
        "tail_xD8F4\x1d93",
        "\x1d",
        "x_x1D_y_x001G_z",
        "\U0001f600",
        "01\x1d93",
        "ab",
    ]
    data = sheet_xml(
        *(
            f'<c r="A{r}" t="s"><v>{len(texts)}</v></c><c r="B{r}" t="s"><v>{r - 1}</v></c>'
            f'<c r="C{r}" t="s"><v>{len(texts) + 1}</v></c>'
            for r in range(1, len(texts) + 1)
        )
    )
    readout = read(raw_xlsx([data], [*texts, "<t>V</t>", "<t>UIT</t>"]))
    # A GS alone is a valid number since GS is no longer whitespace (schemas.fields).
    assert [row.unique_number for row in readout.rows] == expected
    assert readout.problems == []


def test_inline_strings_are_decoded_too() -> None:
    data = sheet_xml(
        '<c r="A1" t="inlineStr"><is><t>V_x005F_x0031_</t></is></c>'
        '<c r="B1" t="inlineStr"><is><t xml:space="preserve">01_x001D_93 </t></is></c>'
        '<c r="C1" t="inlineStr"><is><t>UIT</t></is></c>',
        '<c r="A2" t="inlineStr"><is><t>V2</t></is></c>'
        '<c r="B2" t="inlineStr"><is><r><t>01</t></r><r><t>_x001D_93</t></r></is></c>'
        '<c r="C2" t="inlineStr"><is><t>UIT</t></is></c>',
    )
    readout = read(raw_xlsx([data]))
    assert readout.rows == [SheetRow(2, "V2", "01\x1d93", "UIT")]
    assert readout.problems == [
        RowProblem(
            1,
            "B",
            "the unique number '01\\x1d93 ' starts or ends with whitespace "
            "(numbers are stored byte for byte, never trimmed)",
        )
    ]


def test_a_lone_surrogate_is_reported_not_loaded() -> None:
    data = sheet_xml(
        '<c r="A1" t="s"><v>1</v></c><c r="B1" t="s"><v>0</v></c><c r="C1" t="s"><v>2</v></c>'
    )
    problem = only_problem(read(raw_xlsx([data], ["<t>01_xD83D_93</t>", "<t>V</t>", "<t>UIT</t>"])))
    assert problem == RowProblem(
        1,
        "B",
        "column B (unique number) holds a broken character "
        "(a lone UTF-16 surrogate U+D83D): retype the value",
    )


def test_row_numbers_come_from_the_file_when_rows_are_sparse() -> None:
    data = (
        '<row r="3"><c r="A3" t="s"><v>0</v></c><c r="B3" t="s"><v>1</v></c>'
        '<c r="C3" t="s"><v>2</v></c></row>'
        '<row r="70000"><c r="A70000" t="s"><v>0</v></c><c r="B70000" t="s"><v>3</v></c>'
        '<c r="C70000" t="s"><v>2</v></c></row>'
    )
    readout = read(raw_xlsx([data], [si("V"), si("N1"), si("UIT"), si("N2")]))
    assert readout.rows == [SheetRow(3, "V", "N1", "UIT"), SheetRow(70000, "V", "N2", "UIT")]


def test_a_wrong_stated_sheet_size_does_not_hide_rows() -> None:
    # openpyxl's read-only mode stops at the size the file states unless told otherwise.
    data = sheet_xml(
        *(
            f'<c r="A{r}" t="s"><v>0</v></c><c r="B{r}"><v>{r}</v></c>'
            f'<c r="C{r}" t="s"><v>1</v></c>'
            for r in range(1, 4)
        )
    )
    content = raw_xlsx([data], [si("V"), si("UIT")])
    with zipfile.ZipFile(io.BytesIO(content)) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
        b"<sheetData>", b'<dimension ref="A1:C1"/><sheetData>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, body in parts.items():
            target.writestr(name, body)
    assert [row.unique_number for row in read(out.getvalue()).rows] == ["1", "2", "3"]


# --- sheets and limits --------------------------------------------------------------------------


@pytest.mark.parametrize("write", WRITERS)
def test_a_second_sheet_with_data_is_refused(write: Writer) -> None:
    content = write(
        [["V1", "N1", "UIT"]], [[], [None, None, None, None, "stray"]], names=["Rows", "Extra"]
    )
    message = unreadable(content)
    assert message.startswith("sheet 2 ('Extra') is not empty (cell E2 holds a value)")
    assert "put every row on the first sheet" in message


@pytest.mark.parametrize("write", WRITERS)
def test_a_third_sheet_with_a_number_is_refused(write: Writer) -> None:
    content = write([["V1", "N1", "UIT"]], [], [[0]], names=["Rows", "Empty", "Zero"])
    assert unreadable(content).startswith("sheet 3 ('Zero') is not empty (cell A1 holds a value)")


@pytest.mark.parametrize("write", WRITERS)
def test_empty_other_sheets_are_fine(write: Writer) -> None:
    content = write([["V1", "N1", "UIT"]], [], [[None, " "]], names=["Rows", "Empty", "Blank"])
    assert read(content).rows == [SheetRow(1, "V1", "N1", "UIT")]


@pytest.mark.parametrize("write", WRITERS)
def test_more_rows_than_the_limit_are_refused(write: Writer) -> None:
    header = [["variant", "number", "type"]]
    five = [[f"V{i}", f"N{i}", "UIT"] for i in range(5)]
    limits = Limits(rows_per_file=5)
    assert len(read(write(header + five + [[]]), limits).rows) == 5
    message = unreadable(write(header + five + [["V5", None, None]]), limits)
    assert message == (
        "the first sheet holds more than 5 rows of numbers, the limit per file: "
        "split it into files of at most 5 rows"
    )


def test_reading_stops_at_the_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    original = spreadsheet._xlsx_cell

    def spy(cell: object) -> object:
        seen.append(getattr(cell, "row", 0))
        return original(cell)

    monkeypatch.setattr(spreadsheet, "_xlsx_cell", spy)
    rows = [[f"V{i}", f"N{i}", "UIT"] for i in range(100)]
    with pytest.raises(UnreadableFile):
        read(xlsx_file(rows), Limits(rows_per_file=3))
    assert max(seen) == 4


def test_an_empty_workbook_has_no_rows() -> None:
    readout = read(xlsx_file([]))
    assert readout == SheetReadout("xlsx", [], [], 0)


# --- files that are not readable ----------------------------------------------------------------


def test_empty_bytes() -> None:
    assert unreadable(b"") == "the file is empty (0 bytes)"


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"%PDF-1.7\n%\xe2\xe3", "it starts with '%PDF-1.7\\n%âã', so it is a PDF document"),
        (b"<html><body><table>", "so it is a web page (HTML), which some programs save under"),
        (
            b'<?xml version="1.0"?><Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">',
            "so it is an Excel 2003 XML spreadsheet",
        ),
        (b"AA-1025;0113mldks!;UIT\r\n", "so it looks like text (CSV?)"),
        (b"\x00\x01\x02\x03\xff", "it starts with the bytes 00 01 02 03 ff, which no spreadsheet"),
        (b"PK\x05\x06" + b"\0" * 18, "so it is a zip archive of an unusual layout"),
    ],
)
def test_what_is_not_a_spreadsheet_is_described(content: bytes, looks_like: str) -> None:
    message = unreadable(content)
    assert message.startswith("the file is not an Excel workbook (.xlsx or .xls): it starts with")
    assert looks_like in message
    assert message.endswith("save it as an Excel workbook (.xlsx)")


def zip_of(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return out.getvalue()


@pytest.mark.parametrize(
    ("members", "kind"),
    [
        ({"notes.txt": b"hello"}, "a zip archive without xl/workbook.xml"),
        ({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<x/>"}, "a Word document"),
        (
            {"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b""},
            "an OpenDocument file (.ods, .odt)",
        ),
        ({"[Content_Types].xml": b"<x/>", "xl/workbook.bin": b""}, "a binary Excel workbook"),
    ],
)
def test_a_zip_that_is_no_workbook_is_described(members: dict[str, bytes], kind: str) -> None:
    assert unreadable(zip_of(members)).startswith(
        f"the file is not an Excel workbook: it is {kind}"
    )


def test_an_office_package_without_a_workbook_part_is_not_a_workbook() -> None:
    types = (
        b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Default Extension="xml" ContentType="application/xml"/></Types>'
    )
    message = unreadable(zip_of({"[Content_Types].xml": types, "other/part.xml": b"<x/>"}))
    assert message.startswith("the file is a zip archive but not an Excel workbook")


def test_a_file_over_the_size_limit_is_refused() -> None:
    content = xlsx_file([["V1", "N1", "UIT"]])
    assert unreadable(content, Limits(file_bytes=1000)) == (
        f"the file is {len(content)} bytes, the limit is 1000: split it"
    )


DAMAGED = "but is damaged or truncated, so it cannot be read; open it in Excel, save it again"


@pytest.mark.parametrize("write", WRITERS)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_a_truncated_file_is_damaged(write: Writer, keep: float) -> None:
    content = write(
        [[f"V{i}", f"0104601234{i:06d}21abc" + GS + "93xyz", "UIT"] for i in range(300)]
    )
    message = unreadable(content[: int(len(content) * keep)])
    kind = "xls" if write is xls_file else "xlsx"
    assert message.startswith(f"the file starts like an .{kind} workbook {DAMAGED}")


def test_an_xlsx_with_a_corrupt_member_is_damaged() -> None:
    content = bytearray(xlsx_file([[f"V{i}", f"N{i}", "UIT"] for i in range(2000)]))
    with zipfile.ZipFile(io.BytesIO(bytes(content))) as archive:
        sheet = archive.getinfo("xl/worksheets/sheet1.xml")
    middle = sheet.header_offset + 30 + len(sheet.filename) + sheet.compress_size // 2
    content[middle : middle + 8] = b"\xff" * 8
    assert unreadable(bytes(content)).startswith(
        f"the file starts like an .xlsx workbook {DAMAGED}"
    )


def test_an_xlsx_with_broken_xml_is_damaged() -> None:
    content = raw_xlsx(['<row r="1"><c r="A1" t="s"><v>0</v></row>'], [si("V")])
    message = unreadable(content)
    assert message.startswith(f"the file starts like an .xlsx workbook {DAMAGED}")
    assert "(detail: ParseError: mismatched tag" in message


def test_an_xlsx_pointing_past_its_shared_strings_is_damaged() -> None:
    content = raw_xlsx([sheet_xml('<c r="A1" t="s"><v>7</v></c>')], [si("V")])
    assert "(detail: IndexError: shared string 7 of 1)" in unreadable(content)


def test_a_negative_shared_string_index_is_damaged_not_the_last_string() -> None:
    content = raw_xlsx(
        [
            sheet_xml(
                '<c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>-1</v></c>'
                '<c r="C1" t="s"><v>1</v></c>'
            )
        ],
        [si("V"), si("UIT")],
    )
    assert "(detail: IndexError: shared string -1 of 2)" in unreadable(content)


def test_a_row_beyond_the_last_excel_row_is_damaged(monkeypatch: pytest.MonkeyPatch) -> None:
    # openpyxl makes up every skipped empty row; with the real limit (1,048,576) this test would
    # spend seconds on them, so the limit is lowered.
    monkeypatch.setattr(spreadsheet, "EXCEL_ROWS", 10)
    ok = '<row r="10"><c r="A10" t="s"><v>0</v></c><c r="B10" t="s"><v>0</v></c>' + (
        '<c r="C10" t="s"><v>1</v></c></row>'
    )
    assert len(read(raw_xlsx([ok], [si("V"), si("UIT")])).rows) == 1
    beyond = '<row r="11"><c r="A11" t="s"><v>0</v></c></row>'
    message = unreadable(raw_xlsx([ok + beyond], [si("V"), si("UIT")]))
    assert message.startswith("a sheet of the workbook has a row numbered beyond 10, the last row")
    assert unreadable(raw_xlsx(["", beyond], [si("V")])).startswith(
        "a sheet of the workbook has a row numbered beyond 10"
    )


def test_memory_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(**_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(xlrd, "open_workbook", exhausted)
    with pytest.raises(MemoryError):
        read_in_this_process(xls_file([["V1", "N1", "UIT"]]))
    # read in its child process (which the patch reaches: it is forked), the file is refused
    with pytest.raises(UnreadableFile, match="reading the workbook needs more than 2048 MiB"):
        read_number_rows(xls_file([["V1", "N1", "UIT"]]))


def test_the_declared_unpacked_size_is_capped() -> None:
    content = xlsx_file([["V1", "N1", "UIT"]])
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    assert unreadable(content, Limits(unpacked_xlsx_bytes=unpacked - 1)) == (
        f"the workbook unpacks to {unpacked} bytes, the limit is {unpacked - 1}: "
        "it is not a plain list of numbers; split it"
    )
    assert read(content, Limits(unpacked_xlsx_bytes=unpacked)).rows == [
        SheetRow(1, "V1", "N1", "UIT")
    ]


def test_a_zip_bomb_named_xlsx_is_refused_before_it_is_unpacked() -> None:
    bomb = zip_of(
        {
            "[Content_Types].xml": b"<Types/>",
            "xl/workbook.xml": b"<workbook/>",
            "xl/worksheets/sheet1.xml": bytes(20 * 1024 * 1024),  # deflates about 1000 to 1
        }
    )
    assert len(bomb) < 100_000
    message = unreadable(bomb)
    assert message.startswith("the workbook part 'xl/worksheets/sheet1.xml' unpacks from ")
    assert f"to {20 * 1024 * 1024} bytes, more than 200 times: this is not a plain list" in message


def test_a_big_ordinary_workbook_is_no_bomb() -> None:
    # Rows of one value repeated compress far better than real rows (about 11 to 1), and pass.
    content = shared_strings_xlsx([["V1", "N1", "UIT"]] * 20_000)
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.getinfo("xl/worksheets/sheet1.xml").file_size > spreadsheet.RATIO_FLOOR
    assert len(read(content).rows) == 20_000


ENCRYPTED = (
    "the workbook is password-protected (encrypted), so it cannot be read: open it in Excel, "
    "remove the password and save it again"
)


def test_an_encrypted_xlsx_is_password_protected() -> None:
    assert unreadable(encrypted_xlsx()) == ENCRYPTED


def test_an_encrypted_xls_is_password_protected() -> None:
    assert unreadable(encrypted_xls()) == ENCRYPTED


def test_a_zip_with_encrypted_members_is_password_protected() -> None:
    content = bytearray(xlsx_file([["V1", "N1", "UIT"]]))
    # Set the "encrypted" flag of every member in the central directory (signature PK\1\2).
    position = content.find(b"PK\x01\x02")
    while position != -1:
        content[position + 8] |= 0x01
        position = content.find(b"PK\x01\x02", position + 4)
    assert unreadable(bytes(content)) == ENCRYPTED


def test_an_ole2_file_without_a_workbook_is_not_a_spreadsheet() -> None:
    message = unreadable(compound_file({"WordDocument": b"\xec\xa5" + bytes(100)}))
    assert message.startswith("the file is not an Excel workbook: it is an OLE2 compound document")


def test_the_crafted_compound_file_is_read_by_xlrd_when_it_holds_a_workbook() -> None:
    # The OLE2 writer of the tests is the one behind the encrypted files: check it is sound.
    book = xlwt.Workbook()
    sheet = book.add_sheet("Sheet1")
    for r in range(3):
        sheet.write(r, 0, f"V{r}")
        sheet.write(r, 1, f"01{GS}93{r}")
        sheet.write(r, 2, "UIT")
    readout = read(compound_file({"Workbook": book.get_biff_data()}))
    assert readout.format == "xls"
    assert [row.unique_number for row in readout.rows] == [f"01{GS}930", f"01{GS}931", f"01{GS}932"]


def test_a_damaged_compound_file_is_damaged() -> None:
    content = bytearray(compound_file({"Workbook": bytes(5000)}))
    content[48:52] = (10_000).to_bytes(4, "little")  # the directory's first sector: past the end
    assert unreadable(bytes(content)).startswith(f"the file starts like an .xls workbook {DAMAGED}")


# --- property: what is written is what is read --------------------------------------------------

_id_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("АБВЖЯё№"),
    min_size=1,
    max_size=30,
).filter(lambda v: identifier_problem(v, LIMITS.variant_id_max_length) is None)
_number_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.just(GS),
    min_size=1,
    max_size=80,
).filter(lambda v: unique_number_problem(v) is None)
_row = st.tuples(_id_text, _number_text, st.sampled_from(["UIT", "IMEI"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=12))
@example(rows=[("V_x005F_", "_x001D_" + GS + "_xABCD_x", "UIT")])
@example(rows=[("1000", "0" * 20 + GS + "'\"%/", "IMEI")])
def test_random_valid_rows_read_back_identical(rows: list[tuple[str, str, str]]) -> None:
    expected = [SheetRow(i, *row) for i, row in enumerate(rows, start=1)]
    for write in (xls_file, xlsx_file, shared_strings_xlsx):
        readout = read(write([list(row) for row in rows]))
        assert readout.problems == [], write.__name__
        assert readout.rows == expected, write.__name__
        assert [r.unique_number.encode() for r in readout.rows] == [row[1].encode() for row in rows]


def test_the_test_escaper_writes_what_excel_writes() -> None:
    assert excel_escape("a" + GS + "b_x0041_c_d") == "a_x001D_b_x005F_x0041_c_d"
