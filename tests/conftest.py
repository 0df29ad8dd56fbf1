"""Fixtures for the real services: the stack is started (or reused) once per test session by the project's own
script; each test gets its own topic prefix and consumer groups, so tests never see each other's messages."""
import os
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def secrets_env() -> dict[str, str]:
    """The secrets a subprocess with DEBUG off needs (the checkout's, loaded by settings.test into os.environ)."""
    from settings.local_secrets import NAMES

    return {name: os.environ[name] for name in (*NAMES, "KAFKA_USERNAME", "KAFKA_PASSWORD")}


# What each test needs beyond PostgreSQL, so a suite can be picked by it (`pytest -m "not kafka and not e2e"`
# runs on PostgreSQL and Redis alone). Tests say it with a fixture of the service, or with the marker.
SERVICE_FIXTURES = {"topic_prefix": "kafka", "redis_cache": "redis"}


def pytest_collection_modifyitems(items):
    for item in items:
        path = item.path.as_posix()
        if "/tests/e2e/" in path:
            item.add_marker("e2e")
            item.add_marker("kafka")
        if "/tests/browser/" in path:
            item.add_marker("browser")
        for fixture, marker in SERVICE_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)


def pytest_sessionstart(session):
    if os.environ.get("STACK_EXTERNAL") != "1":
        subprocess.run([str(ROOT / "scripts" / "stack"), "up"], check=True)


@pytest.fixture
def topic_prefix(settings):
    """A fresh topic namespace for this test; every topic of the pipeline exists in it."""
    from confluent_kafka import KafkaException

    from workers import kafka_acls
    from workers.kafka import admin_client, create_topics

    prefix = settings.KAFKA_TOPIC_PREFIX = f"t{uuid.uuid4().hex[:10]}."
    names = list(create_topics(partitions=2))
    client = admin_client()  # the real broker, even if the test points settings elsewhere
    yield prefix
    # Leave the broker as we found it: thousands of leftover partitions slow every broker restart.
    try:
        leftovers = [name for name in client.list_topics(timeout=10).topics if name.startswith(prefix)]
        client.delete_topics(sorted(set(names) | set(leftovers)), operation_timeout=10)
        kafka_acls.remove(client, prefix)
    except KafkaException:  # the broker is restarting (a chaos test): the topics are only litter
        pass


@pytest.fixture
def group_id():
    return f"test-group-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_cache():
    from django.core.cache import cache

    cache.clear()
    yield cache
    cache.clear()
