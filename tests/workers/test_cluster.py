"""The replicated three-broker cluster of scripts/stack (STACK_KAFKA_BROKERS=3), on ports of its own beside the
suite's single broker: its quorum and active controller, topics with 3 replicas and 2 in sync, and what
worker_health reports while brokers are SIGKILLed and come back. The pipeline under such kills is
`make chaos CLUSTER=3`."""
import os
import subprocess
import time
import uuid

import pytest
from confluent_kafka import KafkaException

from workers import health
from workers.kafka import admin_client, create_topics, make_producer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORT, CONTROLLER_PORT = 29092, 29093
BROKERS = ",".join(f"127.0.0.1:{PORT + 2 * i}" for i in range(3))
ENV = {**os.environ, "STACK_KAFKA_BROKERS": "3", "STACK_KAFKA_PORT": str(PORT),
       "STACK_KAFKA_CONTROLLER_PORT": str(CONTROLLER_PORT),
       "STACK_KAFKA_CLUSTER_DIR": os.path.join(ROOT, "var", "kafka-cluster-test"), "STACK_KAFKA_HEAP": "384M"}
# About 70 s (three JVMs starting on two cores, then kills and catch-up): outside make test's 10 minutes, in
# `make test-cluster`.
pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.django_db(transaction=True)]


def stack(*args: str) -> str:
    done = subprocess.run([os.path.join(ROOT, "scripts", "stack"), *args], env=ENV, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def cluster():
    subprocess.run(["rm", "-rf", ENV["STACK_KAFKA_CLUSTER_DIR"]], check=True)
    stack("start-kafka")
    yield
    stack("kill-kafka", "all")  # its data goes next: no need for a clean shutdown
    subprocess.run(["rm", "-rf", ENV["STACK_KAFKA_CLUSTER_DIR"]], check=True)


@pytest.fixture
def on_cluster(cluster, settings):
    settings.KAFKA_BROKERS = BROKERS
    settings.KAFKA_TOPIC_PREFIX = f"c{uuid.uuid4().hex[:8]}."
    settings.KAFKA_TOPIC_REPLICATION, settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS = 3, 2


def wait_for(condition, timeout: float = 60.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except KafkaException:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"not reached in {timeout} s: {what}"
        time.sleep(0.5)


def controller() -> int:
    return int(stack("kafka-controller").strip())


def produced(count: int) -> int:
    """Events acknowledged with acks=all by an idempotent producer."""
    acked = []
    producer = make_producer()
    for n in range(count):
        producer.produce(names()[0], key=str(n).encode(), value=b"x",
                         on_delivery=lambda err, msg: acked.append(err is None))
    producer.flush(30)
    return sum(acked)


def names() -> list[str]:
    from workers.kafka import pipeline_topics, topic

    return [topic(name) for name in pipeline_topics()]


def test_three_nodes_elect_a_controller_and_topics_get_three_replicas_two_in_sync(on_cluster):
    status = stack("status")
    assert all(f"kafka node {i}: up (127.0.0.1:{PORT + 2 * (i - 1)})" in status for i in (1, 2, 3)), status
    assert f"kafka active controller: node {controller()}" in status

    create_topics(partitions=3)
    metadata = admin_client().list_topics(timeout=10)
    for name in names():
        assert {len(p.replicas) for p in metadata.topics[name].partitions.values()} == {3}
    found = health.replication(names())
    assert found.healthy and not found.under_replicated and found.partitions == 3 * len(names())
    assert produced(100) == 100


def test_worker_health_sees_a_killed_broker_and_its_return_while_writes_go_on(on_cluster):
    create_topics(partitions=3)
    single = [f"{names()[0]}-single"]
    create_topics(single, partitions=3, replication=1)  # one replica per partition: offline with its broker
    victim = controller()  # the active controller itself
    stack("kill-kafka", str(victim))
    degraded = wait_for(lambda: (r := health.replication([*names(), *single])).under_replicated and r.offline and r,
                        what="the dead broker's replicas out of sync")
    assert all("of [1, 2, 3]" in where for where in degraded.under_replicated)
    assert all(where.startswith(single[0]) for where in degraded.offline)
    assert wait_for(lambda: controller() != victim, what="a new controller")
    assert produced(100) == 100  # two replicas in sync: acks=all still succeeds

    stack("start-kafka", str(victim))
    wait_for(lambda: (r := health.replication([*names(), *single])).healthy and not r.under_replicated,
             timeout=90, what="every replica back in sync")
