"""The guarantees under faults: nothing lost, nothing handed out twice, one committed result
per command. Each test drives a mixed workload through Kafka into real worker processes
(`python -m worker run`), injects one kind of fault mid-run, then checks the history against
PostgreSQL (tests/integration/faults/history.py states the properties). Every test's figures
are printed in the "fault tests: figures" section at the end of the pytest output.

Faults of the workers run against the shared servers; a test that stops a server has a
private one (tests/integration/faults/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from tests.integration.faults.conftest import FaultRun
from tests.integration.faults.processes import (
    PrivateKafka,
    PrivatePostgres,
    WorkerProcess,
    in_thread_start,
    in_thread_stop,
)

pytestmark = pytest.mark.slow

# The longest a worker may take to exit after SIGTERM: its grace for the batch in hand
# (SHUTDOWN_GRACE_SECONDS, 5 s in these tests) and a few seconds to leave the group and close.
EXIT_BOUND = 10.0


@contextlib.asynccontextmanager
async def driving(
    run: FaultRun, wave: int = 5, every: float = 0.1, limit: int = 1500
) -> AsyncIterator[asyncio.Task[None]]:
    """The workload runs in the background for the body of the block (about 50 commands a
    second), then stops."""
    stop = asyncio.Event()
    task = asyncio.create_task(run.driver.run(stop, wave=wave, every=every, limit=limit))
    try:
        yield task
    finally:
        stop.set()
        await task


async def taken(*workers: WorkerProcess, times: int = 1, timeout: float = 60.0) -> None:
    """Until each worker has taken its partitions (`times` times since it started)."""
    for worker in workers:
        ok = await worker.wait_until_logged("partitions_taken", timeout, times)
        assert ok, f"{worker.name} took no partitions:\n{worker.tail()}"


async def stop_in_time(run: FaultRun, worker: WorkerProcess, why: str) -> float:
    """SIGTERM `worker`; it must exit with 0 within EXIT_BOUND. Returns how long it took."""
    started = time.monotonic()
    code = await worker.terminate(timeout=EXIT_BOUND + 20)
    took = time.monotonic() - started
    run.history.fault(f"SIGTERM {worker.name} {why}: exited {code} after {took:.1f}s")
    assert code == 0, f"{worker.name} exited {code}:\n{worker.tail()}"
    assert took <= EXIT_BOUND, f"{worker.name} took {took:.1f}s to exit:\n{worker.tail()}"
    return took


def db_url(run: FaultRun) -> str:
    return run.settings.database_url.get_secret_value()


async def test_worker_killed_with_sigkill_several_times(shared_run: FaultRun) -> None:
    """One worker, SIGKILLed three times at random moments mid-run and started again under
    the same instance id; the workload never pauses."""
    run = shared_run
    rng = random.Random(1)
    worker = run.worker("w1")
    await taken(worker)
    async with driving(run):
        for attempt in range(3):
            await asyncio.sleep(rng.uniform(2.0, 4.0))
            worker.kill()
            await worker.wait(10)
            run.history.fault(f"SIGKILL {worker.name} (pid {worker.pid})")
            worker = run.worker(f"w1-restart{attempt + 1}", instance_id="w1")
            await taken(worker)
        await asyncio.sleep(2.0)
    run.conclude(await run.finish(db_url(run)))


async def test_three_workers_one_stopped_one_started_while_commands_are_in_flight(
    shared_run: FaultRun,
) -> None:
    """Three workers in one group over eight partitions per topic; twice, one leaves
    (SIGTERM) and a new one joins, each a rebalance while commands are in flight."""
    run = shared_run
    assert run.settings.kafka_topic_partitions == 8
    workers = [run.worker(f"w{i}") for i in (1, 2, 3)]
    await taken(*workers)
    async with driving(run):
        for leaving, joining in (("w2", "w4"), ("w1", "w5")):
            await asyncio.sleep(3.0)
            [worker] = [w for w in run.workers if w.name == leaving]
            await stop_in_time(run, worker, "(its partitions rebalanced to the others)")
            await asyncio.sleep(2.0)
            newcomer = run.worker(joining)
            run.history.fault(f"started {joining} (partitions rebalanced)")
            await taken(newcomer)
        await asyncio.sleep(2.0)
    run.history.note(
        "batches of a revoked partition handed back: "
        f"{run.logged('records_of_a_revoked_partition')}; records skipped as answered already: "
        f"{run.logged('records_already_answered')}"
    )
    run.conclude(await run.finish(db_url(run)))


async def test_kafka_broker_stopped_and_restarted(
    private_kafka_run: FaultRun, private_kafka: PrivateKafka
) -> None:
    """Two workers on a private broker. A burst of commands, then the broker goes down while
    they are in flight: once stopped cleanly, once killed with SIGKILL; each time it is
    started again two seconds later."""
    run = private_kafka_run
    workers = [run.worker("w1"), run.worker("w2")]
    await taken(*workers)
    async with driving(run):
        for how in ("stop", "kill"):
            await asyncio.sleep(2.0)
            async with run.driver.paused():  # the workload's producer waits for the broker
                try:
                    await run.driver.send_now(60)  # in flight when the broker goes
                    if how == "stop":
                        await in_thread_stop(private_kafka)
                        run.history.fault("Kafka broker stopped (SIGTERM, controlled shutdown)")
                    else:
                        await asyncio.to_thread(private_kafka.kill)
                        run.history.fault("Kafka broker killed (SIGKILL)")
                    await asyncio.sleep(2.0)
                finally:
                    await in_thread_start(private_kafka)
                run.history.fault("Kafka broker started again")
        await asyncio.sleep(2.0)
    run.conclude(await run.finish(db_url(run), result_timeout=120))


async def test_postgres_stopped_and_restarted(
    private_postgres_run: FaultRun, private_postgres: PrivatePostgres
) -> None:
    """Two workers on a private PostgreSQL, stopped (fast shutdown: sessions cut, open
    transactions rolled back) twice mid-run for five seconds. Commands wait and are retried:
    none is dead-lettered or answered with an error because of the outage (history.py)."""
    run = private_postgres_run
    workers = [run.worker("w1"), run.worker("w2")]
    await taken(*workers)
    async with driving(run):
        for _ in range(2):
            await asyncio.sleep(3.0)
            try:
                await in_thread_stop(private_postgres)
                run.history.fault("PostgreSQL stopped (fast shutdown)")
                await asyncio.sleep(5.0)
            finally:
                await in_thread_start(private_postgres)
            run.history.fault("PostgreSQL started again")
        await asyncio.sleep(2.0)
    waits = run.logged("database_unavailable")
    run.history.note(f"commands that waited for the database: {waits} retries logged")
    violations = await run.finish(db_url(run))
    if waits == 0:
        violations.append("no worker ever waited for the database: the outage was not felt")
    run.conclude(violations)


async def test_database_sessions_cut_mid_transaction(shared_run: FaultRun) -> None:
    """Two workers; every 0.2 s for ten seconds, every session of the run's database is cut
    (pg_terminate_backend: the server ends the session, as a failover or a proxy restart
    would, inside or between transactions). The server itself stays up. Every cut must be
    waited out and retried, never answered with an error."""
    run = shared_run
    workers = [run.worker("w1"), run.worker("w2")]
    await taken(*workers)
    db = await asyncpg.connect(db_url(run))
    try:
        async with driving(run):
            await asyncio.sleep(2.0)
            cut = 0
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:
                cut += await db.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                await asyncio.sleep(0.2)
            run.history.fault(f"{cut} worker sessions cut (pg_terminate_backend) over 10 s", cut)
            await asyncio.sleep(2.0)
    finally:
        await db.close()
    run.history.note(f"retries logged: {run.logged('database_unavailable')}")
    run.conclude(await run.finish(db_url(run)))


async def test_sigterm_finishes_or_hands_back_and_exits_in_bounded_time(
    private_postgres_run: FaultRun, private_postgres: PrivatePostgres
) -> None:
    """SIGTERM twice: once to a busy worker (it finishes the batch in hand and exits), once to
    a worker whose batch waits for a stopped database (it gives the batch back uncommitted
    and exits). Each must exit with 0 within EXIT_BOUND; its successor answers the rest."""
    run = private_postgres_run
    worker = run.worker("w1")
    await taken(worker)
    async with driving(run):
        await asyncio.sleep(3.0)
        await stop_in_time(run, worker, "while busy")
        worker = run.worker("w2")
        await taken(worker)
        await asyncio.sleep(3.0)
        try:
            await in_thread_stop(private_postgres)
            run.history.fault("PostgreSQL stopped")
            assert await worker.wait_until_logged("database_unavailable", 10), worker.tail()
            await stop_in_time(run, worker, "while its batch waits for the database")
        finally:
            await in_thread_start(private_postgres)
        run.history.fault("PostgreSQL started again")
        worker = run.worker("w3")
        await taken(worker)
        await asyncio.sleep(3.0)
    run.conclude(await run.finish(db_url(run)))


def reserve_partitions(worker: WorkerProcess, topic: str) -> list[int]:
    """The partitions of `topic` in the worker's latest assignment (from its log)."""
    [*_, latest] = worker.log_lines("partitions_assigned")
    pattern = re.compile(rf"^{re.escape(topic)}\[(\d+)\]$")  # logged as topic[n]
    return [int(m.group(1)) for p in latest["partitions"] if (m := pattern.search(p))]


