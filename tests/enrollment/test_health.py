"""/healthz and /readyz against the real PostgreSQL, Redis and Kafka; a dependency on a closed port fails."""
import copy
import socket
import threading
import time

import pytest
import requests

from enrollment import health

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released by us)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_down(settings):
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{closed_port()}/0"
    settings.CACHES = caches


@pytest.fixture
def kafka_down(settings):
    settings.KAFKA_BROKERS = f"127.0.0.1:{closed_port()}"
    settings.HEALTH_CHECK_TIMEOUT_SECONDS = 1.0


def test_readyz_is_200_with_every_check_ok_and_timed(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "redis", "kafka"}
    for result in body["checks"].values():
        assert result["status"] == "ok"
        assert isinstance(result["latency_ms"], float) and result["latency_ms"] >= 0
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_503_and_names_kafka_when_the_broker_is_unreachable(client, kafka_down):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["kafka"]
    assert body["checks"]["kafka"]["error"] == "KafkaException"
    assert body["checks"]["kafka"]["latency_ms"] < 5000  # the short timeout, not librdkafka's default
    assert body["checks"]["database"]["status"] == body["checks"]["redis"]["status"] == "ok"


def test_readyz_is_503_and_names_redis_when_redis_is_unreachable(client, redis_down):
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"]["error"] == "ConnectionError"
    assert body["checks"]["kafka"]["status"] == "ok"


def test_readyz_reports_every_failed_check_at_once(client, redis_down, kafka_down):
    assert client.get("/readyz").json()["failed"] == ["redis", "kafka"]


def test_healthz_answers_without_touching_any_dependency(client, redis_down, kafka_down, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_endpoints_accept_only_safe_methods(client):
    assert client.post("/healthz").status_code == 405
    assert client.head("/healthz").status_code == 200


def test_probes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/students/1/home").status_code == 301  # everything else is


def test_readyz_can_run_only_the_checks_asked_for(client, kafka_down):
    response = client.get("/readyz?check=database")
    assert response.status_code == 200
    assert list(response.json()["checks"]) == ["database"]
    both = client.get("/readyz?check=database,kafka&check=database")
    assert both.status_code == 503
    assert list(both.json()["checks"]) == ["database", "kafka"]


def test_readyz_rejects_an_unknown_check(client):
    response = client.get("/readyz?check=database,zookeeper")
    assert response.status_code == 400
    assert "zookeeper" in response.json()["error"]


def test_a_flood_of_readyz_requests_opens_one_broker_connection_a_second(live_server, monkeypatch):
    """/readyz is public: 60 concurrent requests reuse one Kafka check (the outcome is kept about a second)."""
    made = []
    real = health.AdminClient

    def counted(config):  # the real client, counted
        made.append(1)
        return real(config)

    monkeypatch.setattr(health, "AdminClient", counted)
    time.sleep(health.CHECKS["kafka"].seconds() + 0.1)  # nothing cached from other tests
    answers = []

    def ask() -> None:
        answers.append(requests.get(f"{live_server.url}/readyz?check=kafka", timeout=10).status_code)

    threads = [threading.Thread(target=ask) for _ in range(60)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert answers == [200] * 60
    assert 1 <= len(made) <= int(elapsed / health.CHECKS["kafka"].seconds()) + 1
