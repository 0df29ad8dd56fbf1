"""The webhook under open-loop load: the gunicorn web app alone (bench.pipeline.Processes), signed confirmations
sent at a fixed rate by bench.loadgen, in a process of its own."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path

from bench.common import ROOT, quiet_database, use_prefix
from bench.cpu import measure
from bench.loadgen import write_requests
from bench.pipeline import Processes, wait_for_web


def webhook_load(env: dict[str, str], log_dir: Path, rate: int = 200, seconds: int = 15, hog: bool = False) -> dict:
    """Open-loop load on the gunicorn web app: `rate` signed confirmations per second for `seconds`.

    `hog`: a process that spins one core at normal priority for the whole run (a noisy neighbour, a backup, a
    build), so the figure says what the webhook gives on a machine that is not quiet.

    The generator (bench/loadgen.py, its own process, counted as "load generator") shares the two cores with the
    app, so it is made to cost little: one thread sending requests prepared before the run."""
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
    url = urllib.parse.urlparse(env["ADMIN_SERVICE_URL"])
    requests_ = [_raw_request(url.netloc, body, sign(body, settings.PAYMENT_WEBHOOK_SECRET)) for body in bodies]
    targets = log_dir / "webhook-requests.bin"
    write_requests(targets, requests_)
    procs = Processes({"WEB_WORKERS": "2", **env, "KAFKA_TOPIC_PREFIX": prefix}, log_dir)
    procs.start("web")
    wait_for_web(env["ADMIN_SERVICE_URL"])
    settled = quiet_database()
    spinner = subprocess.Popen(["python3", "-c", "while True: pass"]) if hog else None
    try:
        result, cpu_seconds = _load(url, rate, targets, procs.pid("web"))
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
        procs.stop()
    return {"rate": rate, "requests": total, "cpu_hog": hog, **result, "cpu_seconds": cpu_seconds,
            "waited_for_quiet_database_seconds": settled,
            "cpu_ms_per_request": {k: round(1000 * v / total, 3) for k, v in cpu_seconds.items()}}


def _load(url: urllib.parse.ParseResult, rate: int, targets: Path, web_pid: int) -> tuple[dict, dict[str, float]]:
    """Run bench.loadgen on the prepared requests; its summary, and the CPU each component used meanwhile."""
    generator = subprocess.Popen([sys.executable, "-m", "bench.loadgen", url.hostname, str(url.port), str(rate),
                                  str(targets)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        generator.stdout.readline()  # "ready": its start-up is not counted
        cpu = measure(lambda: {"web": web_pid})
        out, _ = generator.communicate()
        cpu_seconds = cpu()
    finally:
        if generator.poll() is None:
            generator.kill()
            generator.wait()
    if generator.returncode:
        raise RuntimeError(f"bench.loadgen exited with {generator.returncode}")
    result = json.loads(out)
    cpu_seconds["load generator"] = result.pop("own_cpu_seconds")  # it has exited: /proc no longer has it
    return result, cpu_seconds


def _raw_request(host: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (f"POST /api/payments/confirmations HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{head}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body
