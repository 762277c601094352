"""The PostgreSQL connection pool and its transactions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from worker.domain.ports import StorageUnavailable
from worker.storage.migrations import migrate
from worker.storage.numbers import PgNumberStore

log = structlog.get_logger(__name__)

# Errors after which the same command, tried again later, may well succeed: the server is
# restarting, unreachable, or the connection broke. They are retried, never answered.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    # Resetting a connection the server cut failed (the pool has closed it): see _session_cut.
    asyncpg.InternalClientError,
)


def _session_cut(conn: asyncpg.pool.PoolConnectionProxy, exc: Exception) -> bool:
    """Whether `exc` comes of a session the server cut mid-transaction; if so, the connection
    is closed, so that the retry gets a fresh one.

    asyncpg reports such a cut as an InterfaceError of a closed connection, or it leaves its
    protocol state broken (InternalClientError "cannot switch to state ...",
    MagicStack/asyncpg#1069) on a connection the pool would hand out again and again. An
    InterfaceError on a connection that is still open is misuse: a defect, not an outage.
    """
    try:
        if isinstance(exc, asyncpg.InterfaceError) and not conn.is_closed():
            return False
        conn.terminate()
    except asyncpg.InterfaceError:
        pass  # closed already, and given back to the pool
    return True


def dsn_with_sslmode(dsn: str, sslmode: str) -> str:
    """The DSN with `sslmode` set, unless the DSN names one itself."""
    parts = urlsplit(dsn)
    params = dict(parse_qsl(parts.query))
    params.setdefault("sslmode", sslmode)
    return urlunsplit(parts._replace(query=urlencode(params)))


def redact_dsn(dsn: str) -> str:
    """The DSN without its password (in the user part or a password= parameter), for logs."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection given back: nothing more than asyncpg's own
    rollback of a transaction left open. The worker leaves nothing else in a session (no SET,
    LISTEN, cursor or session-level advisory lock), so asyncpg's default reset (RESET ALL,
    UNLISTEN, CLOSE ALL, pg_advisory_unlock_all: one more round trip after every transaction)
    is skipped; profiles of reserves showed it at 3% of the worker's time."""


class PgDatabase:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, sslmode: str, pool_size: int) -> PgDatabase:
        pool = await asyncpg.create_pool(
            dsn_with_sslmode(dsn, sslmode),
            min_size=1,
            max_size=pool_size,
            command_timeout=60,
            reset=_keep_session,
        )
        log.info("database_connected", dsn=redact_dsn(dsn), pool_size=pool_size)
        return cls(pool)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgNumberStore]:
        try:
            async with self._pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        yield PgNumberStore(conn)
                except (asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                    if not _session_cut(conn, exc):
                        raise
                    raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except TRANSIENT_ERRORS as exc:
            raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def migrate(self) -> list[int]:
        async with self._pool.acquire() as conn:
            return await migrate(conn)

    async def close(self) -> None:
        await self._pool.close()
