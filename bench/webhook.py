"""The webhook under open-loop load: the gunicorn web app alone (bench.pipeline.Processes), signed confirmations
sent at a fixed rate by vegeta, or by a Python thread pool where vegeta is missing."""
from __future__ import annotations

import datetime
import json
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, quiet_database, use_prefix
from bench.cpu import measure
from bench.pipeline import Processes, wait_for_web

VEGETA = ROOT / "var" / "bin" / "vegeta"


def webhook_load(env: dict[str, str], log_dir: Path, rate: int = 200, seconds: int = 15, hog: bool = False) -> dict:
    """Open-loop load on the gunicorn web app: `rate` signed confirmations per second for `seconds`.

    `hog`: a process that spins one core at normal priority for the whole run (a noisy neighbour, a backup, a
    build), so the figure says what the webhook gives on a machine that is not quiet.

    With vegeta (Go, installed by `make bench` under var/bin) the generator costs little CPU next to the app on
    the same two cores; without it, a Python thread pool does the same (latency from each request's scheduled
    send time, so no coordinated omission), at a higher CPU cost that the app then competes with."""
    from django.conf import settings

    from purchases.signing import sign
    from tools.seed import seed_catalog

    prefix = f"bench-web-{uuid.uuid4().hex[:6]}."
    use_prefix(prefix)
    total = rate * seconds
    pairs = seed_catalog(total, courses=5)
    now = datetime.datetime.now(datetime.UTC).isoformat()
    bodies = [json.dumps({"provider_payment_id": f"load_{uuid.uuid4().hex}", "student_id": s, "course_id": c,
                          "amount": "49.00", "currency": "EUR", "confirmed_at": now}).encode() for s, c in pairs]
    requests_ = [(body, {"Content-Type": "application/json", **sign(body, settings.PAYMENT_WEBHOOK_SECRET)})
                 for body in bodies]
    procs = Processes({"WEB_WORKERS": "2", **env, "KAFKA_TOPIC_PREFIX": prefix}, log_dir)
    procs.start("web")
    url = env["ADMIN_SERVICE_URL"] + "/api/payments/confirmations"
    wait_for_web(env["ADMIN_SERVICE_URL"])
    settled = quiet_database()
    spinner = subprocess.Popen(["python3", "-c", "while True: pass"]) if hog else None
    try:
        cpu = measure(lambda: {"web": procs.pid("web")})
        if VEGETA.exists():
            result = _vegeta(url, requests_, rate, seconds, log_dir)
        else:
            result = _python_load(url, requests_, rate)
        cpu_seconds = cpu()
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        procs.stop()
    return {"rate": rate, "requests": total, "cpu_hog": hog, **result, "cpu_seconds": cpu_seconds,
            "waited_for_quiet_database_seconds": settled,
            "cpu_ms_per_request": {k: round(1000 * v / total, 3) for k, v in cpu_seconds.items()}}


def _vegeta(url: str, requests_: list, rate: int, seconds: int, log_dir: Path) -> dict:
    import base64

    targets = log_dir / "webhook-targets.jsonl"
    with open(targets, "w") as out:
        for body, headers in requests_:
            out.write(json.dumps({"method": "POST", "url": url, "body": base64.b64encode(body).decode(),
                                  "header": {k: [v] for k, v in headers.items()}}) + "\n")
    # Open loop: vegeta keeps the schedule only while it has a worker free for each request in flight. With 64,
    # a slow spell (p99 289 ms at 400 req/s) capped it near 64 / 0.3 s: it sent 5,984 of 6,000 in the time
    # and delayed the rest, which hides the tail it should measure (coordinated omission). 1,024 covers 2.5 s.
    attack = subprocess.run([str(VEGETA), "attack", "-format=json", f"-targets={targets}", f"-rate={rate}/s",
                             f"-duration={seconds}s", "-timeout=10s", "-max-workers=1024"],
                            capture_output=True, check=True)
    report = json.loads(subprocess.run([str(VEGETA), "report", "-type=json"], input=attack.stdout,
                                       capture_output=True, check=True).stdout)
    ms = {k: round(v / 1e6, 2) for k, v in report["latencies"].items()}
    codes = report.get("status_codes", {})
    return {"generator": "vegeta", "achieved_per_second": round(report["throughput"], 1), "p50_ms": ms["50th"],
            "p95_ms": ms["95th"], "p99_ms": ms["99th"], "max_ms": ms["max"],
            "status_202": codes.get("202", 0), "other_status": sum(v for k, v in codes.items() if k != "202"),
            "sent": report["requests"], "errors": report.get("errors") or []}


def _python_load(url: str, requests_: list, rate: int) -> dict:
    import requests

    local = threading.local()
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.5

    def send(i: int) -> None:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        session = getattr(local, "s", None) or requests.Session()
        local.s = session
        body, headers = requests_[i]
        response = session.post(url, data=body, headers=headers, timeout=10)
        with lock:
            latencies.append(time.perf_counter() - due)
            statuses.append(response.status_code)

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(send, range(len(requests_))))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {"generator": "python threads", "achieved_per_second": round(len(requests_) / elapsed, 1),
            "p50_ms": pct(0.5), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "status_202": statuses.count(202), "other_status": len(statuses) - statuses.count(202)}
