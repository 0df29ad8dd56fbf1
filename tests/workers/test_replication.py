"""Replication settings and what worker_health says of the topics' replicas, on the single local broker (the
three-broker cluster's kills are in tests/workers/test_cluster.py and `make chaos CLUSTER=3`)."""
import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from tests.workers import support
from workers import health
from workers.kafka import pipeline_topics, topic

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_topic_with_fewer_replicas_in_sync_than_its_minimum_fails_worker_health(topic_prefix, capsys):
    names = [topic(name) for name in pipeline_topics()]
    assert health.replication(names).healthy  # one replica, a minimum of one: every partition fine

    support.set_topic_config(topic("purchase-created"), "min.insync.replicas", "2")  # writes now refused
    found = health.replication(names)
    assert not found.healthy and found.partitions == 2 * len(names)
    assert [where.split(" ")[0] for where in found.under_min_isr] == [
        f"{topic('purchase-created')}/0", f"{topic('purchase-created')}/1"]
    assert found.offline == [] and found.under_replicated == []
    with pytest.raises(CommandError, match="kafka partitions"):
        call_command("worker_health", "--all", "--max-lag", "1000000")
    assert "under_min_isr=2 offline=0 UNHEALTHY; UNDER MIN ISR:" in capsys.readouterr().out


@pytest.mark.parametrize(("replicas", "minimum", "ids"), [
    (1, 1, {"workers.W001", "workers.W002"}),
    (3, 1, {"workers.W002"}),
    (3, 2, set()),
    (3, 4, {"workers.E013"}),
])
def test_the_deploy_check_warns_below_three_replicas_and_two_in_sync(settings, replicas, minimum, ids):
    settings.KAFKA_TOPIC_REPLICATION, settings.KAFKA_TOPIC_MIN_INSYNC_REPLICAS = replicas, minimum
    found = {m.id for m in run_checks(include_deployment_checks=True, tags=["pipeline"])}
    assert found & {"workers.W001", "workers.W002", "workers.E013"} == ids
    if replicas == 1:  # not without --deploy: the local stack runs one broker by design
        assert not {m.id for m in run_checks(tags=["pipeline"])} & {"workers.W001", "workers.W002"}
