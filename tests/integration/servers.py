"""Where the real Kafka and PostgreSQL are: the servers `make test` started (environment),
or containers when a Docker engine answers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap_servers: str
    database_url: str


def _docker_answers() -> bool:
    try:
        done = subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=10)
        return done.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@contextmanager
def real_servers() -> Iterator[Servers]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    database = os.environ.get("DATABASE_URL")
    if kafka and database:
        yield Servers(kafka, database)
        return
    if not _docker_answers():
        raise RuntimeError(
            "these tests need a real Kafka and PostgreSQL: run them with `make test`, which starts "
            "both, or set KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, or have a Docker engine"
        )
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415 - only with Docker
    from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

    with (
        PostgresContainer("postgres:16", driver=None) as pg,
        KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka_container,
    ):
        yield Servers(kafka_container.get_bootstrap_server(), pg.get_connection_url())
