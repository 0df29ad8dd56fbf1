"""`make chaos`: N enrollments through the running pipeline while a controller, bounded in time, SIGKILLs random
consumers and the relay (and restarts them), restarts the Kafka broker once and PostgreSQL once, stops Redis for
a while, and a proxy makes the allocation API answer 5xx or hang past its timeout for a share of calls (for the
whole run, settling included). The payments carry the lifecycle mix of tools/lifecycle.py (refunds in flight and
after completion, chargebacks, partial refunds, re-purchases, duplicates, wrong amounts; shares are options).
Afterwards the invariants derived from what was accepted are checked. A last phase then replays every consumer
group from offset 0 with two processes per group, one of each SIGKILLed (bench/replay_phase.py): the database
must stay unchanged and every group's lag reach 0 within 60 s. The report of faults and checks is printed and
saved as JSON.

    .venv/bin/python bench/chaos.py [--payments 10000] [--duration 120]     (make chaos)
    .venv/bin/python bench/chaos.py --short                                  (the version in make test)
    .venv/bin/python bench/chaos.py --cluster                                (make chaos CLUSTER=3)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("BENCH_DATABASE", "enrollment_chaos")

from bench import replay_phase
from bench.common import ROOT, setup, wait_for
from tools.lifecycle import add_share_arguments

KILLABLE = ["relay", "purchases", "allocations", "sessions", "cache", "dead_letters"]
CONSUMERS = ["purchases", "allocations", "sessions", "cache", "dead_letters"]  # replayed from offset 0 at the end


def stack(*args: str) -> str:
    """scripts/stack with these arguments; its output."""
    done = subprocess.run([str(ROOT / "scripts" / "stack"), *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


class Controller(threading.Thread):
    """Injects the faults on a schedule within `duration` seconds; records what it did."""

    def __init__(self, procs, duration: float, kill_every: float) -> None:
        super().__init__(daemon=True)
        self.procs, self.duration, self.kill_every = procs, duration, kill_every
        self.faults: list[dict] = []
        self.error: str | None = None

    def note(self, what: str, **details) -> None:
        self.faults.append({"at_seconds": round(time.monotonic() - self.start_time, 1), "fault": what, **details})
        print(f"  chaos: {what} {details or ''}", flush=True)

    def run(self) -> None:
        self.start_time = time.monotonic()
        once = {0.4: self.restart_kafka, 0.65: self.restart_postgres, 0.8: self.stop_redis}
        next_kill = self.kill_every
        try:
            while (elapsed := time.monotonic() - self.start_time) < self.duration:
                for share, action in list(once.items()):
                    if elapsed >= share * self.duration:
                        del once[share]
                        action()
                if elapsed >= next_kill:
                    self.kill_one()
                    next_kill += self.kill_every
                time.sleep(0.2)
            for action in once.values():  # a short duration still injects every fault once
                action()
        except Exception as exc:  # the run reports it; invariants decide
            self.error = repr(exc)

    def kill_one(self) -> None:
        name = random.choice(KILLABLE)
        self.procs.kill(name)
        self.note("SIGKILL", process=name)
        time.sleep(random.uniform(0.5, 2.0))
        self.procs.start(name)

    def restart_kafka(self) -> None:
        self.note("restart Kafka broker")
        stack("restart-kafka")

    def restart_postgres(self) -> None:
        self.note("restart PostgreSQL")
        stack("restart-postgres")

    def stop_redis(self) -> None:
        self.note("stop Redis", seconds=5)
        stack("stop-redis")
        time.sleep(5)
        stack("start-redis")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=120, help="seconds of fault injection")
    parser.add_argument("--kill-every", type=float, default=6, help="seconds between SIGKILLs")
    parser.add_argument("--rate", type=float, help="payments per second (default: spread over 60%% of the window)")
    parser.add_argument("--error-share", type=float, default=0.05, help="allocation API calls answered 503")
    parser.add_argument("--hang-share", type=float, default=0.01, help="allocation API calls that hang")
    parser.add_argument("--short", action="store_true", help="300 payments, 40 s of faults (make test)")
    parser.add_argument("--cluster", action="store_true",
                        help="on the three-broker cluster (make chaos CLUSTER=3): bench/cluster_chaos.py")
    parser.add_argument("--report", help="where to save the report (default var/chaos/report.json; with "
                                         "--cluster docs/chaos-cluster-report.json)")
    parser.add_argument("--seed", type=int, default=13, help="random seed of the lifecycle mix")
    add_share_arguments(parser.add_argument_group("lifecycle mix (fractions of the first confirmations)"))
    args = parser.parse_args()
    if args.short:
        args.payments, args.duration, args.kill_every = 300, 40, 4
    args.rate = args.rate or args.payments / (0.6 * args.duration)
    args.report = args.report or str(ROOT / ("docs/chaos-cluster-report.json" if args.cluster
                                             else "var/chaos/report.json"))
    return args


def send(web_url: str, items: list, args: argparse.Namespace) -> tuple[threading.Thread, dict]:
    """The lifecycle mix from 4 senders at about `args.rate` first confirmations/s, in a thread of its own; the
    dict gets the provider and what was accepted when it is done."""
    from django.conf import settings
    from django.db import connection

    from tools.lifecycle import Provider, send_mix, wait_enrolled

    senders, out = 4, {}
    provider = Provider(web_url, settings.PAYMENT_WEBHOOK_SECRET, deadline=time.monotonic() + args.duration + 300)

    def wait(targets: list[str]) -> None:
        out["second_wave_waited_for_all"] = wait_enrolled(targets, 600)

    def run() -> None:
        try:
            out["sent"] = send_mix(provider, items, senders, wait, pace=senders / args.rate)
        finally:
            out["provider"] = provider
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def sender_stats(out: dict) -> dict:
    provider = out["provider"]
    return {"sent": sum(provider.answers.values()), "retries": provider.retries, "gave_up": provider.gave_up,
            "answers": dict(sorted(provider.answers.items())),
            "second_wave_waited_for_all": out.get("second_wave_waited_for_all")}


def settle_and_check(sent, report: dict) -> None:
    """Wait until every expected enrollment is complete and the pipeline idle, then check the invariants."""
    from tools.invariants import measure
    from tools.lifecycle import db_retrying, enrolled, idle
    from workers.models import OutboxEvent

    expected = sent.expected()
    report["expected_enrollments"] = expected.enrollments
    try:
        report["settle_seconds"] = round(wait_for(lambda: enrolled() >= expected.enrollments and idle(), 600,
                                                  "the pipeline to settle", interval=1), 1)
        time.sleep(2)
    except TimeoutError as exc:
        report["error"] = str(exc)
    checks = db_retrying(lambda: measure(expected))
    report["checks"] = {c.name: c.ok for c in checks}
    report["failed_checks"] = {c.name: {"got": c.got, "want": c.want} for c in checks if not c.ok}
    report["unsent_outbox"] = db_retrying(lambda: OutboxEvent.objects.unsent().count())


def main() -> int:
    args = parse_args()
    import socket

    from bench.fault_proxy import FaultProxy
    from bench.pipeline import Processes, wait_for_web

    with socket.socket() as probe:  # a free port for the web app
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web_url = f"http://127.0.0.1:{port}"
    proxy = FaultProxy(web_url, error_share=args.error_share, hang_share=args.hang_share, hang_seconds=3.0)
    os.environ.update({"WEB_PORT": str(port), "ADMIN_SERVICE_URL": proxy.url, "ALLOCATION_API_TIMEOUT_SECONDS": "2",
                       "RETRY_BASE_SECONDS": "0.5", "RETRY_MAX_SECONDS": "5", "LOG_LEVEL": "WARNING"})
    env = setup(f"chaos-{int(time.time())}.")
    from tools.lifecycle import plan, shares_from
    from tools.seed import seed_catalog

    items = plan(seed_catalog(args.payments, courses=5), shares_from(args), prefix="chaos", seed=args.seed)
    procs = Processes(env, ROOT / "var" / "chaos" / "logs")
    procs.start("web", *KILLABLE)
    started = time.monotonic()
    report: dict = {"payments": args.payments, "duration": args.duration, "cluster": args.cluster}
    if args.cluster:  # two consumer processes per stage, and brokers killed one at a time
        from bench.cluster_chaos import SECOND_COPY, ClusterController

        for name in CONSUMERS:
            procs.start_copy(name, SECOND_COPY)
    controller = (ClusterController if args.cluster else Controller)(procs, args.duration, args.kill_every)
    try:
        wait_for_web(web_url)
        controller.start()
        sender, out = send(web_url, items, args)
        controller.join()
        sender.join()
        report["sender"], report["mix"] = sender_stats(out), out["sent"].mix()
        settle_and_check(out["sent"], report)
        if args.cluster:
            report["kafka_cluster"] = controller.report()
            for name in CONSUMERS:
                procs.stop_one(f"{name}#{SECOND_COPY}")
        replay = replay_phase.run(procs, CONSUMERS, controller.note)
        report["replay_from_start"] = {k: v for k, v in replay.items() if k != "checks"}
        report["checks"].update(replay["checks"])
    except (TimeoutError, KeyError) as exc:  # the web app never answered, or the senders failed
        report["error"] = repr(exc)
    finally:
        procs.stop()
        proxy.close()
    report["faults"] = controller.faults
    report["allocation_api_calls"] = proxy.counts
    report["controller_error"] = controller.error
    report["seconds"] = round(time.monotonic() - started, 1)
    report.setdefault("checks", {})
    report["ok"] = all(report["checks"].values()) and "error" not in report and not report["controller_error"]
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "faults"}, indent=2))
    print(f"{len(report['faults'])} faults injected; report: {args.report}")
    print("RESULT:", "all invariants hold" if report["ok"] else "INVARIANT FAILED")
    return 0 if report["ok"] else 1

if __name__ == "__main__":
    sys.exit(main())
