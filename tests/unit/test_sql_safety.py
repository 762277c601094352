"""Every SQL statement is parameterised: no value is ever built into SQL text.

The worker's statements live in worker/storage/sql/queries.sql (named, with $1, $2 ...
placeholders) and its migrations in sql/migrations/. This test reads the Python code of the
worker and the schemas and fails on any call that sends SQL it did not take from there (or
from a constant), and on any f-string, %-format, .format() or + that builds SQL text.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from worker.storage.queries import parse_queries

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_CODE = [ROOT / "worker", ROOT / "schemas"]
SQL_DIR = ROOT / "worker" / "storage" / "sql"

# asyncpg's methods that take SQL (or a table name) as their first argument.
SQL_METHODS = frozenset(
    {
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "fetchmany",
        "prepare",
        "cursor",
        "copy_from_query",
        "copy_from_table",
        "copy_to_table",
        "copy_records_to_table",
    }
)
# SQL-looking text: a statement keyword and, later, what it acts on.
_SQL_TEXT = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|TRUNCATE|GRANT|COPY)\b"
    r".*\b(FROM|INTO|TABLE|SET|DATABASE|ROLE|INDEX|WHERE|VALUES)\b",
    re.DOTALL,
)
# Dynamic SQL inside SQL itself (PL/pgSQL EXECUTE, format(), quoting functions).
_DYNAMIC_SQL = re.compile(r"\bEXECUTE\b|\bformat\s*\(|\bquote_(ident|literal|nullable)\s*\(", re.I)


def _is_static_sql(node: ast.expr) -> bool:
    """SQL text that no value can have reached: a constant, query("name"), a migration's file."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return True
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        return (
            name == "query"
            and not node.keywords
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
        )
    # conn.execute(migration.sql): the text of a file of sql/migrations/ (checked below)
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "sql"
        and isinstance(node.value, ast.Name)
        and node.value.id == "migration"
    )


def _literal_text(node: ast.expr) -> str:
    """The constant text of a string-building expression (the values left out)."""
    parts = []
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            parts.append(child.value)
    return " ".join(parts)


def _builds_text(node: ast.AST) -> bool:
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(v, ast.FormattedValue) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return isinstance(node.left, ast.Constant | ast.JoinedStr | ast.BinOp) or isinstance(
            node.right, ast.Constant | ast.JoinedStr
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"format", "format_map", "join"}
        and isinstance(node.func.value, ast.Constant)
    )


def unsafe_sql(source: str, filename: str) -> list[str]:
    """Where `source` sends SQL not known in advance, or builds SQL text from values."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_METHODS
            and node.args
            and not _is_static_sql(node.args[0])
        ):
            found.append(
                f"{filename}:{node.lineno}: .{node.func.attr}() is given SQL that is not a "
                f"constant or query('name'): {ast.unparse(node.args[0])[:80]}"
            )
        if isinstance(node, ast.expr) and _builds_text(node):
            text = _literal_text(node)
            if _SQL_TEXT.search(text):
                found.append(
                    f"{filename}:{node.lineno}: SQL text built from values: "
                    f"{ast.unparse(node)[:80]}"
                )
    return found


def python_files() -> list[Path]:
    return sorted(path for base in PRODUCT_CODE for path in base.rglob("*.py"))


def test_the_python_code_builds_no_sql_from_values() -> None:
    files = python_files()
    assert any(path.name == "numbers.py" for path in files)  # the scan does reach the SQL
    found = [
        problem
        for path in files
        for problem in unsafe_sql(path.read_text("utf-8"), str(path.relative_to(ROOT)))
    ]
    assert found == []


def test_every_statement_of_queries_sql_takes_its_values_as_parameters() -> None:
    statements = parse_queries((SQL_DIR / "queries.sql").read_text("utf-8"))
    assert len(statements) >= 8
    for name, sql in statements.items():
        assert not _DYNAMIC_SQL.search(sql), f"{name} builds SQL at run time"
        numbers = sorted({int(n) for n in re.findall(r"\$(\d+)", sql)})
        assert numbers == list(range(1, len(numbers) + 1)), f"{name}: placeholders {numbers}"


def test_the_migrations_hold_no_dynamic_sql() -> None:
    migrations = sorted((SQL_DIR / "migrations").glob("*.sql"))
    assert migrations
    for path in migrations:
        assert not _DYNAMIC_SQL.search(path.read_text("utf-8")), path.name


@pytest.mark.parametrize(
    "source",
    [
        'await conn.execute(f"SELECT * FROM t WHERE id = {value}")',
        'await conn.fetch("SELECT * FROM t WHERE id = %s" % value)',
        'await conn.fetchrow("SELECT * FROM t WHERE id = \'" + value + "\'")',
        'await conn.fetchval("SELECT * FROM t WHERE id = {}".format(value))',
        "sql = f\"DELETE FROM unique_numbers WHERE variant_id = '{v}'\"\nawait conn.execute(sql)",
        "await conn.execute(query(name))",
        'await conn.copy_records_to_table(f"numbers_{suffix}", records=rows)',
        'await conn.executemany(" ".join(["UPDATE t SET a = 1 WHERE", cond]))',
    ],
)
def test_the_scan_finds_sql_built_from_values(source: str) -> None:
    assert unsafe_sql(source, "example.py") != []


@pytest.mark.parametrize(
    "source",
    [
        'await conn.execute(query("mark_used"), number, command_id)',
        'await conn.fetch("SELECT version FROM schema_migrations")',
        "await conn.execute(migration.sql)",
        'await conn.copy_records_to_table("unique_numbers", records=rows, columns=COLUMNS)',
        'log.info(f"selected {n} rows from the load")',  # text, not SQL
        'raise ValueError(f"the load holds {total} numbers, the limit is {limit}")',
    ],
)
def test_the_scan_lets_parameterised_sql_pass(source: str) -> None:
    assert unsafe_sql(source, "example.py") == []
