"""Kafka clients configured from the settings: security, sizes, transactions."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from worker.config import Settings

# Room for a record's own overhead (headers, key, batch framing) above the payload limit.
RECORD_OVERHEAD = 1024 * 1024


def security_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def command_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **security_options(settings),
        group_id=settings.kafka_group_id,
        client_id=f"unique-numbers-worker-{settings.worker_instance_id}",
        enable_auto_commit=False,  # offsets are committed in the result transaction
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=settings.message_max_bytes + RECORD_OVERHEAD,
        fetch_max_bytes=4 * (settings.message_max_bytes + RECORD_OVERHEAD),
    )


def transactional_id(settings: Settings, partition: TopicPartition) -> str:
    """The transactional id of the producer that answers one command partition: the same
    for every worker of the group, so that whichever owns the partition fences the others.
    (Grant the workers' principal TransactionalId access to the prefix `<group id>:`.)"""
    return f"{settings.kafka_group_id}:{partition.topic}:{partition.partition}"


def result_producer(settings: Settings, transactional_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **security_options(settings),
        client_id=f"unique-numbers-worker-{settings.worker_instance_id}",
        transactional_id=transactional_id,
        transaction_timeout_ms=settings.kafka_transaction_timeout_ms,
        acks="all",
        enable_idempotence=True,
        max_request_size=settings.message_max_bytes + RECORD_OVERHEAD,
        linger_ms=2,
    )


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**security_options(settings), client_id="unique-numbers-admin")
