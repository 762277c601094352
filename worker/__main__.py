"""`python -m worker run | migrate | create-topics`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

import uvloop

from worker.app import connect_database, create_topics, install_stop_signals, run_worker
from worker.config import Settings
from worker.logging import configure_logging


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop, settings.shutdown_grace_seconds)
    with contextlib.suppress(asyncio.CancelledError):
        await run_worker(settings, stop)


async def _migrate(settings: Settings) -> None:
    database = await connect_database(settings, asyncio.Event())
    if database is not None:
        await database.close()


async def _create_topics(settings: Settings) -> None:
    await create_topics(settings, asyncio.Event())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument(
        "action", choices=["run", "migrate", "create-topics"], nargs="?", default="run"
    )
    args = parser.parse_args()
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    action = {"run": _run, "migrate": _migrate, "create-topics": _create_topics}[args.action]
    # uvloop: the event loop's own work (socket reads and writes, callbacks) in C.
    uvloop.run(action(settings))


if __name__ == "__main__":
    main()
