"""The main job, end to end on the local stack (`make demo`).

1. a fresh database (`DEMO_DATABASE`, default `enrollment_demo`) and a fresh topic prefix (`demo-<time>.`);
2. seeds courses, trainers and N students;
3. starts the whole Procfile under honcho (gunicorn web app, relay, four consumers, dead-letter persister);
4. sends N signed payment confirmations over HTTP with the lifecycle mix of tools/lifecycle.py (refunds in
   flight and after completion, chargebacks, partial refunds, re-purchases, duplicates, wrong amounts; the
   shares are options), shows progress while the enrollments complete;
5. prints a report (the mix, per stage, dead letters, payment-to-sessions latency, throughput, invariants derived
   from what was sent), writes it as JSON to var/demo/report.json, stops what it started, and exits 1 when an
   invariant fails.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo_progress import LiveProgress  # noqa: E402  (scripts/, next to this file)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=int(os.environ.get("N", 1000)))
    parser.add_argument("--courses", type=int, default=5)
    parser.add_argument("--senders", type=int, default=8, help="concurrent HTTP senders")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for every enrollment")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--report", default=str(ROOT / "var" / "demo" / "report.json"))
    parser.add_argument("--database", default=os.environ.get("DEMO_DATABASE", "enrollment_demo"))
    parser.add_argument("--seed", type=int, default=13, help="random seed of the lifecycle mix")
    from tools.lifecycle import add_share_arguments

    add_share_arguments(parser.add_argument_group("lifecycle mix (fractions of the first confirmations)"))
    return parser.parse_args()


def fresh_database(name: str) -> str:
    import psycopg

    # the maintenance database of the server DATABASE_URL points at (the local stack by default)
    base = os.environ.get("DEMO_ADMIN_URL") or (
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:15432/enrollment").rsplit("/", 1)[0] + "/postgres"
    )
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
    from settings.local_secrets import load_into_environ

    load_into_environ()  # this checkout's secrets, unless the environment has its own (DEBUG is off)
    import django

    django.setup()


def start_pipeline(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/honcho"), "-f", str(ROOT / "Procfile"), "start", "--no-colour"],
        cwd=ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_for_web(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the pipeline exited during start-up; see var/demo/pipeline.log")
        try:
            requests.get(url + "/healthz", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit("the web app did not answer; see var/demo/pipeline.log")


def send_lifecycle_mix(url: str, secret: str, items: list, senders: int, timeout: float) -> tuple:
    """The lifecycle mix (tools/lifecycle.py); the second wave waits for its targets to complete."""
    from tools.lifecycle import Provider, send_mix, wait_enrolled

    def wait(targets: list[str]) -> None:
        if not wait_enrolled(targets, timeout, lambda done, total: None):
            print("  some enrollments did not complete in time; sending their second wave anyway")

    provider = Provider(url, secret)
    return provider, send_mix(provider, items, senders, wait)


STAGE_COUNTS_SQL = """
SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM refunds),
       (SELECT count(*) FROM student_course_purchases WHERE is_active),
       (SELECT count(*) FROM student_course_purchases WHERE NOT is_active),
       (SELECT count(*) FROM trainer_allocations WHERE status IN ('approved', 'active')),
       (SELECT count(*) FROM trainer_allocations WHERE status NOT IN ('approved', 'active')),
       (SELECT count(*) FROM training_sessions WHERE status <> 'cancelled'),
       (SELECT count(*) FROM training_sessions WHERE status = 'cancelled'),
       (SELECT count(*) FROM payments p WHERE p.status = 'refunded'
        AND NOT EXISTS (SELECT 1 FROM student_course_purchases pu WHERE pu.payment_id = p.id)),
       (SELECT count(*) FROM dead_letters)"""


def stage_counts() -> dict[str, int]:
    from django.db import connection

    from tools.lifecycle import enrolled

    with connection.cursor() as cur:
        cur.execute(STAGE_COUNTS_SQL)
        row = cur.fetchone()
    names = ["payments", "refunds", "purchases_active", "purchases_cancelled", "allocations_holding",
             "allocations_released", "sessions", "sessions_cancelled", "refunded_before_purchase", "dead_letters"]
    return {**dict(zip(names, row)), "enrolled": enrolled()}


def wait_until_done(total: int, timeout: float) -> dict[str, int]:
    """Until `total` enrollments are complete and the pipeline is idle (cancellations and releases done)."""
    from tools.lifecycle import idle

    deadline = time.monotonic() + timeout
    while True:
        counts = stage_counts()
        if (counts["enrolled"] >= total and idle()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def latencies() -> dict[str, float]:
    """Payment received (web) -> its 7th session created (sessions stage), from the database's own clock."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("""
            SELECT EXTRACT(EPOCH FROM (max(s.created_at) - p.received_at))
            FROM payments p
            JOIN student_course_purchases sp ON sp.payment_id = p.id AND sp.is_active
            JOIN trainer_allocations a ON a.student_id = sp.student_id AND a.course_id = sp.course_id
                                      AND a.status IN ('approved', 'active')
            JOIN training_sessions s ON s.allocation_id = a.id
            GROUP BY p.id, p.received_at""")
        values = sorted(float(v) for (v,) in cur.fetchall())
        cur.execute("SELECT EXTRACT(EPOCH FROM ((SELECT max(created_at) FROM training_sessions)"
                    " - (SELECT min(received_at) FROM payments)))")
        (span,) = cur.fetchone()
    if not values:
        return {}

    def pct(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

    return {"p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": round(values[-1] * 1000, 1),
            "span_seconds": round(float(span or 0), 2),
            "throughput_per_second": round(len(values) / float(span), 1) if span else 0.0}


def prepare(args: argparse.Namespace) -> tuple[dict[str, str], list]:
    """A fresh database and topic prefix, Django set up on them, the catalog seeded; (env, the mix to send)."""
    prefix = f"demo-{int(time.time())}."
    env = {**os.environ, "DATABASE_URL": fresh_database(args.database), "KAFKA_TOPIC_PREFIX": prefix,
           "CACHE_KEY_PREFIX": prefix, "WEB_PORT": str(args.port), "ADMIN_SERVICE_URL": f"http://127.0.0.1:{args.port}",
           "DJANGO_SETTINGS_MODULE": "settings", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
    django_setup(env)
    env = {**os.environ}  # with the checkout's secrets, for the pipeline's processes
    from django.conf import settings
    from django.core.management import call_command

    from tools.lifecycle import plan, shares_from
    from tools.seed import seed_catalog

    print(f"database {args.database}, topics {prefix}*, {args.payments} payments and the lifecycle mix")
    call_command("migrate", verbosity=0)
    call_command("create_topics", partitions=settings.KAFKA_TOPIC_PARTITIONS, stdout=open(os.devnull, "w"))
    pairs = seed_catalog(args.payments, args.courses)
    return env, plan(pairs, shares_from(args), prefix="demo", seed=args.seed)


def run(args: argparse.Namespace, env: dict[str, str], items: list) -> dict:
    """Start the pipeline, send the mix, wait for it, check the invariants, stop what was started."""
    from django.conf import settings

    from tools.invariants import measure

    pipeline = start_pipeline(env, ROOT / "var" / "demo" / "pipeline.log")
    try:
        url = f"http://127.0.0.1:{args.port}"
        wait_for_web(url, pipeline)
        planned = len(items) + sum(i.repurchase + i.duplicate for i in items)  # a payment row each
        progress = LiveProgress(stage_counts, payments_planned=planned)
        progress.start()  # from the first payment on
        started = time.monotonic()
        try:
            provider, sent = send_lifecycle_mix(url, settings.PAYMENT_WEBHOOK_SECRET, items, args.senders,
                                                args.timeout)
            send_seconds = time.monotonic() - started
            expected = sent.expected()
            progress.expected = expected.enrollments
            counts = wait_until_done(expected.enrollments, args.timeout)
        finally:
            progress.stop()
        time.sleep(2)  # let the cache stage and the outbox bookkeeping settle before checking invariants
        checks = measure(expected)
    finally:
        os.killpg(pipeline.pid, signal.SIGTERM)
        try:
            pipeline.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pipeline.pid, signal.SIGKILL)
    return {
        "mix": sent.mix(),
        "http_answers": dict(sorted(provider.answers.items())),
        "send_seconds": round(send_seconds, 2),
        "expected_enrollments": expected.enrollments,
        "per_stage": counts,
        "latency_payment_to_sessions": latencies(),
        "invariants": {c.name: c.ok for c in checks},
        "invariant_figures": {c.name: {"got": c.got, "want": c.want} for c in checks},
        "ok": all(c.ok for c in checks),
        "topic_prefix": env["KAFKA_TOPIC_PREFIX"],
        "database": args.database,
    }


def main() -> int:
    args = parse_args()
    env, items = prepare(args)
    report = run(args, env, items)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2))
    print_report(report, args.report)
    return 0 if report["ok"] else 1


def print_report(report: dict, path: str) -> None:
    lat, mix = report["latency_payment_to_sessions"], report["mix"]
    print("\n=== enrollment pipeline demo ===")
    print(f"sent                 {mix['confirmations']} confirmations and {mix['full_refunds']} full refunds"
          f" ({mix['of_them_chargebacks']} chargebacks) + {mix['partial_refunds']} partial in"
          f" {report['send_seconds']} s")
    print(f"  refunds            {mix['refunds_in_flight']} in flight, {mix['refunds_after_completion']} after"
          f" completion; {mix['repurchases']} re-purchases, {mix['duplicates']} duplicates,"
          f" {mix['mismatches']} wrong amounts")
    print(f"  answers            {report['http_answers']}")
    print(f"expected enrollments {report['expected_enrollments']}")
    for stage, count in report["per_stage"].items():
        print(f"{stage:<20} {count}")
    if lat:
        print(f"payment -> 7 sessions  p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms"
              f"  max {lat['max_ms']} ms")
        print(f"throughput           {lat['throughput_per_second']} enrollments/s over {lat['span_seconds']} s")
    for name, ok in report["invariants"].items():
        figures = report["invariant_figures"][name]
        print(f"  [{'ok' if ok else 'FAILED'}] {name}" + ("" if ok else f"  (got {figures['got']},"
                                                                   f" want {figures['want']})"))
    print(f"report: {path}")
    print("RESULT:", "all invariants hold" if report["ok"] else "INVARIANT FAILED")

if __name__ == "__main__":
    sys.exit(main())
