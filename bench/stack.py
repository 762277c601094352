"""The stack under test: a database and topics of the benchmark's own, the worker as a
subprocess (`python -m worker run`) whose memory is watched, and a client that sends
commands and timestamps their results."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from worker.config import Settings
from worker.storage.migrations import migrate
from worker.transport.kafka_clients import RECORD_OVERHEAD
from worker.transport.topics import ensure_topics

COMMAND_ID_HEADER = "command-id"


@dataclass(frozen=True)
class Servers:
    kafka: str
    database_url: str

    @classmethod
    def from_env(cls) -> Servers:
        kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        database = os.environ.get("DATABASE_URL")
        if not kafka or not database:
            raise SystemExit(
                "KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL are not set: run `make bench`, "
                "or `bash scripts/services.sh up && . .run/env` first"
            )
        return cls(kafka, database)


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


class BenchDatabases:
    """Databases named bench_<run>_<what>, created on demand and all dropped at the end."""

    def __init__(self, servers: Servers, run_id: str) -> None:
        self._servers = servers
        self._run_id = run_id
        self._created: list[str] = []

    def name(self, what: str) -> str:
        return f"bench_{self._run_id}_{what}"

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self._servers.database_url)

    async def create(self, what: str, template: str | None = None) -> str:
        """A migrated database (or a copy of `template`); returns its URL."""
        name = self.name(what)
        admin = await self._admin()
        try:
            if template is None:
                await admin.execute(f'CREATE DATABASE "{name}"')
            else:
                # The template must have no session: autovacuum may hold one for a moment.
                for attempt in range(50):
                    try:
                        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                        break
                    except asyncpg.ObjectInUseError:
                        if attempt == 49:
                            raise
                        await asyncio.sleep(0.2)
        finally:
            await admin.close()
        self._created.append(name)
        url = with_database(self._servers.database_url, name)
        if template is None:
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()
        return url

    async def drop(self, name: str) -> None:
        admin = await self._admin()
        try:
            # Without FORCE (which needs the right to end other roles' sessions): a worker we
            # stopped may take a moment to close its connections.
            for attempt in range(100):
                try:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    break
                except asyncpg.ObjectInUseError:
                    if attempt == 99:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await admin.close()
        with contextlib.suppress(ValueError):
            self._created.remove(name)

    async def drop_all(self) -> None:
        for name in list(self._created):
            await self.drop(name)


def bench_settings(servers: Servers, database_url: str, prefix: str, partitions: int) -> Settings:
    return Settings(
        kafka_bootstrap_servers=servers.kafka,
        database_url=SecretStr(database_url),
        database_sslmode="disable",
        kafka_group_id=f"{prefix}worker",
        kafka_topic_partitions=partitions,
        topic_load_json=f"{prefix}load-json",
        topic_load_excel=f"{prefix}load-excel",
        topic_list=f"{prefix}list",
        topic_reserve=f"{prefix}reserve",
        topic_mark_used=f"{prefix}mark-used",
        topic_results=f"{prefix}results",
        topic_dead_letter=f"{prefix}dead-letter",
        worker_instance_id=f"{prefix}w1",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the environment of a worker subprocess."""
    values = settings.model_dump()
    env = {}
    for key, value in values.items():
        if value is not None:
            plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[key.upper()] = str(plain)
    return env


