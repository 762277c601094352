"""The spreadsheet reader's child process: a workbook that would take too much memory or time is
refused, and whatever happens to the reader, the caller gets an answer."""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import random
import signal
import time

import pytest

from schemas.fields import LIMITS, Limits
from tests.unit.spreadsheet_files import GS, raw_xlsx, xls_file, xlsx_file
from worker.domain import spreadsheet
from worker.domain.spreadsheet import UnreadableFile, read_in_this_process, read_number_rows

MIB = 1024 * 1024


def row_of_empty_cells(cells: int) -> bytes:
    """One row of `cells` empty cells: about half a megabyte packed per million cells (a random
    style now and then keeps it under the zip bomb ratio), 300 MB of memory per million read."""
    rnd = random.Random(7)
    xml = "".join("<c/>" if i % 8 else f'<c s="{rnd.randrange(10**6)}"/>' for i in range(cells))
    return raw_xlsx([f'<row r="1">{xml}</row>'])


def test_a_workbook_reads_the_same_in_the_child_process() -> None:
    for content in (
        xls_file([["variant", "number", "type"], ["V1", f"01{GS}93", "UIT"], ["V2", 1.5, "UIT"]]),
        xlsx_file([["V1", f"01{GS}93", "UIT"], ["V2", "", "EAN"]]),
    ):
        assert read_number_rows(content) == read_in_this_process(content)
    with pytest.raises(UnreadableFile, match="the file is not an Excel workbook"):
        read_number_rows(b"%PDF-1.7")
    assert multiprocessing.active_children() == []


def test_a_workbook_that_needs_more_memory_than_allowed_is_refused() -> None:
    content = row_of_empty_cells(1_000_000)
    assert len(content) < MIB  # within every size limit, ratio included
    limits = Limits(read_memory_bytes=128 * MIB)
    before = time.monotonic()
    with pytest.raises(UnreadableFile) as refused:
        read_number_rows(content, limits)
    assert str(refused.value) == (
        "reading the workbook needs more than 128 MiB of memory, so it was not read: it is not "
        "a plain list of numbers (an XML bomb?); save the rows in a new workbook"
    )
    assert time.monotonic() - before < 30
    assert multiprocessing.active_children() == []


def test_a_workbook_that_takes_longer_than_allowed_is_refused_and_its_reader_stopped() -> None:
    content = raw_xlsx(["".join(f'<row r="{i}"><c r="A{i}"/></row>' for i in range(1, 200_000))])
    before = time.monotonic()
    with pytest.raises(UnreadableFile) as refused:
        read_number_rows(content, Limits(read_seconds=0.3))
    assert time.monotonic() - before < 5
    assert str(refused.value) == (
        "the workbook takes more than 0.3 s to read, so it was not read (a plain list of numbers "
        "reads far faster): save the rows in a new workbook, or split it"
    )
    assert multiprocessing.active_children() == []


def test_the_default_limits_leave_room_for_the_largest_plain_workbook() -> None:
    assert LIMITS.read_memory_bytes >= 2 * 1024 * MIB
    assert LIMITS.read_seconds >= 120


def test_a_reader_that_dies_is_an_unreadable_file(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(content: bytes, limits: Limits) -> None:
        faulthandler.disable()  # pytest's, inherited: it would print the crash
        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(spreadsheet, "_read_number_rows", crash)
    with pytest.raises(
        UnreadableFile, match=r"the reader stopped on this workbook \(exit code -11\)"
    ):
        read_number_rows(xlsx_file([["V1", "N1", "UIT"]]))

    def killed(content: bytes, limits: Limits) -> None:  # as the out-of-memory killer does
        os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(spreadsheet, "_read_number_rows", killed)
    with pytest.raises(UnreadableFile, match="reading the workbook needs more than 2048 MiB"):
        read_number_rows(xlsx_file([["V1", "N1", "UIT"]]))


def test_a_defect_of_the_reader_is_not_taken_for_a_bad_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def defect(content: bytes, limits: Limits) -> None:
        raise KeyError("no such thing")

    monkeypatch.setattr(spreadsheet, "_read_number_rows", defect)
    with pytest.raises(
        RuntimeError, match="the spreadsheet reader failed: KeyError: 'no such thing'"
    ):
        read_number_rows(xlsx_file([["V1", "N1", "UIT"]]))
