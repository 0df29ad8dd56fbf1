"""Retention holds together: no prune wipes the dedup window, and topics never keep events past it."""
import pytest
from confluent_kafka.admin import ConfigResource
from django.core.management import CommandError, call_command

from tests.workers.support import set_topic_config
from workers.checks import limits_are_consistent
from workers.kafka import DAY_MS, admin_client, create_topics, topic
from workers.models import ProcessedEvent
from workers.outbox import prune


def _retention(name: str) -> int:
    client, resource = admin_client(), ConfigResource("topic", name)
    return int(client.describe_configs([resource])[resource].result(10)["retention.ms"].value)


@pytest.mark.django_db
@pytest.mark.parametrize(("args", "message"), [
    (["--outbox-days", "0"], "outbox retention must be at least 1 day, not 0"),
    (["--processed-days", "-3"], r"processed-event retention \(-3 days\) must be at least the topics' retention"),
    (["--processed-days", "2"], r"KAFKA_TOPIC_RETENTION_DAYS = 7 days"),
])
def test_prune_refuses_a_retention_that_would_delete_the_dedup_window(args, message, settings):
    settings.KAFKA_TOPIC_RETENTION_DAYS = 7
    ProcessedEvent.objects.create(consumer="g", event_id="00000000-0000-0000-0000-000000000001", event_type="X")
    with pytest.raises(CommandError, match=message):
        call_command("prune_worker_tables", *args)
    assert ProcessedEvent.objects.count() == 1
    with pytest.raises(ValueError):
        prune(outbox_days=0, processed_days=30)


def test_topics_keep_events_no_longer_than_the_dedup_window(topic_prefix, settings):
    settings.KAFKA_TOPIC_RETENTION_DAYS, settings.PROCESSED_EVENT_RETENTION_DAYS = 7, 30
    name = topic("purchase-created")
    assert _retention(name) == 7 * DAY_MS  # as the fixture's create_topics made it
    set_topic_config(name, "retention.ms", "-1")  # someone made it keep events forever
    assert create_topics()[name] == "retention lowered"
    assert _retention(name) == 7 * DAY_MS
    assert create_topics()[name] == "exists"


def test_the_system_check_refuses_topics_that_outlive_the_dedup_window(settings):
    settings.KAFKA_TOPIC_RETENTION_DAYS, settings.PROCESSED_EVENT_RETENTION_DAYS = 40, 30
    [error] = limits_are_consistent()
    assert error.id == "workers.E010" and "longer than the dedup window" in error.msg


def test_the_system_check_refuses_a_time_budget_near_the_poll_interval(settings):
    settings.WORKER_TIME_BUDGET_SECONDS = 200
    assert [e.id for e in limits_are_consistent()] == ["workers.E011"]
