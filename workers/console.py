"""The pipeline console's data (the page is workers/console_admin.py): for each stage of the registry, what the
broker says now (group state, members, lag per partition) and what its consumers wrote lately (StageSample:
events/s, breaker, last commit, 15 minutes of history), with its pause, pending retries and dead letters.

Every broker request has a short timeout: with Kafka down the page still answers, showing the error, and the
PostgreSQL half of the picture."""
from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from django.db.models import Count
from django.utils import timezone

from workers import health, ordering
from workers.kafka import admin_client
from workers.models import DeadLetter, StagePause, StageSample
from workers.registry import stages

BROKER_TIMEOUT_SECONDS = 3.0
HISTORY = datetime.timedelta(minutes=15)
BUCKET_SECONDS = 15
RATE_WINDOW = datetime.timedelta(minutes=1)
FRESH = datetime.timedelta(seconds=30)  # a member's sample older than this says nothing about its breaker


@dataclass
class Partition:
    name: str  # topic[partition]
    lag: int
    owner: str  # the member's client id and host, or "" when unassigned


@dataclass
class Point:
    at: datetime.datetime
    events_per_second: float
    lag: int


@dataclass
class StageView:
    name: str
    group_id: str  # the Kafka group
    retry_group: str  # the group's name in PostgreSQL (PendingRetry.consumer, ProcessedEvent.consumer)
    state: str = "UNKNOWN"
    members: list[str] = field(default_factory=list)
    partitions: list[Partition] = field(default_factory=list)
    broker_error: str = ""
    events_per_second: float = 0.0
    breaker: str = "closed"
    last_commit_at: datetime.datetime | None = None
    pause: StagePause | None = None
    pending: ordering.Counts | None = None
    dead_letters: dict[str, int] = field(default_factory=dict)
    history: list[Point] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def pipeline(*, now: datetime.datetime | None = None, client: AdminClient | None = None) -> list[StageView]:
    now = now or timezone.now()
    views = [StageView(s.name, s.kafka_group_id(), s.group_id) for s in stages()]
    by_name = {v.name: v for v in views}
    _from_broker(views, client if client is not None else admin_client())  # an AdminClient is falsy
    for stage in stages():
        by_name[stage.name].pending = ordering.counts(stage.group_id)
    for row in DeadLetter.objects.values("stage", "status").annotate(n=Count("pk")):
        if row["stage"] in by_name:
            by_name[row["stage"]].dead_letters[row["status"]] = row["n"]
    for pause in StagePause.objects.filter(stage__in=list(by_name)):
        by_name[pause.stage].pause = pause
    _from_samples(by_name, now)
    for view in views:
        if view.history and not view.broker_error:
            view.history[-1].lag = view.lag  # the chart ends with the broker's figure of now
    return views


def _from_broker(views: list[StageView], client: AdminClient) -> None:
    try:
        groups = client.describe_consumer_groups([v.group_id for v in views], request_timeout=BROKER_TIMEOUT_SECONDS)
        metadata = client.list_topics(timeout=BROKER_TIMEOUT_SECONDS)
    except KafkaException as exc:
        for view in views:
            view.broker_error = str(exc)
        return
    for view, stage in zip(views, stages()):
        try:
            description = groups[view.group_id].result()
            view.state = description.state.name if description.state is not None else "UNKNOWN"
            owners = {}
            for m in description.members:
                view.members.append(f"{m.client_id}@{m.host}")
                for tp in m.assignment.topic_partitions if m.assignment else []:
                    owners[(tp.topic, tp.partition)] = f"{m.client_id}@{m.host}"
            committed = health.committed_offsets(client, view.group_id, BROKER_TIMEOUT_SECONDS)
            partitions = [TopicPartition(t, p) for t in stage.topic_names() if t in metadata.topics
                          for p in sorted(metadata.topics[t].partitions)]
            lags = health.partition_lags(client, partitions, committed, BROKER_TIMEOUT_SECONDS)
        except KafkaException as exc:
            view.broker_error = health.describe_error(exc)
            continue
        view.partitions = [Partition(f"{t}[{p}]", lag, owners.get((t, p), "")) for (t, p), lag in lags.items()]


def _from_samples(by_name: dict[str, StageView], now: datetime.datetime) -> None:
    rows = (StageSample.objects.filter(stage__in=list(by_name), at__gte=now - HISTORY)
            .order_by("at").values_list("stage", "member", "at", "processed", "lag", "breaker", "last_commit_at"))
    processed: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    lag: dict[str, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    latest_breaker: dict[str, dict[str, str]] = defaultdict(dict)
    for stage, member, at, count, behind, breaker, last_commit in rows:
        view = by_name[stage]
        bucket = int((now - at).total_seconds() // BUCKET_SECONDS)
        processed[stage][bucket] += count
        if behind >= 0:
            lag[stage][bucket][member] = max(lag[stage][bucket].get(member, 0), behind)
        if at >= now - RATE_WINDOW:
            view.events_per_second += count / RATE_WINDOW.total_seconds()
        if at >= now - FRESH:
            latest_breaker[stage][member] = breaker
        if last_commit is not None and (view.last_commit_at is None or last_commit > view.last_commit_at):
            view.last_commit_at = last_commit
    buckets = int(HISTORY.total_seconds() // BUCKET_SECONDS)
    for stage, view in by_name.items():
        view.events_per_second = round(view.events_per_second, 1)
        states = set(latest_breaker[stage].values())
        view.breaker = next((s for s in ("open", "half_open") if s in states), "closed")
        view.history = [Point(now - datetime.timedelta(seconds=(b + 1) * BUCKET_SECONDS),
                              round(processed[stage].get(b, 0) / BUCKET_SECONDS, 1),
                              sum(lag[stage].get(b, {}).values()))
                        for b in reversed(range(buckets))]
