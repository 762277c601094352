"""Versioned schema migrations: sql/migrations/NNN_name.sql, applied once each, in order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files

import structlog

from worker.storage.numbers import Connection

log = structlog.get_logger(__name__)

_FILE = re.compile(r"^(\d{3})_(\w+)\.sql$")
# Any constant works; it only keeps two workers starting at once from migrating together.
_MIGRATION_LOCK_KEY = 0x756E_6971  # "uniq"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in files("worker.storage").joinpath("sql/migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version: {versions}")
    return found


async def migrate(conn: Connection) -> list[int]:
    """Apply the migrations not yet applied; returns the versions applied now."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in available_migrations():
            if migration.version in done:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.version)
            log.info("migration_applied", version=migration.version, name=migration.name)
    return applied_now
