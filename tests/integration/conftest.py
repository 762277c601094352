"""Fixtures over the real servers: a migrated database per test (cloned from a template, as
procrastinate does), topics of its own per test, and the worker running in-process."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tests.integration.servers import Servers, real_servers
from worker.app import run_worker
from worker.client import CommandClient
from worker.config import Settings
from worker.storage.migrations import migrate
from worker.transport.kafka_clients import admin_client
from worker.transport.topics import ensure_topics, topic_configs

TEMPLATE_DB = f"unique_numbers_template_{uuid.uuid4().hex[:8]}"


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    with real_servers() as found:
        yield found


@pytest.fixture(scope="session")
async def template_database(servers: Servers) -> AsyncIterator[str]:
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
        conn = await asyncpg.connect(with_database(servers.database_url, TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield TEMPLATE_DB
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database_url(servers: Servers, template_database: str) -> AsyncIterator[str]:
    name = f"unique_numbers_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(servers.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
        yield with_database(servers.database_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


def make_settings(
    servers: Servers, database_url: str, prefix: str, **overrides: object
) -> Settings:
    values: dict[str, object] = {
        "kafka_bootstrap_servers": servers.kafka_bootstrap_servers,
        "database_url": database_url,
        "database_sslmode": "disable",
        "kafka_group_id": f"{prefix}worker",
        "kafka_topic_partitions": 4,
        "log_format": "console",
        "topic_load_json": f"{prefix}load-json",
        "topic_load_excel": f"{prefix}load-excel",
        "topic_list": f"{prefix}list",
        "topic_reserve": f"{prefix}reserve",
        "topic_mark_used": f"{prefix}mark-used",
        "topic_results": f"{prefix}results",
        "topic_dead_letter": f"{prefix}dead-letter",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def delete_topics(settings: Settings) -> None:
    """The test's topics, so that the broker does not pile up thousands of partitions over
    runs (their metrics alone kept hundreds of megabytes of its heap live)."""
    admin = admin_client(settings)
    await admin.start()
    try:
        await admin.delete_topics(list(topic_configs(settings)))
    finally:
        await admin.close()


@pytest.fixture
async def settings(servers: Servers, database_url: str) -> AsyncIterator[Settings]:
    settings = make_settings(servers, database_url, f"t-{uuid.uuid4().hex[:10]}.")
    await ensure_topics(settings)
    yield settings
    with contextlib.suppress(Exception):  # a broker a test stopped: nothing to delete
        await delete_topics(settings)


class RunningWorkers:
    """Workers running in this process, each as a task with its own stop switch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._running: list[tuple[asyncio.Task[None], asyncio.Event]] = []

    def start(self, **overrides: object) -> asyncio.Event:
        stop = asyncio.Event()
        settings = self.settings.model_copy(
            update={"worker_instance_id": f"test-{uuid.uuid4().hex[:8]}", **overrides}
        )
        self._running.append((asyncio.create_task(run_worker(settings, stop)), stop))
        return stop

    async def stop_all(self) -> None:
        for _, stop in self._running:
            stop.set()
        for task, _ in self._running:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        self._running.clear()


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[RunningWorkers]:
    running = RunningWorkers(settings)
    yield running
    await running.stop_all()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[CommandClient]:
    async with CommandClient(settings) as client:
        yield client


@pytest.fixture
async def worker(workers: RunningWorkers) -> RunningWorkers:
    workers.start()
    return workers
