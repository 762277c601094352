from __future__ import annotations

import pytest

from worker.storage.migrations import available_migrations
from worker.storage.queries import parse_queries, queries


def test_every_statement_of_the_sql_file_is_loaded_by_name() -> None:
    loaded = queries()
    assert {"claim_command", "reserve_number", "insert_numbers", "list_numbers"} <= loaded.keys()
    assert "FOR UPDATE SKIP LOCKED" in loaded["reserve_number"]
    assert all("--" not in q.splitlines()[0] for q in loaded.values())


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


def test_migrations_are_numbered_from_one() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions[0] == 1
    assert versions == sorted(set(versions))