async def waiting_on(db: asyncpg.Connection, xids: list[str], but: int = 0) -> int | None:
    """A session (its pid; not `but`) waiting for one of the transactions `xids` to end."""
    pid = await db.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
        " AND transactionid::text = ANY($1::text[]) AND pid <> $2 LIMIT 1",
        xids,
        but,
    )
    return None if pid is None else int(pid)


async def xid_of(db: asyncpg.Connection, pid: int) -> str:
    """The transaction id of the session `pid` ('' if it has none)."""
    xid = await db.fetchval("SELECT backend_xid::text FROM pg_stat_activity WHERE pid = $1", pid)
    return xid or ""


async def poll(check: Callable[[], Awaitable[int | None]], timeout: float, what: str) -> int:
    deadline = time.monotonic() + timeout
    while (found := await check()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return found


async def test_worker_paused_past_its_session_timeout_is_fenced_when_it_resumes(
    shared_run: FaultRun,
) -> None:
    """A zombie. w1 is made to hold a reserve in hand: the test holds the lock of its command
    id in PostgreSQL. w1 is then paused (SIGSTOP) past its session timeout, so the group gives
    its partitions to w2, which reaches the same commands and waits behind w1. The lock
    is let go, w1 resumes (SIGCONT) and applies the command first: its late commit must be
    fenced, and w2 answer the command from the stored result, once."""
    run = shared_run
    w1 = run.worker("w1")
    await taken(w1)
    w2 = run.worker("w2")
    await taken(w2)
    await taken(w1, times=2)  # the rebalance that brought w2 in
    [partition, *_] = reserve_partitions(w1, run.settings.topic_reserve)
    held = run.workload.reserve()
    db = await asyncpg.connect(db_url(run))
    try:
        async with driving(run):
            await asyncio.sleep(2.0)
            blocker = db.transaction()
            await blocker.start()
            await db.execute(
                "INSERT INTO processed_commands (command_id, command, payload_hash)"
                " VALUES ($1, 'reserve', '\\x00')",
                held.command_id,
            )
            blocker_xid = await db.fetchval(
                "SELECT backend_xid::text FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            )
            await run.driver.send([held], partition=partition)
            w1_pid = await poll(  # w1's session, waiting for the held command id
                lambda: waiting_on(db, [blocker_xid]), 15, "w1 to reach the held command"
            )
            w2_took = w2.logged("partitions_taken")
            w1.send(signal.SIGSTOP)
            run.history.fault(f"SIGSTOP w1 holding {held.command_id} (reserve:{partition})")
            await taken(w2, times=w2_took + 1, timeout=40)  # w1's session expired
            w1_xid = await xid_of(db, w1_pid)  # w1 may hold other commands of the batch
            await poll(
                lambda: waiting_on(db, [blocker_xid, w1_xid], but=w1_pid),
                15,
                "w2 to reach the held command",
            )
            await blocker.rollback()
            w1.send(signal.SIGCONT)
            run.history.fault("lock released, SIGCONT w1")
            await asyncio.sleep(4.0)
    finally:
        w1.send(signal.SIGCONT)
        await db.close()
    fenced = sum(
        1 for line in w1.log_lines("worker_restarting") if "ProducerFenced" in line["error"]
    )
    run.history.note(f"w1 fenced {fenced} times")
    violations = await run.finish(db_url(run))
    if fenced == 0:
        violations.append("w1 was never fenced: the zombie's commit was not attempted")
    run.conclude(violations)
