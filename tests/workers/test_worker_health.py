"""worker_health against the real broker: live, absent, lagging and stuck consumer groups."""
import time

import pytest
from django.core.management import CommandError, call_command

from purchases.stage import STAGE as PURCHASES
from tests.workers import support
from workers import health
from workers.kafka import admin_client

pytestmark = pytest.mark.django_db(transaction=True)


def target_of(consumer) -> health.Target:
    stage = consumer.stage
    return health.Target(stage.name, stage.kafka_group_id(), tuple(stage.topic_names()))


def joined(consumer, timeout: float = 30.0):
    """Poll until the group gave the consumer its partitions (it is then an active member)."""
    support.poll_until(consumer, lambda: bool(consumer.consumer.assignment()), timeout)
    return consumer


def test_a_group_with_a_live_consumer_that_keeps_up_is_healthy(make_consumer_for, group_id):
    consumer = joined(make_consumer_for())
    events = [support.purchase_created(i) for i in range(1, 4)]
    support.produce_events(events)
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 3)

    result = health.check(target_of(consumer), max_lag=0)

    assert result.healthy, result.line()
    assert (result.snapshot.members, result.snapshot.lag, result.snapshot.state) == (1, 0, "STABLE")
    assert result.snapshot.committed[(support.topic("purchase-created"), 0)] == 3


def test_a_group_without_consumers_is_unhealthy(make_consumer_for):
    consumer = joined(make_consumer_for())
    target = target_of(consumer)
    consumer.close()  # the worker died: the group is left without members

    result = health.check(target, max_lag=1_000)

    assert not result.healthy
    assert result.snapshot.members == 0
    assert "no active members" in result.line()


def test_a_group_that_never_existed_is_unhealthy(topic_prefix, group_id):
    target = health.Target("ghost", topic_prefix + group_id, (topic_prefix + "purchase-created",))
    result = health.check(target, max_lag=1_000)
    assert not result.healthy
    assert result.snapshot.members == 0


def test_a_missing_topic_is_reported_and_not_created(topic_prefix, group_id):
    missing = topic_prefix + "no-such-topic"
    result = health.check(health.Target("ghost", topic_prefix + group_id, (missing,)), max_lag=1_000)
    assert not result.healthy
    assert f"topic {missing} is missing" in result.line()
    assert missing not in admin_client().list_topics(timeout=10).topics  # looking did not create it


def test_lag_past_the_threshold_is_unhealthy_even_with_a_member(make_consumer_for):
    consumer = joined(make_consumer_for())
    support.produce_events([support.purchase_created(i) for i in range(1, 11)])  # produced, never consumed

    assert health.check(target_of(consumer), max_lag=50).healthy
    lagging = health.check(target_of(consumer), max_lag=5)
    assert not lagging.healthy
    assert lagging.snapshot.lag == 10
    assert "lag 10 > 5" in lagging.line()


def test_a_member_that_stopped_committing_is_stuck_and_one_that_commits_is_not(make_consumer_for, group_id):
    consumer = joined(make_consumer_for(batch_size=2))
    support.produce_events([support.purchase_created(i) for i in range(1, 7)])
    target = target_of(consumer)

    # the consumer is a member (its heartbeats go on) but does not poll: no offset moves
    stuck = health.check(target, max_lag=1_000, max_idle_seconds=1.5)
    assert not stuck.healthy
    assert "no offset committed for 1.5s with lag 6" in stuck.line()

    before = health.snapshot(target)
    consumer.poll_once()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") >= 2)
    after = health.snapshot(target)
    verdict = health.evaluate(target, after, max_lag=1_000, earlier=before, idle_seconds=1.5)
    assert after.lag < before.lag
    assert verdict.healthy, verdict.line()


def test_an_unreachable_broker_is_reported_not_raised(settings, topic_prefix):
    target = health.Target("x", "g", (topic_prefix + "purchase-created",))
    settings.KAFKA_BROKERS = "127.0.0.1:1"
    started = time.monotonic()
    result = health.check(target, max_lag=0, timeout=1.0)
    assert not result.healthy
    assert result.snapshot.state == "UNKNOWN"
    assert "broker query failed" in result.line()
    assert time.monotonic() - started < 10


def test_command_exits_non_zero_and_names_the_unhealthy_groups(topic_prefix, capsys):
    with pytest.raises(CommandError, match="unhealthy: allocations, cache, dead_letters, purchases, sessions"):
        call_command("worker_health", "--all")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["allocations", "cache", "dead_letters", "purchases", "sessions",
                                                   "kafka"]  # the topics' replicas: healthy here
    assert lines[-1].endswith("offline=0 OK")
    assert f"group={topic_prefix}purchase-creation-workers" in lines[3]


def test_command_succeeds_for_a_stage_whose_worker_runs(make_consumer_for, topic_prefix, capsys):
    joined(make_consumer_for(PURCHASES))
    call_command("worker_health", "--stage", "purchases", "--max-lag", "0")
    out = capsys.readouterr().out
    assert out.startswith(f"purchases group={topic_prefix}purchase-creation-workers state=STABLE members=1 lag=0 OK")


def test_a_given_admin_client_is_the_only_one_used(make_consumer_for, monkeypatch):
    """An AdminClient is falsy (its len() is 0), so `client or admin_client()` made a new client, with its threads,
    connection and SCRAM handshake, on every look: 11-15 ms of CPU each in the bench's 0.1 s lag polls."""
    from workers import console

    consumer = joined(make_consumer_for())
    client = admin_client()
    assert not client  # why the guard below matters

    def second_client():
        raise AssertionError("a second admin client was made")

    monkeypatch.setattr(health, "admin_client", second_client)
    monkeypatch.setattr(console, "admin_client", second_client)
    target = target_of(consumer)
    assert health.snapshot(target, client=client).members == 1
    assert health.check(target, max_lag=0, client=client).snapshot.members == 1
    assert health.replication(list(target.topics), client=client).healthy
    assert console.pipeline(client=client)
