"""`make scale-out`: three consumer processes per stage on 6 partitions work through a backlog; under load a fourth
process joins each group, then one of the first three leaves (SIGTERM, as a deploy does). Two measures:

- **Rebalance pause** of each moved partition: from its "revoked" (or "lost") log line on the old owner to its
  "assigned" line on the new one (workers/rebalance.py). This is the time nobody may consume it. Partitions that
  do not move have no pause: cooperative-sticky leaves them where they are.
- **Longest stall**: a sampler reads every group's committed offsets every SAMPLE_SECONDS; a partition stalls while
  its committed offset stands still with lag. This includes batch time (an allocations batch waits on the HTTP
  API), so it is also measured in the calm window before the first change, for comparison.

Afterwards the invariants of tools/invariants.py prove that no effect was duplicated or lost. Assignment:
cooperative-sticky (workers/kafka.py), the docstring of `main` says why.

    .venv/bin/python bench/scale_out.py [--payments 20000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, produce_values, setup, wait_for

SAMPLE_SECONDS = 0.2
STAGES = ["purchases", "allocations", "sessions", "cache"]


class Sampler(threading.Thread):
    """(monotonic time, {(group, topic, partition): (committed, high)}) every SAMPLE_SECONDS."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, dict]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        from workers.health import targets
        from workers.kafka import admin_client

        client, groups = admin_client(), {n: t for n, t in targets().items() if n in STAGES}
        metadata = client.list_topics(timeout=10)
        partitions = [TopicPartition(name, p) for t in groups.values() for name in dict.fromkeys(t.topics)
                      for p in metadata.topics[name].partitions]
        while not self.stopped.wait(SAMPLE_SECONDS):
            try:
                ends = {(tp.topic, tp.partition): f.result().offset for tp, f in client.list_offsets(
                    dict.fromkeys(partitions, OffsetSpec.latest()), request_timeout=5).items()}
                point = {}
                for name, target in groups.items():
                    result = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(target.group_id)],
                                                                request_timeout=5)[target.group_id].result()
                    for tp in result.topic_partitions or []:
                        point[(name, tp.topic, tp.partition)] = (tp.offset, ends.get((tp.topic, tp.partition), 0))
                self.samples.append((time.monotonic(), point))
            except Exception:  # a slow answer: the next sample
                continue


def longest_stall(samples, start: float, end: float) -> dict[str, dict]:
    """Per group, the longest time (ms) one of its partitions' committed offsets stood still with lag, in
    [start, end], and which partition that was."""
    stalls: dict[str, dict] = {}
    since: dict[tuple, tuple[float, int]] = {}
    for at, point in samples:
        if not start <= at <= end:
            continue
        for key, (committed, high) in point.items():
            first = since.get(key)
            if first is None or committed != first[1] or committed >= high:
                since[key] = (at, committed)
                continue
            ms = round((at - first[0]) * 1000)
            if ms > stalls.get(key[0], {}).get("ms", 0):
                stalls[key[0]] = {"ms": ms, "partition": f"{key[1]}[{key[2]}]"}
    return stalls


def partition_moves(log_dir: Path) -> list[dict]:
    """Every partition handed from one process to another, from the rebalance lines of the processes' JSON logs:
    where from, where to, when it was revoked (epoch seconds) and how long it had no owner."""
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        for text in path.read_text(errors="replace").splitlines():
            if '"rebalance_event"' not in text:
                continue
            try:
                record = json.loads(text)
            except ValueError:
                continue
            lines += [(record["at"], record["stage"], partition, record["rebalance_event"], path.stem)
                      for partition in record["partitions"]]
    ownerless: dict[tuple[str, str], tuple[float, str]] = {}
    moves = []
    for at, stage, partition, event, process in sorted(lines):
        if event in ("revoked", "lost"):
            ownerless[(stage, partition)] = (at, process)
        elif (stage, partition) in ownerless:
            since, source = ownerless.pop((stage, partition))
            moves.append({"stage": stage, "partition": partition, "from": source, "to": process, "revoked_at": since,
                          "pause_ms": round((at - since) * 1000, 1)})
    return moves


