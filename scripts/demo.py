"""The main job, end to end on the local stack (`make demo`).

1. a fresh database (`DEMO_DATABASE`, default `enrollment_demo`) and a fresh topic prefix (`demo-<time>.`);
2. seeds courses, trainers and N students;
3. starts the whole Procfile under honcho (gunicorn web app, relay, four consumers, dead-letter persister);
4. sends N signed payment confirmations over HTTP, shows progress while the enrollments complete;
5. prints a report (per stage, dead letters, payment-to-sessions latency, throughput, invariants), writes it as
   JSON to var/demo/report.json, stops what it started, and exits 1 when an invariant fails.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=int(os.environ.get("N", 1000)))
    parser.add_argument("--courses", type=int, default=5)
    parser.add_argument("--senders", type=int, default=8, help="concurrent HTTP senders")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for every enrollment")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--report", default=str(ROOT / "var" / "demo" / "report.json"))
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


def send_payments(url: str, secret: str, pairs: list[tuple[int, int]], senders: int) -> list[int]:
    """POST one signed confirmation per (student, course); returns the HTTP status codes."""
    import threading

    import requests

    from purchases.signing import sign

    local = threading.local()

    def post(pair: tuple[int, int]) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        body = json.dumps({
            "provider_payment_id": f"demo_{uuid.uuid4().hex}", "student_id": pair[0], "course_id": pair[1],
            "amount": "49.00", "currency": "EUR", "confirmed_at": datetime.datetime.now(datetime.UTC).isoformat(),
        }).encode()
        headers = {"Content-Type": "application/json", **sign(body, secret)}
        return session.post(url + "/api/payments/confirmations", data=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(senders) as pool:
        return list(pool.map(post, pairs))


def stage_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("""
            SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM student_course_purchases),
                   (SELECT count(*) FROM trainer_allocations),
                   (SELECT count(*) FROM (SELECT allocation_id FROM training_sessions GROUP BY allocation_id
                                          HAVING count(*) >= 7) full_windows),
                   (SELECT count(*) FROM dead_letters)""")
        row = cur.fetchone()
    return dict(zip(["payments", "purchases", "allocations", "scheduled", "dead_letters"], row))


def wait_with_progress(total: int, timeout: float) -> dict[str, int]:
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    with tqdm(total=total, desc="enrollments with 7 sessions", unit="enr") as bar:
        while True:
            counts = stage_counts()
            bar.n = counts["scheduled"]
            bar.set_postfix(purchases=counts["purchases"], allocations=counts["allocations"],
                            dead=counts["dead_letters"])
            bar.refresh()
            if counts["scheduled"] >= total or time.monotonic() > deadline:
                return counts
            time.sleep(0.5)


def latencies() -> dict[str, float]:
    """Payment received (web) -> its 7th session created (sessions stage), from the database's own clock."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("""
            SELECT EXTRACT(EPOCH FROM (max(s.created_at) - p.received_at))
            FROM payments p
            JOIN student_course_purchases sp ON sp.payment_id = p.id
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


def main() -> int:
    args = parse_args()
    prefix = f"demo-{int(time.time())}."
    database = os.environ.get("DEMO_DATABASE", "enrollment_demo")
    env = {**os.environ, "DATABASE_URL": fresh_database(database), "KAFKA_TOPIC_PREFIX": prefix,
           "CACHE_KEY_PREFIX": prefix, "WEB_PORT": str(args.port), "ADMIN_SERVICE_URL": f"http://127.0.0.1:{args.port}",
           "DJANGO_SETTINGS_MODULE": "settings", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
    django_setup(env)
    from django.conf import settings
    from django.core.management import call_command

    print(f"database {database}, topics {prefix}*, {args.payments} payments")
    call_command("migrate", verbosity=0)
    call_command("create_topics", partitions=settings.KAFKA_TOPIC_PARTITIONS, stdout=open(os.devnull, "w"))
    from tools.seed import seed_catalog

    pairs = seed_catalog(args.payments, args.courses)
    log_path = ROOT / "var" / "demo" / "pipeline.log"
    pipeline = start_pipeline(env, log_path)
    try:
        url = f"http://127.0.0.1:{args.port}"
        wait_for_web(url, pipeline)
        started = time.monotonic()
        codes = send_payments(url, settings.PAYMENT_WEBHOOK_SECRET, pairs, args.senders)
        send_seconds = time.monotonic() - started
        counts = wait_with_progress(args.payments, args.timeout)
        time.sleep(2)  # let the cache stage and the outbox bookkeeping settle before checking invariants
        from tools.invariants import invariants

        checks = invariants(args.payments)
    finally:
        os.killpg(pipeline.pid, signal.SIGTERM)
        try:
            pipeline.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(pipeline.pid, signal.SIGKILL)
    report = {
        "payments_sent": len(codes),
        "http_status": {str(c): codes.count(c) for c in sorted(set(codes))},
        "send_seconds": round(send_seconds, 2),
        "per_stage": counts,
        "latency_payment_to_sessions": latencies(),
        "invariants": checks,
        "ok": all(checks.values()),
        "topic_prefix": prefix,
        "database": database,
    }
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(json.dumps(report, indent=2))
    print_report(report, args.report)
    return 0 if report["ok"] else 1


def print_report(report: dict, path: str) -> None:
    lat = report["latency_payment_to_sessions"]
    print("\n=== enrollment pipeline demo ===")
    print(f"payments sent        {report['payments_sent']} in {report['send_seconds']} s  {report['http_status']}")
    for stage, count in report["per_stage"].items():
        print(f"{stage:<20} {count}")
    if lat:
        print(f"payment -> 7 sessions  p50 {lat['p50_ms']} ms  p95 {lat['p95_ms']} ms  p99 {lat['p99_ms']} ms"
              f"  max {lat['max_ms']} ms")
        print(f"throughput           {lat['throughput_per_second']} enrollments/s over {lat['span_seconds']} s")
    for name, ok in report["invariants"].items():
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    print(f"report: {path}")
    print("RESULT:", "all invariants hold" if report["ok"] else "INVARIANT FAILED")


if __name__ == "__main__":
    sys.exit(main())
