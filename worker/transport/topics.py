"""The topics of the contract, created with the sizes they need."""

from __future__ import annotations

import structlog
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from worker.config import Settings
from worker.transport.kafka_clients import DEAD_LETTER_MARGIN, RECORD_OVERHEAD, admin_client

log = structlog.get_logger(__name__)

_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Each topic's name and its settings. Loads, and dead-letter copies of them, are large."""
    large = {"max.message.bytes": str(settings.message_max_bytes + RECORD_OVERHEAD)}
    results = {"max.message.bytes": str(4 * 1024 * 1024)}
    dead_letters = {
        "max.message.bytes": str(settings.message_max_bytes + RECORD_OVERHEAD + DEAD_LETTER_MARGIN)
    }
    return {
        settings.topic_load_json: large,
        settings.topic_load_excel: large,
        settings.topic_list: {},
        settings.topic_reserve: {},
        settings.topic_mark_used: {},
        settings.topic_results: results,
        settings.topic_dead_letter: dead_letters,
    }


async def ensure_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=name,
                num_partitions=settings.kafka_topic_partitions,
                replication_factor=settings.kafka_replication_factor,
                topic_configs=configs,
            )
            for name, configs in topic_configs(settings).items()
            if name not in existing
        ]
        if not wanted:
            return []
        response = await admin.create_topics(wanted)
        created = []
        for topic_error in response.topic_errors:
            name, code = topic_error[0], topic_error[1]
            if code == 0:
                created.append(name)
            elif code != _TOPIC_ALREADY_EXISTS:
                raise for_code(code)(f"creating topic {name}: {topic_error[2:]}")
        log.info("topics_created", topics=created)
        return created
    finally:
        await admin.close()
