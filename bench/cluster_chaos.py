"""`make chaos CLUSTER=3`: the faults of bench/chaos.py on the replicated three-broker cluster, where the broker
faults are SIGKILLs of one node at a time instead of one restart of the single broker.

Brokers are killed in turn, at least three times: the active controller, then the leader of the busiest
partition of `purchase-confirmed`, then whichever node has not been killed lately, and again while the duration
lasts. Each stays down a few seconds, is started again, and the time until it answers and until every partition
is back in sync is recorded. Once, while payments still arrive, two nodes are down at once, below every topic's
min.insync.replicas (and the controller quorum): the webhook keeps taking payments into the outbox while
nothing can be written to Kafka, and the time from the first node's return until the outbox has drained is
recorded. A monitor samples the partitions every second: under-replicated and offline counts over time, and
every change of a partition's leader (the elections seen).
"""
from __future__ import annotations

import random
import threading
import time

from bench.chaos import Controller, stack

DOWN_SECONDS = (3.0, 6.0)
SECOND_COPY = 9  # the second consumer process of each stage is "<stage>#9" (the replay phase uses #1 and #2)
BOTH_DOWN_SECONDS = 15.0
TWO_DOWN_AT = 0.35  # share of the duration: within the first 60 %, while the senders still send


class Monitor(threading.Thread):
    """Samples the pipeline's partitions once a second: (seconds, under-replicated, offline, under min ISR)
    and the leader of each partition, counting each change of leader as an election seen."""

    def __init__(self, started: float) -> None:
        super().__init__(daemon=True)
        self.started, self.samples, self.elections, self.stopped = started, [], 0, threading.Event()
        self.leaders: dict[tuple[str, int], int] = {}

    def run(self) -> None:
        from workers import health
        from workers.kafka import admin_client, pipeline_topics, topic

        client, names = admin_client(), [topic(name) for name in pipeline_topics()]
        while not self.stopped.wait(1.0):
            try:
                found = health.replication(names, client=client, timeout=5)
                metadata = client.list_topics(timeout=5)
            except Exception:  # no broker answered this second
                continue
            for name in names:
                for p in metadata.topics[name].partitions.values():
                    before = self.leaders.get((name, p.id))
                    if p.leader >= 0 and before is not None and p.leader != before:
                        self.elections += 1
                    if p.leader >= 0:
                        self.leaders[(name, p.id)] = p.leader
            self.samples.append((round(time.monotonic() - self.started, 1), len(found.under_replicated),
                                 len(found.offline), len(found.under_min_isr)))

    def in_sync_since(self, since: float) -> bool:
        """Whether a sample taken after `since` (monotonic) found every partition fully in sync."""
        after = since - self.started
        return any(at >= after and tuple(rest) == (0, 0, 0) for at, *rest in self.samples[-3:])


