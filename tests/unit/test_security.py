"""Security settings without servers: Kafka TLS and SASL options, secrets kept out of reprs and
logs. (tests/integration/test_security.py runs PostgreSQL over TLS and a whole worker's log.)"""

from __future__ import annotations

import io
import json
import logging
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from worker.config import Settings
from worker.logging import configure_logging
from worker.storage.database import dsn_with_sslmode, redact_dsn
from worker.transport.kafka_clients import security_options

KAFKA_SECRET = "kafka-Pa55-7f3a1c"
DB_SECRET = "db-Pa55-91e0b2"
DSN = f"postgresql://worker:{DB_SECRET}@db.internal:5432/unique_numbers"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, and a client certificate it signed, made with openssl."""
    if shutil.which("openssl") is None:  # pragma: no cover - openssl is a dependency of make test
        pytest.fail("openssl is needed (scripts/postgres.sh needs it too)")
    directory = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test Kafka CA",
        "-keyout", "ca.key", "-out", "ca.pem",
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=unique-numbers-worker",
        "-keyout", "client.key", "-out", "client.csr",
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "client.pem",
    )  # fmt: skip
    return {
        name: str(directory / name) for name in ("ca.pem", "ca.key", "client.pem", "client.key")
    }


def settings(**values: object) -> Settings:
    return Settings(kafka_bootstrap_servers="kafka-1:9093,kafka-2:9093", **values)  # type: ignore[arg-type]


def test_plaintext_has_neither_tls_nor_sasl() -> None:
    assert security_options(settings()) == {
        "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "PLAINTEXT",
    }


def test_ssl_verifies_the_brokers_against_the_given_ca_and_presents_the_client_certificate(
    tls_files: dict[str, str],
) -> None:
    options = security_options(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=tls_files["ca.pem"],
            kafka_ssl_certfile=tls_files["client.pem"],
            kafka_ssl_keyfile=tls_files["client.key"],
        )
    )
    assert set(options) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    subjects = [dict(item[0] for item in ca["subject"]) for ca in context.get_ca_certs()]
    assert {"commonName": "Test Kafka CA"} in subjects


def test_a_wrong_client_key_is_refused_at_start_not_at_the_first_connection(
    tls_files: dict[str, str],
) -> None:
    with pytest.raises(ssl.SSLError):
        security_options(
            settings(
                kafka_security_protocol="SSL",
                kafka_ssl_cafile=tls_files["ca.pem"],
                kafka_ssl_certfile=tls_files["client.pem"],
                kafka_ssl_keyfile=tls_files["ca.key"],  # not the client certificate's key
            )
        )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_ssl_gives_the_clients_tls_and_the_credentials(
    tls_files: dict[str, str], mechanism: str
) -> None:
    configured = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="unique-numbers",
        kafka_sasl_password=KAFKA_SECRET,
        kafka_ssl_cafile=tls_files["ca.pem"],
    )
    options = security_options(configured)
    assert options["security_protocol"] == "SASL_SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert options["sasl_mechanism"] == mechanism
    assert options["sasl_plain_username"] == "unique-numbers"
    assert options["sasl_plain_password"] == KAFKA_SECRET
    # aiokafka accepts them (it checks the protocol, the mechanism and the TLS context).
    producer = AIOKafkaProducer(**options)
    consumer = AIOKafkaConsumer(**options)
    await producer.stop()
    await consumer.stop()


def test_sasl_plaintext_has_no_tls() -> None:
    options = security_options(
        settings(
            kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="u",
            kafka_sasl_password=KAFKA_SECRET,
        )
    )
    assert "ssl_context" not in options
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"


def test_an_unknown_protocol_or_sslmode_is_refused() -> None:
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        settings(kafka_security_protocol="TLS")
    with pytest.raises(ValidationError, match="database_sslmode"):
        settings(database_sslmode="on")


def test_secrets_from_the_environment_never_show_in_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "unique-numbers")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", KAFKA_SECRET)
    monkeypatch.setenv("DATABASE_URL", DSN)
    monkeypatch.setenv("DATABASE_SSLMODE", "verify-full")
    configured = Settings()

    assert configured.kafka_sasl_password is not None
    assert configured.kafka_sasl_password.get_secret_value() == KAFKA_SECRET
    assert configured.database_url.get_secret_value() == DSN
    assert configured.database_sslmode == "verify-full"
    shown = [
        repr(configured),
        str(configured),
        str(configured.model_dump()),
        configured.model_dump_json(),
    ]
    for text in shown:
        assert KAFKA_SECRET not in text
        assert DB_SECRET not in text


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (DSN, "postgresql://worker:***@db.internal:5432/unique_numbers"),
        (
            "postgresql://worker:p%40ss%2Fw%3Ard@db:5432/n?sslmode=require",
            "postgresql://worker:***@db:5432/n?sslmode=require",
        ),
        ("postgresql://worker:p@ss@db/n", "postgresql://worker:***@db/n"),
        (
            "postgresql://worker@db/n?password=s3cret&sslmode=require",
            "postgresql://worker@db/n?password=***&sslmode=require",
        ),
        ("postgresql://db/n", "postgresql://db/n"),
    ],
)
def test_a_dsn_is_logged_without_its_password(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


def test_the_sslmode_setting_applies_unless_the_dsn_names_one() -> None:
    assert dsn_with_sslmode(DSN, "require").endswith("/unique_numbers?sslmode=require")
    assert dsn_with_sslmode(f"{DSN}?sslmode=disable", "require").endswith("?sslmode=disable")


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The worker's JSON logging, writing to a buffer; the set-up as it was after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging("json", "DEBUG")
    try:
        yield buffer
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)


def test_a_logged_traceback_shows_no_local_variables(json_logs: io.StringIO) -> None:
    def connect(dsn: str, password: str) -> None:
        raise ConnectionError("the server refused the connection")

    try:
        connect(DSN, DB_SECRET)
    except ConnectionError:
        structlog.get_logger("test").exception("database_failed")
    logging.getLogger("asyncpg.pool").warning("a library's record, with dsn %s", redact_dsn(DSN))
    err = json_logs.getvalue()
    first, second = [json.loads(text) for text in err.splitlines()]
    assert first["event"] == "database_failed"
    assert first["exception"][0]["exc_value"] == "the server refused the connection"
    assert [frame["name"] for frame in first["exception"][0]["frames"]][-1] == "connect"
    assert second["logger"] == "asyncpg.pool"
    assert DB_SECRET not in err