async def delete_topics(settings: Settings, names: Iterable[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [n for n in names if n in existing]
        if doomed:
            await admin.delete_topics(doomed)
        with contextlib.suppress(Exception):
            await admin.delete_consumer_groups([settings.kafka_group_id])
    finally:
        await admin.close()


def all_topics(settings: Settings) -> list[str]:
    return [
        *settings.command_topics(),
        settings.topic_results,
        settings.topic_dead_letter,
    ]


class MemoryWatch:
    """Samples a process's memory every 20 ms in a thread: its RSS, plus the pages of its own
    of any child (the spreadsheet reader is a forked child: its RSS would count the pages it
    shares with the worker twice, so its USS is added). `peak` is the largest such sum, or the
    worker's own high-water mark (VmHWM) if that is larger."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_sampled = 0
        self.peak_children = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(self._pid)
            while not self._stop.wait(0.02):
                children = 0
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        children += child.memory_full_info().uss
                self.peak_children = max(self.peak_children, children)
                self.peak_sampled = max(self.peak_sampled, proc.memory_info().rss + children)

    def reset(self) -> None:
        """Start a new peak: the sampled one, and the kernel's high-water mark."""
        self.peak_sampled = 0
        self.peak_children = 0
        with contextlib.suppress(OSError):
            Path(f"/proc/{self._pid}/clear_refs").write_text("5")

    def high_water_mark(self) -> int:
        """The worker process's own peak RSS (VmHWM), children not included."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self._pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def peak(self) -> int:
        return max(self.high_water_mark(), self.peak_sampled)

    def stop(self) -> None:
        self._stop.set()


class WorkerProcess:
    """`python -m worker run` with the benchmark's settings; its log goes to a file."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        profile: Path | None = None,
        source: Path | None = None,
        module: tuple[str, ...] = ("worker", "run"),
        **env: str,
    ) -> None:
        self._settings = settings
        self._module = module
        self._log_path = log_path
        self._profile = profile
        self._source = source
        self._env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.memory: MemoryWatch | None = None

    def start(self) -> None:
        env = {**os.environ, **settings_env(self._settings), "LOG_FORMAT": "json", **self._env}
        if self._source is not None:  # another checkout of the worker, to compare
            env["PYTHONPATH"] = str(self._source)
        command = [sys.executable, "-m", *self._module]
        if self._profile is not None:
            py_spy = Path(sys.executable).with_name("py-spy")
            command = [
                str(py_spy),
                "record",
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(self._profile),
                "--",
                *command,
            ]
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self._log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603
            command, env=env, stdout=log, stderr=log, cwd=self._source
        )
        pid = self.proc.pid
        if self._profile is not None:
            time.sleep(1.0)  # py-spy starts the worker as its child
            children = psutil.Process(pid).children()
            pid = children[0].pid if children else pid
        self.memory = MemoryWatch(pid)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            target = self.proc.pid
            if self._profile is not None:
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(target).children()
                    target = children[0].pid if children else target
            os.kill(target, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.memory is not None:
            self.memory.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Sent:
    at: float
    name: str


@dataclass
class ResultLog:
    """Results read, by command id: when (perf_counter) and the parsed body."""

    read_at: dict[str, float] = field(default_factory=dict)
    # When the worker's producer took the result (its CreateTime), on the perf_counter scale.
    created_at: dict[str, float] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def codes(self, ids: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for command_id in ids:
            body = self.bodies.get(command_id)
            code = (
                "missing" if body is None else ("ok" if body["success"] else body["error"]["code"])
            )
            out[code] = out.get(code, 0) + 1
        return out


class BenchClient:
    """Sends commands (non-blocking) and reads the results topic in the background."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            acks="all",
            linger_ms=0,
            max_request_size=settings.message_max_bytes + RECORD_OVERHEAD,
            max_batch_size=256 * 1024,
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=5,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        self.results = ResultLog()
        self._reader: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.sent_at: dict[str, float] = {}

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        topic = self.settings.topic_results
        partitions = self.consumer.partitions_for_topic(topic)
        while not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:
            await self.consumer.position(tp)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.producer.stop()
        await self.consumer.stop()

    async def _read(self) -> None:
        results = self.results
        while True:
            batch = await self.consumer.getmany(timeout_ms=100, max_records=20_000)
            now = time.perf_counter()
            clock = time.time() - now  # wall clock minus perf_counter
            for records in batch.values():
                for record in records:
                    command_id = ""
                    for key, value in record.headers or ():
                        if key == COMMAND_ID_HEADER:
                            command_id = value.decode()
                    results.read_at.setdefault(command_id, now)
                    results.created_at.setdefault(command_id, record.timestamp / 1000 - clock)
                    results.counts[command_id] = results.counts.get(command_id, 0) + 1
                    results.bodies[command_id] = json.loads(record.value)
            if batch:
                self._arrived.set()

    def topic(self, name: str) -> str:
        return {v.value: k for k, v in self.settings.command_topics().items()}[name]

    async def send(
        self, name: str, body: dict[str, Any] | bytes, key: str | None, command_id: str
    ) -> asyncio.Future[Any]:
        """Send without waiting for the broker; returns the delivery future."""
        value = body if isinstance(body, bytes) else encode_command(body, command_id)
        self.sent_at.setdefault(command_id, time.perf_counter())
        future: asyncio.Future[Any] = await self.producer.send(
            self.topic(name), value, key=key.encode() if key is not None else None
        )
        return future

    async def wait_for(self, ids: Sequence[str], timeout: float) -> bool:
        """Until every id has a result (True) or `timeout` seconds pass (False)."""
        deadline = time.perf_counter() + timeout
        pending = [i for i in ids if i not in self.results.read_at]
        while pending:
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 1.0))
            pending = [i for i in pending if i not in self.results.read_at]
        return True

    async def request(self, name: str, body: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        command_id = new_id()
        await self.send(name, body, key=None, command_id=command_id)
        if not await self.wait_for([command_id], timeout):
            raise TimeoutError(f"no result for {name} within {timeout}s")
        return self.results.bodies[command_id]


def encode_command(body: dict[str, Any], command_id: str) -> bytes:
    return json.dumps({"commandId": command_id, **body}, ensure_ascii=False).encode()


def new_id() -> str:
    return uuid.uuid4().hex


@contextlib.asynccontextmanager
async def bench_client(settings: Settings) -> AsyncIterator[BenchClient]:
    client = BenchClient(settings)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@dataclass
class Stack:
    """One scenario's database, topics and worker."""

    servers: Servers
    databases: BenchDatabases
    run_dir: Path
    name: str
    partitions: int = 4
    profile: bool = False
    worker_source: Path | None = None
    database_url: str = ""
    settings: Settings | None = None
    worker: WorkerProcess | None = None
    _starts: int = 0

    async def setup(self, database_url: str | None = None) -> Settings:
        self.database_url = database_url or await self.databases.create(self.name)
        prefix = f"bench-{self.databases.name(self.name)}."
        self.settings = bench_settings(self.servers, self.database_url, prefix, self.partitions)
        await ensure_topics(self.settings)
        return self.settings

    def start_worker(
        self, module: tuple[str, ...] = ("worker", "run"), **env: str
    ) -> WorkerProcess:
        """`python -m worker run` (or `module`, e.g. ("bench.echo",)) on this stack."""
        assert self.settings is not None
        self._starts += 1
        profile = self.run_dir / f"profile-{self.name}-{self._starts}.txt" if self.profile else None
        self.worker = WorkerProcess(
            self.settings,
            self.run_dir / f"worker-{self.name}.log",
            profile,
            self.worker_source,
            module,
            **env,
        )
        self.worker.start()
        return self.worker

    async def ready(self, client: BenchClient, timeout: float = 90) -> None:
        """Until the worker answers (its group has joined and it owns the partitions)."""
        await client.request("list", {"variantId": "warm-up"}, timeout=timeout)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    async def teardown(self) -> None:
        self.stop_worker()
        if self.settings is not None:
            with contextlib.suppress(Exception):
                await delete_topics(self.settings, all_topics(self.settings))
        await self.databases.drop(self.databases.name(self.name))
