"""The worker's life: connect, migrate, create topics, process until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

import structlog
from aiokafka.errors import KafkaError

from worker.config import Settings
from worker.domain.ports import StorageUnavailable
from worker.domain.service import CommandService
from worker.storage.database import TRANSIENT_ERRORS, PgDatabase, redact_dsn
from worker.transport.answering import Answerer, RecordAnswerer
from worker.transport.kafka_clients import command_consumer
from worker.transport.processor import CommandProcessor, TransactionFailed
from worker.transport.topics import ensure_topics

log = structlog.get_logger(__name__)

_RESTARTABLE = (TransactionFailed, KafkaError, StorageUnavailable, OSError)


async def connect_database(settings: Settings, stop: asyncio.Event) -> PgDatabase | None:
    """Connect and migrate, waiting for the server if it is not up yet (None if stopped)."""
    dsn = settings.database_url.get_secret_value()
    delay = 0.5
    while not stop.is_set():
        try:
            database = await PgDatabase.connect(
                dsn, settings.database_sslmode, settings.database_pool_size
            )
            applied = await database.migrate()
            log.info("database_ready", migrations_applied=applied)
            return database
        except TRANSIENT_ERRORS as exc:
            log.warning("database_waiting", dsn=redact_dsn(dsn), error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
    return None


async def create_topics(settings: Settings, stop: asyncio.Event) -> bool:
    delay = 0.5
    while not stop.is_set():
        try:
            await ensure_topics(settings)
            return True
        except (KafkaError, OSError) as exc:
            log.warning("kafka_waiting", servers=settings.kafka_bootstrap_servers, error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
    return False


# How long stopping the consumer, or closing the lanes, may take before the worker goes on.
STOP_TIMEOUT = 45.0


async def _bounded(what: str, step: Coroutine[Any, Any, None]) -> None:
    """Run `step` for at most STOP_TIMEOUT seconds; past that, or failing, log it and go on
    (aiokafka's closing can wait for ever on a broker that is down)."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
    if not done:
        task.cancel()
        log.warning("stop_timed_out", step=what, seconds=STOP_TIMEOUT)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("stop_failed", step=what, error=repr(task.exception()))


async def process_commands(
    settings: Settings, answerer: RecordAnswerer, stop: asyncio.Event
) -> None:
    """Run the consume-apply-produce loop, starting it afresh after a Kafka or database failure.

    A fresh start resumes from the committed offsets, so a batch whose transaction failed is
    delivered again and answered from the command log.
    """
    topics = list(settings.command_topics())
    while not stop.is_set():
        consumer = command_consumer(settings)
        processor = CommandProcessor(settings, consumer, answerer)
        try:
            consumer.subscribe(topics=topics, listener=processor.rebalance_listener)
            await consumer.start()
            log.info("worker_started", topics=topics, group=settings.kafka_group_id)
            await processor.run(stop)
        except _RESTARTABLE as exc:
            if stop.is_set():
                break
            log.warning("worker_restarting", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        finally:
            # The lanes first (their batches in hand commit while this worker is still in the
            # group), then the consumer; neither may wait for ever on a broker that is gone.
            await _bounded("processor_close", processor.close())
            await _bounded("consumer_stop", consumer.stop())


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    database = await connect_database(settings, stop)
    if database is None:
        return
    try:
        if await create_topics(settings, stop):
            answerer = Answerer(settings, CommandService(database))
            await process_commands(settings, answerer, stop)
    finally:
        await database.close()
    log.info("worker_stopped")


def install_stop_signals(stop: asyncio.Event, grace_seconds: float) -> None:
    """SIGTERM or SIGINT: finish the batch in hand and exit; past `grace_seconds`, give it up
    uncommitted (it is delivered again to whichever worker takes the partitions)."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            return
        log.info("worker_stopping", signal=signal.Signals(signum).name, grace_seconds=grace_seconds)
        stop.set()
        if main_task is not None:
            loop.call_later(grace_seconds, main_task.cancel)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
