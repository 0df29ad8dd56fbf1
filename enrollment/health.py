"""Liveness and readiness of the web app.

/healthz  liveness: the process answers. Touches no dependency, so a database outage never makes the
          orchestrator restart healthy web processes (a restart would not bring PostgreSQL back).
/readyz   readiness: PostgreSQL (`SELECT 1`), Redis (PING) and Kafka (cluster metadata) answer within short
          timeouts. 503 names the failed check(s); the load balancer then sends traffic elsewhere.
          `?check=database` (repeatable or comma-separated) runs only the named checks: the webhook needs only
          PostgreSQL (events wait in the outbox while Kafka is down; pages are served uncached without Redis),
          so a load balancer may want only that one, while monitoring asks for all (docs/operations.md).

The Kafka check's outcome is reused for READYZ_KAFKA_CACHE_SECONDS (1 s) by every request of a process (`Cached`).
Checks run one after the other, so the worst case is about the sum of their timeouts (Redis: REDIS_CONNECT_TIMEOUT
and REDIS_TIMEOUT; Kafka: HEALTH_CHECK_TIMEOUT_SECONDS; PostgreSQL: its connect timeout). The body says which
check failed and the exception class only; the detail goes to the log, not to whoever can reach the endpoint.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka.admin import AdminClient
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_redis import get_redis_connection

from workers.kafka import base_config

log = logging.getLogger(__name__)


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    get_redis_connection("default").ping()


def check_kafka() -> None:
    """Cluster metadata from a short-lived admin client (a cached client would retry a dead broker forever)."""
    timeout = settings.HEALTH_CHECK_TIMEOUT_SECONDS
    client = AdminClient({
        **base_config(),
        "socket.timeout.ms": int(timeout * 1000),
        "socket.connection.setup.timeout.ms": int(timeout * 1000),
        "logger": logging.getLogger("enrollment.health.kafka"),
    })
    metadata = client.list_topics(timeout=timeout)
    if not metadata.brokers:
        raise ConnectionError("no broker in the cluster metadata")


class Cached:
    """A check whose outcome (success or the exception) is reused for `seconds` by every request of this
    process: /readyz is public, and a flood of requests must not become a flood of broker connections. Requests
    that arrive while the check runs wait for its outcome instead of starting their own."""

    def __init__(self, probe: Callable[[], None], seconds: Callable[[], float], target: Callable[[], str]) -> None:
        self.probe, self.seconds, self.target = probe, seconds, target
        self._lock = threading.Lock()
        self._at: float | None = None
        self._checked: str | None = None  # what was checked (the broker list): another target is checked anew
        self._error: Exception | None = None

    def __call__(self) -> None:
        with self._lock:
            target = self.target()
            if self._at is None or self._checked != target or time.monotonic() - self._at >= self.seconds():
                try:
                    self.probe()
                    self._error = None
                except Exception as exc:
                    self._error = exc
                self._at, self._checked = time.monotonic(), target
            error = self._error
        if error is not None:
            raise error


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "kafka": Cached(check_kafka, seconds=lambda: settings.READYZ_KAFKA_CACHE_SECONDS,
                    target=lambda: settings.KAFKA_BROKERS),
}


def run_checks(names: list[str] | None = None) -> dict[str, dict[str, object]]:
    """name -> {"status": "ok"|"error", "latency_ms": float[, "error": exception class]}, for `names` or all."""
    results: dict[str, dict[str, object]] = {}
    for name in names or list(CHECKS):
        probe = CHECKS[name]
        started = time.perf_counter()
        try:
            probe()
            outcome: dict[str, object] = {"status": "ok"}
        except Exception as exc:  # any failure means "not ready"; the class is enough for the caller
            log.warning("readiness check failed", extra={"check": name, "error": repr(exc)})
            outcome = {"status": "error", "error": type(exc).__name__}
        outcome["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        results[name] = outcome
    return results


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    names = [n for value in request.GET.getlist("check") for n in value.split(",") if n]
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        return JsonResponse({"error": f"unknown check(s): {', '.join(unknown)}", "checks": list(CHECKS)}, status=400)
    checks = run_checks(list(dict.fromkeys(names)) or None)
    failed = [name for name, result in checks.items() if result["status"] != "ok"]
    body = {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}
    return JsonResponse(body, status=503 if failed else 200)
