"""Kafka clients configured from the settings: security, sizes, transactions."""

from __future__ import annotations

from typing import Any

import aiokafka.producer.sender
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from worker.config import Settings

FETCH_MAX_WAIT_MS = 10
RETRY_BACKOFF_MS = 5

# After a commit, the broker answers the next transaction's AddPartitionsToTxn with
# CONCURRENT_TRANSACTIONS until it has written the commit markers (a millisecond or two on a
# healthy broker); aiokafka then waits a fixed 20 ms (KAFKA-5477), which put 20 ms on every
# transaction, and so on every result. Retrying after 2 ms takes a transaction from ~25 ms
# to ~5 ms. (A module constant of aiokafka's sender: aiokafka is pinned below 0.15.)
aiokafka.producer.sender.BACKOFF_OVERRIDE = 0.002

# The most a result producer gathers for one partition in one produce request.
RESULT_BATCH_BYTES = 1024 * 1024

# Room for a record's own overhead (headers, key, batch framing) above the payload limit.
RECORD_OVERHEAD = 1024 * 1024
# Room for the headers a dead-letter copy adds (reason, code, source, command id) to a record
# that was as large as its topic takes: the copy must always fit, or the batch never commits.
DEAD_LETTER_MARGIN = 64 * 1024


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
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=settings.message_max_bytes + RECORD_OVERHEAD,
        fetch_max_bytes=4 * (settings.message_max_bytes + RECORD_OVERHEAD),
        # aiokafka keeps one fetch in flight per broker, and leaves out of it the partitions
        # whose records are still buffered: once those are consumed, their next fetch waits
        # for the one in flight, a long poll of up to fetch_max_wait_ms on the idle ones.
        # Kafka's default of 500 ms put hundreds of milliseconds on a result.
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
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
        max_request_size=settings.message_max_bytes + RECORD_OVERHEAD + DEAD_LETTER_MARGIN,
        linger_ms=2,
        # A batch's results in one produce request: with aiokafka's default of 16 KiB, a
        # partition's batch filled up every ~80 results, and the next send waited for it to
        # be sent and answered (one request in flight per partition with idempotence), so a
        # transaction of 500 results took a dozen round trips.
        max_batch_size=RESULT_BATCH_BYTES,
        # A transaction's first produce can reach the broker while it still writes the last
        # transaction's markers; the broker (KIP-890 verification) then answers
        # NOT_ENOUGH_REPLICAS, retriable, and the default 100 ms wait put 100 ms on results.
        retry_backoff_ms=RETRY_BACKOFF_MS,
    )


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**security_options(settings), client_id="unique-numbers-admin")
