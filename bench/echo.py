"""`python -m bench.echo`: the worker's transport with nothing behind it, a latency ceiling.

The same consumer, partition lanes and per-partition Kafka transactions as `python -m worker
run` (worker/transport/), configured from the same environment, but each command is answered
at once with a fixed success result: no decoding, no validation, no database. The open-loop
reserve scenario measures it at the same rate as the worker, in the same run, so the worker's
latency stands beside what the Kafka side alone costs on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import uvloop

from worker.app import install_stop_signals, process_commands
from worker.config import Settings
from worker.logging import configure_logging
from worker.transport.decoding import COMMAND_ID_HEADER
from worker.transport.records import OutgoingRecord, SourceRecord


class EchoAnswerer:
    """One fixed success result a record, keyed as the command and with its command id."""

    def __init__(self, settings: Settings) -> None:
        self._results = settings.topic_results

    async def answer(
        self, records: list[SourceRecord], stop: asyncio.Event
    ) -> list[OutgoingRecord]:
        out = []
        for record in records:
            command_id = str(json.loads(record.value or b"{}").get("commandId", ""))
            body = json.dumps({"commandId": command_id, "command": "echo", "success": True})
            out.append(
                OutgoingRecord(
                    topic=self._results,
                    key=record.key,
                    value=body.encode(),
                    headers=[(COMMAND_ID_HEADER, command_id.encode())],
                )
            )
        return out


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop, settings.shutdown_grace_seconds)
    with contextlib.suppress(asyncio.CancelledError):
        await process_commands(settings, EchoAnswerer(settings), stop)


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    uvloop.run(_run(settings))


if __name__ == "__main__":
    main()