def busiest_leader() -> int:
    """The node leading the partition of purchase-confirmed with the most events."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    from workers.kafka import admin_client, topic

    client, name = admin_client(), topic("purchase-confirmed")
    partitions = client.list_topics(name, timeout=5).topics[name].partitions
    ends = client.list_offsets({TopicPartition(name, p): OffsetSpec.latest() for p in partitions},
                               request_timeout=5)
    busiest = max(ends, key=lambda tp: ends[tp].result().offset)
    return partitions[busiest.partition].leader


class ClusterController(Controller):
    """bench.chaos.Controller with broker kills one node at a time and one window of two nodes down."""

    def __init__(self, procs, duration: float, kill_every: float) -> None:
        super().__init__(procs, duration, kill_every)
        self.recoveries: list[dict] = []
        self.both_down: dict = {}
        self.killed: list[int] = []

    def run(self) -> None:
        """Single-node kills until the duration is over and each kind (controller, busiest leader, another) has
        had its turn; between two of them, the window of two nodes down (while payments still arrive), and the
        PostgreSQL and Redis faults, each at its share of the duration."""
        self.start_time = time.monotonic()
        self.monitor = Monitor(self.start_time)
        self.monitor.start()
        consumers = threading.Thread(target=self._kill_consumers, daemon=True)
        consumers.start()
        try:
            once = {TWO_DOWN_AT: self.two_down, 0.65: self.restart_postgres, 0.8: self.stop_redis}
            while time.monotonic() - self.start_time < self.duration or len(self.recoveries) < 3:
                self.kill_broker()
                for share, action in list(once.items()):
                    if time.monotonic() - self.start_time >= share * self.duration:
                        del once[share]
                        action()
            for action in once.values():
                action()
        except Exception as exc:
            self.error = repr(exc)
        finally:
            consumers.join()

    def _kill_consumers(self) -> None:
        """Consumers and the relay die at the same time as brokers, on their own clock."""
        while time.monotonic() - self.start_time < self.duration:
            time.sleep(self.kill_every)
            self.kill_one()

    def next_victim(self) -> tuple[int, str]:
        turn = len(self.recoveries) % 3
        if turn == 0:
            return int(stack("kafka-controller")), "active controller"
        if turn == 1:
            return busiest_leader(), "leader of the busiest purchase-confirmed partition"
        spared = [n for n in (1, 2, 3) if n not in self.killed[-2:]]
        return random.choice(spared or [1, 2, 3]), "a node not killed lately"

    def kill_broker(self) -> None:
        node, why = self.next_victim()
        self.note("SIGKILL Kafka node", node=node, why=why)
        stack("kill-kafka", str(node))
        self.killed.append(node)
        time.sleep(random.uniform(*DOWN_SECONDS))
        restarted = time.monotonic()
        stack("start-kafka", str(node))  # returns once the node answers
        answering = time.monotonic()
        while not self.monitor.in_sync_since(answering) and time.monotonic() - answering < 120:
            time.sleep(0.5)
        self.recoveries.append({
            "node": node, "why": why, "seconds_to_answer_after_restart": round(answering - restarted, 1),
            "seconds_to_all_in_sync_after_restart": round(time.monotonic() - restarted, 1),
            "in_sync": self.monitor.in_sync_since(answering)})

    def two_down(self) -> None:
        """Two nodes down at once for BOTH_DOWN_SECONDS: below min.insync.replicas everywhere."""
        from workers.models import OutboxEvent

        first, second = random.sample([1, 2, 3], 2)
        self.note("SIGKILL two Kafka nodes", nodes=[first, second], seconds=BOTH_DOWN_SECONDS)
        stack("kill-kafka", str(first))
        stack("kill-kafka", str(second))
        time.sleep(BOTH_DOWN_SECONDS)
        held = list(OutboxEvent.objects.unsent().values_list("pk", flat=True))
        peak = len(held)  # what the webhook and the stages wrote meanwhile and Kafka could not take
        back = time.monotonic()
        stack("start-kafka", str(first))  # two of three again: the quorum and every minimum are back
        answering = round(time.monotonic() - back, 1)
        while (OutboxEvent.objects.unsent().filter(pk__in=held).exists()
               and time.monotonic() - back < 300):
            time.sleep(0.5)
        drained = round(time.monotonic() - back, 1)
        stack("start-kafka", str(second))
        self.both_down = {"nodes": [first, second], "seconds_down": BOTH_DOWN_SECONDS,
                          "outbox_rows_held_back": peak, "first_node_answering_seconds_after_restart": answering,
                          "outbox_drained_seconds_after_restart": drained}
        self.note("two nodes back", **self.both_down)

    def report(self) -> dict:
        self.monitor.stopped.set()
        samples = self.monitor.samples
        return {"broker_kills": self.recoveries, "two_nodes_down": self.both_down,
                "leader_elections_seen": self.monitor.elections,
                "max_under_replicated_partitions": max((s[1] for s in samples), default=0),
                "max_offline_partitions": max((s[2] for s in samples), default=0),
                "partitions_over_time": samples}
