"""Driving the worker at a fixed offered rate (open loop), and timing calls (closed loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.stack import BenchClient, new_id


async def open_loop(
    client: BenchClient,
    name: str,
    commands: list[tuple[str, dict[str, Any]]],
    per_second: float,
    parts: dict[str, list[float]] | None = None,
) -> tuple[list[float], dict[str, int]]:
    """Send `commands` ((key, body) pairs) at a fixed rate whatever the answers do. Latency
    counts from the time each command was due (so a stalled sender cannot hide a stall).

    `parts`, if given, receives the latency split at the result's CreateTime (when the
    worker's producer took it, before its Kafka transaction committed): "to result sent" and
    "commit to read"."""
    due: dict[str, float] = {}
    tag = new_id()[:6]
    start = time.perf_counter() + 0.05
    for i, (key, body) in enumerate(commands):
        at = start + i / per_second
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        command_id = f"ol-{tag}-{i}"
        due[command_id] = at
        await client.send(name, body, key=key, command_id=command_id)
    await client.wait_for(list(due), timeout=300)
    read_at = client.results.read_at
    latencies = [read_at[c] - t for c, t in due.items() if c in read_at]
    if parts is not None:
        created = client.results.created_at
        done = [c for c in due if c in read_at and c in created]
        parts.setdefault("to result sent", []).extend(created[c] - due[c] for c in done)
        parts.setdefault("commit to read", []).extend(read_at[c] - created[c] for c in done)
    return latencies, client.results.codes(due)


async def timed(
    calls: int, call: Callable[[int], Awaitable[object]], budget_s: float = 1e9, minimum: int = 5
) -> list[float]:
    """Seconds taken by each of up to `calls` sequential calls (stopping after `budget_s`
    seconds once `minimum` calls are done)."""
    took: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(calls):
        started = time.perf_counter()
        await call(i)
        took.append(time.perf_counter() - started)
        if len(took) >= minimum and time.perf_counter() > deadline:
            break
    return took
