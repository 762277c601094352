"""PostgreSQL over TLS as DATABASE_SSLMODE asks, and no credential in a worker's logs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

import asyncpg
import pytest

from schemas.commands import CommandName
from tests.integration.conftest import RunningWorkers
from tests.integration.servers import Servers
from tests.integration.test_operations import load_body
from worker.client import CommandClient
from worker.config import Settings
from worker.storage.database import PgDatabase

ROOT = Path(__file__).resolve().parents[2]
# The public certificate of the local server (scripts/postgres.sh), for sslmode=verify-full.
ROOT_CERT = Path(os.environ.get("RUN_DIR", ROOT / ".run")) / "postgres" / "root.crt"

SSL_OF_BACKENDS = """
    SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
"""


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(f"{k}={quote(v, safe='/')}" for k, v in params.items())
    return urlunsplit(parts._replace(query=query))


async def server_has_tls(database_url: str) -> bool:
    conn = await asyncpg.connect(with_params(database_url, sslmode="disable"))
    try:
        return bool(await conn.fetchval("SHOW ssl") == "on")
    finally:
        await conn.close()


async def test_a_worker_with_sslmode_require_talks_to_postgresql_over_tls(
    workers: RunningWorkers, client: CommandClient, database_url: str
) -> None:
    if not await server_has_tls(database_url):
        pytest.skip("this PostgreSQL has ssl off (scripts/postgres.sh turns it on)")
    workers.start(database_sslmode="require")
    result = await client.request(CommandName.LOAD_JSON, load_body("1000", "TLS-1"))
    assert result["success"] is True

    # The server's view: every connection of the worker is encrypted (and a plain one is not).
    plain = await asyncpg.connect(with_params(database_url, sslmode="disable"))
    try:
        assert (
            await plain.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            is False
        )
        worker_connections = [r["ssl"] for r in await plain.fetch(SSL_OF_BACKENDS)]
        stored = await plain.fetchval("SELECT unique_number FROM unique_numbers")
    finally:
        await plain.close()
    assert worker_connections
    assert all(worker_connections)
    assert stored == "TLS-1"


async def test_sslmode_verify_full_checks_the_server_certificate(
    database_url: str, tmp_path: Path
) -> None:
    if not await server_has_tls(database_url) or not ROOT_CERT.exists():
        pytest.skip("needs the local PostgreSQL of scripts/postgres.sh, with TLS and root.crt")
    database = await PgDatabase.connect(
        with_params(database_url, sslrootcert=str(ROOT_CERT)), "verify-full", 1
    )
    try:
        async with database.transaction() as store:
            conn = store._conn
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await database.close()

    # Another certificate authority: the server's certificate is refused.
    openssl = await asyncio.create_subprocess_exec(
        "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-subj", "/CN=127.0.0.1", "-keyout", "other.key", "-out", "other.crt",
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert await openssl.wait() == 0
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        await asyncpg.connect(
            with_params(
                database_url, sslmode="verify-full", sslrootcert=str(tmp_path / "other.crt")
            )
        )
    assert "certificate verify failed" in str(refused.value)


# --- credentials never in the logs -----------------------------------------------------------


@contextlib.asynccontextmanager
async def role_with_password(
    servers: Servers, database_url: str, password: str
) -> AsyncIterator[str]:
    """A login role with `password` and the rights a worker needs on the test database; its
    DSN is yielded. The role is dropped after."""
    admin = await asyncpg.connect(servers.database_url)
    role = f"un_logs_{uuid.uuid4().hex[:8]}"
    database = urlsplit(database_url).path.lstrip("/")
    try:
        if not await admin.fetchval(
            "SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user"
        ):
            pytest.skip(
                "the role of DATABASE_URL may not CREATE ROLE (scripts/postgres.sh grants it)"
            )
        await admin.execute(
            await admin.fetchval(
                "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)",
                role,
                password,
            )
        )
        await admin.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')
        owner = await asyncpg.connect(database_url)
        try:
            await owner.execute(
                f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}";'
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}";'
                f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"'
            )
        finally:
            await owner.close()
        parts = urlsplit(database_url)
        netloc = f"{role}:{quote(password, safe='')}@{parts.hostname}:{parts.port}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            owner = await asyncpg.connect(database_url)
            try:
                await owner.execute(
                    f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}";'
                    f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}";'
                    f'REVOKE ALL ON SCHEMA public FROM "{role}"'
                )
            finally:
                await owner.close()
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute(f'REVOKE ALL ON DATABASE "{database}" FROM "{role}"')
            await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


def worker_environment(settings: Settings, dsn: str, kafka_password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_"))}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "KAFKA_GROUP_ID": settings.kafka_group_id,
            "KAFKA_TOPIC_PARTITIONS": str(settings.kafka_topic_partitions),
            # not used by a PLAINTEXT broker, and so never needed in a log either
            "KAFKA_SASL_USERNAME": "unique-numbers",
            "KAFKA_SASL_PASSWORD": kafka_password,
            "WORKER_INSTANCE_ID": f"logs-{uuid.uuid4().hex[:8]}",
            "DATABASE_URL": dsn,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
            "SHUTDOWN_GRACE_SECONDS": "10",
        }
    )
    for field in (
        "topic_load_json", "topic_load_excel", "topic_list", "topic_reserve",
        "topic_mark_used", "topic_results", "topic_dead_letter",
    ):  # fmt: skip
        env[field.upper()] = getattr(settings, field)
    return env


async def test_no_credential_appears_in_the_logs_of_a_worker(
    servers: Servers,
    database_url: str,
    settings: Settings,
    client: CommandClient,
    tmp_path: Path,
) -> None:
    token = uuid.uuid4().hex
    # A password of characters that a DSN must percent-encode, around a token found nowhere else.
    password = f"Pw{token}:/@%?#&='\" $(x)"
    kafka_password = f"Kp{uuid.uuid4().hex}"
    log_path = tmp_path / "worker.log"
    async with role_with_password(servers, database_url, password) as dsn:
        assert quote(password, safe="") in dsn  # the DSN holds it, percent-encoded
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "worker", "run",
                cwd=ROOT, env=worker_environment(settings, dsn, kafka_password),
                stdout=log_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                loaded = await client.request(
                    CommandName.LOAD_JSON, load_body("1000", "LOG-1", "LOG-2"), timeout=90
                )
                reserved = await client.request(
                    CommandName.RESERVE, {"variant_id": "1000", "type_unique_number": "UIT"}
                )
                unknown = await client.request(
                    CommandName.MARK_USED, {"variantId": "1000", "uniqueNumber": "NOT-LOADED"}
                )
                not_a_file = await client.request(
                    CommandName.LOAD_EXCEL,
                    {"fileName": "codes.xlsx", "upFile": base64.b64encode(b"%PDF-1.7").decode()},
                )
                await client.send_raw(
                    CommandName.RESERVE, b"\xff not json", headers=[("command-id", b"poison")]
                )
                poison = (await client.wait_for(["poison"]))["poison"]
            finally:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(process.wait(), 30)
                    except TimeoutError:
                        process.kill()
                        await process.wait()
    assert loaded["success"]
    assert reserved["success"]
    assert unknown["error"]["code"] == "NOT_FOUND"
    assert not_a_file["error"]["code"] == "BAD_FILE"
    assert poison["error"]["code"] == "DECODE_ERROR"
    assert process.returncode == 0

    log = log_path.read_text("utf-8", errors="replace")
    # The log is the worker's, and it did log the DSN (redacted) and every kind of answer.
    for event in ("database_connected", "worker_started", "command_refused", "command_rejected"):
        assert f'"{event}"' in log, event
    assert f"{urlsplit(dsn).username}:***@" in log
    for secret in (password, quote(password, safe=""), quote_plus(password), token, kafka_password):
        assert secret not in log, f"a credential is in the worker's log: {secret[:6]}..."
