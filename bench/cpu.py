"""Where the machine's CPU goes during a scenario: Kafka, PostgreSQL, the worker, the
benchmark's own client and anything else, in percent of one core (200% is both cores)."""

from __future__ import annotations

import contextlib
import os
import time

import psutil


def _group(proc: psutil.Process, worker_pid: int | None) -> str:
    if proc.pid == os.getpid():
        return "benchmark client"
    with contextlib.suppress(psutil.Error):
        if worker_pid is not None and (
            proc.pid == worker_pid or worker_pid in {p.pid for p in proc.parents()}
        ):
            return "worker"
        name = proc.name()
        if name.startswith("postgres"):
            return "PostgreSQL"
        if name == "java" and "kafka.Kafka" in " ".join(proc.cmdline()):
            return "Kafka"
    return "other"


def _cpu_seconds() -> dict[int, tuple[psutil.Process, float]]:
    out: dict[int, tuple[psutil.Process, float]] = {}
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            out[proc.pid] = (proc, times.user + times.system)
    return out


class CpuSplit:
    """`start()`, then `stop()` returns {group: percent of one core} over the interval: the
    processes alive at its end (all the time of those born during it, such as PostgreSQL's
    backends for the worker's connections; a process that ended during it is not counted)."""

    def __init__(self, worker_pid: int | None) -> None:
        self._worker_pid = worker_pid
        self._start: dict[int, tuple[psutil.Process, float]] = {}
        self._started = 0.0

    def start(self) -> None:
        self._start = _cpu_seconds()
        self._started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        end = _cpu_seconds()
        elapsed = time.perf_counter() - self._started
        split: dict[str, float] = {}
        for pid, (proc, seconds) in end.items():
            before = self._start.get(pid)
            # A pid seen at the start is the same process if its start time is the same.
            same = before is not None and before[0].create_time() == proc.create_time()
            used = seconds - before[1] if same and before is not None else seconds
            group = _group(proc, self._worker_pid)
            split[group] = split.get(group, 0.0) + used / elapsed * 100
        return {k: round(v) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}


def describe(split: dict[str, float]) -> str:
    return ", ".join(f"{group} {percent:.0f}%" for group, percent in split.items())