def pause_summary(moves: list[dict], start: float, end: float) -> dict[str, dict]:
    """Per stage, the partitions moved in [start, end) (epoch seconds) and their rebalance pauses."""
    out: dict[str, dict] = {}
    for stage in STAGES:
        pauses = sorted(m["pause_ms"] for m in moves if m["stage"] == stage and start <= m["revoked_at"] < end)
        if pauses:
            out[stage] = {"moved": len(pauses), "median_ms": round(statistics.median(pauses), 1),
                          "max_ms": pauses[-1]}
    return out


def main() -> int:
    """Why cooperative-sticky and not the new consumer protocol (KIP-848): librdkafka 2.16 speaks KIP-848 and Kafka
    4.3 serves it, but the consumers' session timeout and heartbeat then belong to the broker's group config, and
    the commit-on-revoke and pause-on-join logic of workers/consumer.py is tested under the classic protocol.
    Cooperative-sticky already moves only the partitions that change owner, so the other members never stop."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--report", default=None, help="default: docs/scale-out-report.json, or "
                        "docs/scale-out-cluster-report.json on the three-broker cluster")
    args = parser.parse_args()
    brokers = len(os.environ.get("KAFKA_BROKERS", "127.0.0.1:19092").split(","))
    args.report = args.report or str(ROOT / "docs" / ("scale-out-cluster-report.json" if brokers > 1
                                                      else "scale-out-report.json"))
    os.environ.setdefault("WEB_PORT", "8766")
    os.environ["ADMIN_SERVICE_URL"] = f"http://127.0.0.1:{os.environ['WEB_PORT']}"
    env = {**setup(f"scale-{int(time.time())}."), "LOG_LEVEL": "INFO"}  # INFO: the rebalance lines
    from bench.pipeline import Processes, wait_for_web
    from tools.invariants import Expected, measure
    from tools.seed import purchase_confirmed, seed_catalog, seed_payments
    from workers.kafka import topic
    from workers.models import OutboxEvent

    payments = seed_payments(seed_catalog(args.payments, courses=5), prefix="scale")
    log_dir = ROOT / "var" / "scale-out" / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    procs = Processes(env, log_dir)
    procs.start("web", "relay", *STAGES)
    for name in STAGES:
        procs.start_copy(name, 1)
        procs.start_copy(name, 2)
    report: dict = {"payments": args.payments, "partitions": 6, "brokers": brokers,
                    "replication": int(os.environ.get("KAFKA_TOPIC_REPLICATION", "1")),
                    "assignment": "cooperative-sticky"}
    sampler = Sampler()
    try:
        wait_for_web(env["ADMIN_SERVICE_URL"])
        time.sleep(8)  # every member joined
        sampler.start()
        produce_values(topic("purchase-confirmed"), [(str(p.student_id).encode(), purchase_confirmed(p).to_json())
                                                     for p in payments])
        started = time.monotonic()
        time.sleep(6)
        joined_at, joined_wall = time.monotonic(), time.time()
        for name in STAGES:
            procs.start_copy(name, 3)  # a fourth member per group
        time.sleep(10)
        left_at, left_wall = time.monotonic(), time.time()
        for name in STAGES:
            procs.stop_one(f"{name}#1")  # one of the first three leaves
        done = wait_for(lambda: OutboxEvent.objects.unsent().count() == 0
                        and measure(Expected(payments=args.payments))[-1].ok, 600, "the backlog", interval=1)
        time.sleep(3)
        sampler.stopped.set()
        checks = measure(Expected(payments=args.payments))
        moves = partition_moves(log_dir)
        report.update({
            "rebalance_pause_after_join": pause_summary(moves, joined_wall, left_wall),
            "rebalance_pause_after_leave": pause_summary(moves, left_wall, time.time()),
            "seconds_to_finish": round(done + 6 + 10, 1),
            "calm_longest_stall_ms": longest_stall(sampler.samples, started, joined_at),
            "after_join_longest_stall_ms": longest_stall(sampler.samples, joined_at, left_at),
            "after_leave_longest_stall_ms": longest_stall(sampler.samples, left_at, left_at + 15),
            "sample_ms": SAMPLE_SECONDS * 1000, "samples": len(sampler.samples),
            "checks": {c.name: c.ok for c in checks},
            "failed_checks": {c.name: {"got": c.got, "want": c.want} for c in checks if not c.ok},
        })
    finally:
        sampler.stopped.set()
        procs.stop()
    report["ok"] = bool(report.get("checks")) and all(report["checks"].values())
    Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
