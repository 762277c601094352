"""Real processes for the fault tests: workers (`python -m worker run`), and private Kafka and
PostgreSQL servers that a test may stop and start (never the shared ones)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from worker.config import Settings

ROOT = Path(__file__).resolve().parents[3]


def worker_environment(settings: Settings, instance_id: str) -> dict[str, str]:
    """The environment of a worker process with these settings (every field explicit, so
    nothing of the test runner's environment leaks in)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ")}
    for name, value in settings.model_dump().items():
        if value is not None:
            plain = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[name.upper()] = str(plain)
    env["WORKER_INSTANCE_ID"] = instance_id
    env["LOG_FORMAT"] = "json"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """One `python -m worker run`, its output in `<log_dir>/<name>.log`."""

    def __init__(self, name: str, settings: Settings, log_dir: Path, instance_id: str) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._env = worker_environment(settings, instance_id)
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"],
            cwd=ROOT,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.poll()

    def send(self, signum: int) -> None:
        assert self._process is not None
        if self._process.poll() is None:
            self._process.send_signal(signum)

    async def wait(self, timeout: float) -> int | None:
        """Its exit code, or None if it is still running after `timeout` seconds."""
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while self._process.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)
        self._close_log()
        return self._process.returncode

    def log_lines(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of `event` this worker wrote so far."""
        needle = f'"event": "{event}"'
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if needle in line]

    def logged(self, event: str) -> int:
        return len(self.log_lines(event))

    async def wait_until_logged(self, event: str, timeout: float, times: int = 1) -> bool:
        """Until its log holds `times` lines of `event` (e.g. "partitions_taken")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.logged(event) >= times:
                return True
            if self.returncode is not None:
                return False
            await asyncio.sleep(0.1)
        return False

    async def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, and SIGKILL if it has not exited after `timeout` seconds."""
        self.send(signal.SIGTERM)
        code = await self.wait(timeout)
        if code is None:
            self.kill()
            await self.wait(10)
        return code

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGCONT)  # in case it was stopped
            self._process.kill()

    def reap(self) -> None:
        """Kill if still running and collect the exit status (for teardown)."""
        if self._process is not None:
            self.kill()
            self._process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 12, width: int = 300) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(line[:width] for line in text[-lines:])


def free_port(avoid: set[int] = frozenset()) -> int:  # type: ignore[assignment]
    """A loopback port nothing listens on, picked by the kernel."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def _run_script(script: str, action: str, env: dict[str, str], timeout: float) -> None:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/{script} {action} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )


def _private_run_dir(kind: str) -> Path:
    run_dir = Path(tempfile.mkdtemp(prefix=f"unique-numbers-faults-{kind}-"))
    run_dir.chmod(0o755)  # PostgreSQL runs as the postgres user and must reach its data dir
    return run_dir


@dataclass
class PrivateKafka:
    """A broker of this test run only (scripts/kafka.sh with its own RUN_DIR and ports),
    sharing the jars of the repo's broker."""

    run_dir: Path
    port: int
    controller_port: int

    @classmethod
    def create(cls) -> PrivateKafka:
        port = free_port()
        return cls(_private_run_dir("kafka"), port, free_port({port}))

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = {
            "RUN_DIR": str(self.run_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
        }
        libs = ROOT / ".run" / "kafka" / "libs"
        if libs.is_dir():
            env["KAFKA_LIBS_DIR"] = str(libs)
        return env

    def start(self) -> None:
        _run_script("kafka.sh", "start", self._env(), timeout=180)

    def stop(self) -> None:
        _run_script("kafka.sh", "stop", self._env(), timeout=90)

    def kill(self) -> None:
        """SIGKILL the broker's JVM (a crash: no controlled shutdown) and wait for its end."""
        pid = int((self.run_dir / "kafka" / "kafka.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert str(self.run_dir).encode() in cmdline, "the pid file names another process"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of this test run only (scripts/postgres.sh with its own RUN_DIR
    and port)."""

    run_dir: Path
    port: int

    @classmethod
    def create(cls) -> PrivatePostgres:
        return cls(_private_run_dir("postgres"), free_port())

    @property
    def url(self) -> str:
        return f"postgresql://unique_numbers:unique_numbers@127.0.0.1:{self.port}/unique_numbers"

    def _env(self) -> dict[str, str]:
        return {"RUN_DIR": str(self.run_dir), "PG_PORT": str(self.port)}

    def start(self) -> None:
        _run_script("postgres.sh", "start", self._env(), timeout=180)

    def stop(self) -> None:
        _run_script("postgres.sh", "stop", self._env(), timeout=90)

    def destroy(self) -> None:
        try:
            _run_script("postgres.sh", "reset", self._env(), timeout=90)
        finally:
            shutil.rmtree(self.run_dir, ignore_errors=True)


async def in_thread_stop(server: PrivateKafka | PrivatePostgres) -> None:
    await asyncio.to_thread(server.stop)


async def in_thread_start(server: PrivateKafka | PrivatePostgres) -> None:
    await asyncio.to_thread(server.start)
