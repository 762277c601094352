"""Configuration, read from the environment (see the README's table)."""

from __future__ import annotations

import os
import socket
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.commands import CommandName

MESSAGE_MAX_BYTES = 16 * 1024 * 1024


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every setting has an environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:39092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    kafka_group_id: str = "unique-numbers-worker"
    # The client id of the worker's Kafka clients (transactional ids are per command partition).
    worker_instance_id: str = Field(default_factory=_default_instance_id)
    kafka_transaction_timeout_ms: int = 30_000
    # How long a rebalance waits for this worker to hand back its partitions: the batch in hand
    # is finished first, and it may be waiting for the database.
    kafka_rebalance_timeout_ms: int = 60_000
    kafka_max_batch_records: int = 500
    kafka_topic_partitions: int = 8
    kafka_replication_factor: int = 1
    message_max_bytes: int = MESSAGE_MAX_BYTES

    topic_load_json: str = "unique-numbers.load-json"
    topic_load_excel: str = "unique-numbers.load-excel"
    topic_list: str = "unique-numbers.list"
    topic_reserve: str = "unique-numbers.reserve"
    topic_mark_used: str = "unique-numbers.mark-used"
    topic_results: str = "unique-numbers.results"
    topic_dead_letter: str = "unique-numbers.dead-letter"

    # PostgreSQL; the DSN may hold a password and is never logged.
    database_url: SecretStr = SecretStr(
        "postgresql://unique_numbers:unique_numbers@127.0.0.1:45432/unique_numbers"
    )
    database_sslmode: Literal[
        "disable", "allow", "prefer", "require", "verify-ca", "verify-full"
    ] = "prefer"
    database_pool_size: int = 10
    database_retry_max_seconds: float = 5.0
    # After SIGTERM, how long the batch in hand may take before it is given up uncommitted.
    shutdown_grace_seconds: float = 20.0

    # Logging
    log_format: Literal["json", "console", "auto"] = "auto"
    log_level: str = "INFO"

    def command_topics(self) -> dict[str, CommandName]:
        return {
            self.topic_load_json: CommandName.LOAD_JSON,
            self.topic_load_excel: CommandName.LOAD_EXCEL,
            self.topic_list: CommandName.LIST,
            self.topic_reserve: CommandName.RESERVE,
            self.topic_mark_used: CommandName.MARK_USED,
        }
