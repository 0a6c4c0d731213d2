"""Redis as managed services run it: TLS (`rediss://`) with an ACL user and a certificate made here
(trustme), end to end through the API and a worker; and a Redis Cluster, which the worker refuses
at start with one line saying why, rather than failing on the first multi-key script."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from scripts.local_redis import RedisServer, free_port, start_redis_server
from src.domain.jobs import JobStatus
from src.infrastructure.redis_pool import create_redis_pool
from src.infrastructure.repository_factory import build_repository
from src.worker.settings import build_worker
from tests.conftest import app_client, make_settings, publish_deployment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
APP_USER, APP_PASSWORD = "clinic-app", "an-acl-password-for-tests"


@dataclass
class TlsRedis:
    server: RedisServer
    tls_port: int
    ca_path: Path

    def url(self, ca_path: Path | None = None, user: str = APP_USER, password: str = APP_PASSWORD) -> str:
        ca = ca_path or self.ca_path
        return (
            f"rediss://{user}:{password}@127.0.0.1:{self.tls_port}/0"
            f"?ssl_ca_certs={ca}&ssl_check_hostname=true"
        )


@pytest.fixture
def tls_redis(tmp_path: Path) -> TlsRedis:
    """redis-server with a TLS port (certificate for 127.0.0.1 from a test CA), the default user
    limited to PING (the plaintext readiness probe) and an ACL user with the queue's rights."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "redis.pem", tmp_path / "redis.key"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    tls_port = free_port()
    server = start_redis_server(
        tmp_path / "redis", None,
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert_path), "--tls-key-file", str(key_path),
        "--tls-ca-cert-file", str(ca_path), "--tls-auth-clients", "no",
        "--user", "default", "on", "nopass", "-@all", "+ping",
        "--user", APP_USER, "on", f">{APP_PASSWORD}", "~*", "&*", "+@all",
    )  # fmt: skip
    yield TlsRedis(server, tls_port, ca_path)  # type: ignore[misc]
    server.stop()


async def test_api_and_worker_run_a_job_over_tls_as_an_acl_user(tls_redis: TlsRedis, tmp_path: Path) -> None:
    """An appointment created through the API over TLS is normalized by a worker over TLS; the
    plaintext default user could not have done any of it."""
    settings = make_settings(tls_redis.url(), tmp_path)
    async with app_client(settings) as client:
        response = await client.post(
            "/api/v1/appointments",
            json={"paciente": "Maria Silva", "documento": "529.982.247-25",
                  "endereco": "R. das Flores 10, Centro, Sao Paulo - SP, 01310100",
                  "data_hora": "2026-12-01T14:30:00-03:00"},
        )  # fmt: skip
        assert response.status_code == 201, response.text
        assert response.json()["enqueue_status"] == "queued"
        job_id = response.json()["job_id"]
    await publish_deployment(settings)
    worker = build_worker(settings, burst=True, handle_signals=False)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    repository = build_repository(settings)
    await repository.init()
    try:
        record = await repository.get_job(job_id)
    finally:
        await repository.close()
    assert record is not None and record.status is JobStatus.SUCCEEDED
    plain = create_redis_pool(make_settings(tls_redis.server.url, tmp_path))
    try:
        with pytest.raises(Exception, match="no permissions"):
            await plain.get("anything")  # the default user: PING only
    finally:
        await plain.aclose(close_connection_pool=True)


def start_worker_process(redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "SQLITE_PATH": str(tmp_path / "store.sqlite3"),
           "WORKER_STATE_DIR": str(tmp_path / "state"), "APP_VERSION": "tls-test"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "workers.py", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_certificate_from_another_ca_stops_the_worker_with_the_reason(
    tls_redis: TlsRedis, tmp_path: Path
) -> None:
    other = trustme.CA()
    other_ca = tmp_path / "other-ca.pem"
    other.cert_pem.write_to_path(str(other_ca))
    result = start_worker_process(tls_redis.url(ca_path=other_ca), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "worker not started: Redis at ***@127.0.0.1" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr or "certificate verify failed" in result.stderr
    assert APP_PASSWORD not in result.stderr + result.stdout


def test_a_redis_cluster_is_refused_at_start(tmp_path: Path) -> None:
    """Cluster mode: the worker stops with one line naming it unsupported, before claiming."""
    # The cluster bus defaults to port + 10000, past 65535 for a high free port: name one.
    server = start_redis_server(
        tmp_path / "cluster",
        None,
        *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
        *("--cluster-port", str(free_port())),
    )
    try:
        result = start_worker_process(server.url, tmp_path)
    finally:
        server.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "is a Redis Cluster, which is not supported" in lines[0]
