"""Fixtures of the fault tests: a run (topics, group, database, workload, result reader,
worker processes) per test, and private servers for the tests that stop one.

The shared Kafka and PostgreSQL (`servers`) are never stopped: a test that stops a server
gets a private one of its own (scripts/kafka.sh or scripts/postgres.sh with a temporary
RUN_DIR and free loopback ports), started on first use and stopped at the end of the session,
whatever happened (unless pytest itself is killed: then the servers of that run are left
running under /tmp/unique-numbers-faults-*: `RUN_DIR=<that dir> scripts/kafka.sh stop`, or
`scripts/postgres.sh stop`, stops one).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from tests.integration.conftest import make_settings, with_database
from tests.integration.faults.history import History
from tests.integration.faults.processes import PrivateKafka, PrivatePostgres, WorkerProcess
from tests.integration.faults.workload import Driver, ResultReader, Workload, count_records
from tests.integration.servers import Servers
from worker.config import Settings
from worker.storage.migrations import migrate
from worker.transport.topics import ensure_topics

FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault tests: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


Server = TypeVar("Server", PrivateKafka, PrivatePostgres)


def _started(create: Callable[[], Server]) -> Server:
    """A private server, started; on free ports, so tried twice (another process may take a
    port between its choice and the server's start)."""
    for attempt in (1, 2):
        server = create()
        try:
            server.start()
            return server
        except (RuntimeError, subprocess.TimeoutExpired):
            server.destroy()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def private_kafka() -> Iterator[PrivateKafka]:
    if shutil.which("java") is None:  # e.g. servers in Docker: no local Kafka to run
        pytest.skip("a private Kafka broker needs Java 17+ (scripts/kafka.sh)")
    kafka = _started(PrivateKafka.create)
    try:
        yield kafka
    finally:
        kafka.destroy()


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and shutil.which("pg_ctl") is None:
        pytest.skip("a private PostgreSQL needs its binaries (scripts/postgres.sh)")
    postgres = _started(PrivatePostgres.create)
    try:
        yield postgres
    finally:
        postgres.destroy()


async def fresh_database(server_url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A new migrated database on the server of `server_url`, and how to drop it."""
    name = f"unique_numbers_faults_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()

    async def drop() -> None:
        # Best effort: a private server's whole cluster is deleted at the end anyway.
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            admin = await asyncpg.connect(server_url)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

    return url, drop


class FaultRun:
    """One fault test's world: its own topics, group and database; its workload; the
    worker processes it starts (each logging to its own file); the history it checks."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        seed = int(os.environ.get("FAULTS_SEED", zlib.crc32(name.encode())))
        self.settings = settings
        self.log_dir = log_dir
        self.history = History(name)
        self.history.note(f"seed {seed}; worker logs in {log_dir}")
        self.workload = Workload(self.history, seed)
        self.driver = Driver(settings, self.history, self.workload)
        self.reader = ResultReader(settings, self.history)
        self.workers: list[WorkerProcess] = []
        self.exit_codes: dict[str, int | None] = {}

    async def __aenter__(self) -> FaultRun:
        await ensure_topics(self.settings)
        await self.driver.start()
        await self.reader.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.reap()
        await self.reader.stop()
        await self.driver.stop()

    def worker(self, name: str, instance_id: str | None = None) -> WorkerProcess:
        process = WorkerProcess(name, self.settings, self.log_dir, instance_id or name).start()
        self.workers.append(process)
        return process

    def logged(self, event: str) -> int:
        """How many times the workers of this run logged `event`."""
        return sum(w.logged(event) for w in self.workers)

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.returncode is None]

    async def finish(self, db_url: str, result_timeout: float = 90.0) -> list[str]:
        """Wait for every result, stop the workers, read the results topic to its end, and
        check the history against the database. Returns the violations."""
        started = time.monotonic()
        if not await self.reader.wait_for_all(result_timeout):
            self.history.note(f"{len(self.history.missing())} results still missing after wait")
        self.history.note(f"last result {time.monotonic() - started:.1f}s after the last send")
        for worker in self.live_workers():
            self.exit_codes[worker.name] = await worker.terminate(timeout=30)
        self.history.note(
            "commands applied again and answered from the stored result: "
            f"{self.logged('command_replayed')}"
        )
        await self.reader.read_to_end(timeout=45)
        self.history.dead_letters = await count_records(
            self.settings, self.settings.topic_dead_letter
        )
        conn = await asyncpg.connect(db_url)
        try:
            violations = await self.history.check(conn)
        finally:
            await conn.close()
        violations += [
            f"worker {name} exited {code} after SIGTERM"
            for name, code in self.exit_codes.items()
            if code != 0
        ]
        return violations

    def conclude(self, violations: list[str]) -> None:
        """Record the figures for the summary and fail with the report if anything broke."""
        report = self.history.report(violations)
        FIGURES.append(report)
        tails = "\n".join(f"--- {w.name} ({w.log_path}):\n{w.tail()}" for w in self.workers)
        assert not violations, f"{report}\n{tails}"


def fault_settings(kafka: str, database_url: str, **overrides: object) -> Settings:
    prefix = f"f-{uuid.uuid4().hex[:10]}."
    values: dict[str, object] = {
        "kafka_topic_partitions": 8,
        "shutdown_grace_seconds": 5.0,
        "database_retry_max_seconds": 1.0,
        "database_pool_size": 8,
        "log_format": "json",
        **overrides,
    }
    return make_settings(Servers(kafka, database_url), database_url, prefix, **values)


RunFactory = Callable[..., Awaitable[FaultRun]]


@pytest.fixture
async def shared_run(
    request: pytest.FixtureRequest, servers: Servers, database_url: str, tmp_path: Path
) -> AsyncIterator[FaultRun]:
    """Shared Kafka and PostgreSQL (never stopped): for faults of the workers only."""
    settings = fault_settings(servers.kafka_bootstrap_servers, database_url)
    async with FaultRun(request.node.name, settings, tmp_path) as run:
        yield run


@pytest.fixture
async def private_kafka_run(
    request: pytest.FixtureRequest,
    private_kafka: PrivateKafka,
    database_url: str,
    tmp_path: Path,
) -> AsyncIterator[FaultRun]:
    """A private Kafka broker (the test may stop it), the shared PostgreSQL."""
    settings = fault_settings(private_kafka.bootstrap_servers, database_url)
    async with FaultRun(request.node.name, settings, tmp_path) as run:
        yield run


@pytest.fixture
async def private_postgres_run(
    request: pytest.FixtureRequest,
    servers: Servers,
    private_postgres: PrivatePostgres,
    tmp_path: Path,
) -> AsyncIterator[FaultRun]:
    """The shared Kafka, a private PostgreSQL (the test may stop it)."""
    url, drop = await fresh_database(private_postgres.url)
    settings = fault_settings(servers.kafka_bootstrap_servers, url)
    try:
        async with FaultRun(request.node.name, settings, tmp_path) as run:
            yield run
    finally:
        await drop()
