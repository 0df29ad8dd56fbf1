"""`make chaos`: N enrollments through the running pipeline while a controller, bounded in time, SIGKILLs random
consumers and the relay (and restarts them), restarts the Kafka broker once and PostgreSQL once, stops Redis for
a while, and a proxy makes the allocation API answer 5xx or hang past its timeout for a share of calls (for the
whole run, settling included).
Afterwards the invariants are checked; the report of faults and checks is printed and saved as JSON.

    .venv/bin/python bench/chaos.py [--payments 10000] [--duration 120]     (make chaos)
    .venv/bin/python bench/chaos.py --short                                  (the version in make test)
"""
from __future__ import annotations

import argparse
import datetime
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

from bench.common import ROOT, setup, wait_for

KILLABLE = ["relay", "purchases", "allocations", "sessions", "cache", "dead_letters"]


def stack(command: str) -> None:
    subprocess.run([str(ROOT / "scripts" / "stack"), command], check=True, stdout=subprocess.DEVNULL)


def db_retrying(fn, attempts: int = 60):
    """Run a query function, reconnecting while PostgreSQL restarts."""
    from django.db import InterfaceError, OperationalError, connection

    for _ in range(attempts):
        try:
            return fn()
        except (OperationalError, InterfaceError):
            connection.close()
            time.sleep(0.5)
    return fn()


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


def send_payments(url: str, secret: str, pairs, rate: float, deadline: float) -> dict[str, int]:
    """Sign and POST one confirmation per pair at about `rate`/s; like a provider, retry on 5xx and connection
    errors (same body: the webhook answers 200 for a repeat) until `deadline`."""
    import requests

    from purchases.signing import sign

    stats = {"sent": 0, "retries": 0, "gave_up": 0}
    session = requests.Session()
    for i, (student, course) in enumerate(pairs):
        body = json.dumps({"provider_payment_id": f"chaos_{i}_{student}", "student_id": student, "course_id": course,
                           "amount": "49.00", "currency": "EUR",
                           "confirmed_at": datetime.datetime.now(datetime.UTC).isoformat()}).encode()
        while True:
            try:
                headers = {"Content-Type": "application/json", **sign(body, secret)}
                answer = session.post(url + "/api/payments/confirmations", data=body, headers=headers, timeout=10)
                if answer.status_code in (200, 202):
                    break
            except requests.RequestException:
                session = requests.Session()
            stats["retries"] += 1
            if time.monotonic() > deadline:
                stats["gave_up"] += 1
                break
            time.sleep(0.5)
        stats["sent"] += 1
        time.sleep(max(0.0, 1 / rate - 0.001))
    return stats


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=120, help="seconds of fault injection")
    parser.add_argument("--kill-every", type=float, default=6, help="seconds between SIGKILLs")
    parser.add_argument("--rate", type=float, help="payments per second (default: spread over 60%% of the window)")
    parser.add_argument("--error-share", type=float, default=0.05, help="allocation API calls answered 503")
    parser.add_argument("--hang-share", type=float, default=0.01, help="allocation API calls that hang")
    parser.add_argument("--short", action="store_true", help="300 payments, 40 s of faults (make test)")
    parser.add_argument("--report", default=str(ROOT / "var" / "chaos" / "report.json"))
    args = parser.parse_args()
    if args.short:
        args.payments, args.duration, args.kill_every = 300, 40, 4
    args.rate = args.rate or args.payments / (0.6 * args.duration)
    return args


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
    from django.conf import settings

    from tools.invariants import invariants, total_lag
    from tools.seed import seed_catalog
    from workers.models import OutboxEvent

    pairs = seed_catalog(args.payments, courses=5)
    procs = Processes(env, ROOT / "var" / "chaos" / "logs")
    procs.start("web", *KILLABLE)
    started = time.monotonic()
    report: dict = {"payments": args.payments, "duration": args.duration}
    try:
        wait_for_web(web_url)
        controller = Controller(procs, args.duration, args.kill_every)
        controller.start()
        senders = 4
        stats: list[dict] = [{}] * senders
        deadline = time.monotonic() + args.duration + 300

        def sender(i: int) -> None:
            stats[i] = send_payments(web_url, settings.PAYMENT_WEBHOOK_SECRET, pairs[i::senders],
                                     args.rate / senders, deadline)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
        for t in threads:
            t.start()
        controller.join()
        for t in threads:
            t.join()
        report["sender"] = {k: sum(s.get(k, 0) for s in stats) for k in ("sent", "retries", "gave_up")}

        def finished() -> bool:
            def counts():
                from django.db import connection

                with connection.cursor() as cur:
                    cur.execute("SELECT (SELECT count(*) FROM training_sessions), (SELECT count(*) FROM outbox_events"
                                " WHERE sent_at IS NULL)")
                    return cur.fetchone()
            sessions, unsent = db_retrying(counts)
            return sessions >= 7 * args.payments and unsent == 0 and total_lag() == 0

        report["settle_seconds"] = round(wait_for(finished, 600, "the pipeline to settle", interval=1), 1)
        time.sleep(2)
        report["checks"] = db_retrying(lambda: invariants(args.payments))
        report["unsent_outbox"] = db_retrying(lambda: OutboxEvent.objects.filter(sent_at__isnull=True).count())
    except TimeoutError as exc:
        report["error"] = str(exc)
        report["checks"] = db_retrying(lambda: invariants(args.payments))
    finally:
        procs.stop()
        proxy.close()
    report["faults"] = controller.faults if "controller" in locals() else []
    report["allocation_api_calls"] = proxy.counts
    report["controller_error"] = getattr(locals().get("controller"), "error", None)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["ok"] = all(report["checks"].values()) and "error" not in report and not report["controller_error"]
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "faults"}, indent=2))
    print(f"{len(report['faults'])} faults injected; report: {args.report}")
    print("RESULT:", "all invariants hold" if report["ok"] else "INVARIANT FAILED")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
