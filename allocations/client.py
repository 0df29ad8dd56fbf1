"""HTTP client of the allocation API, with the failure mapping the consumer framework needs.

- timeouts, connection errors, 5xx, 429 and 409 (no trainer has capacity right now) -> TransientError
- 410 (the purchase was cancelled meanwhile)                                        -> Superseded
- any other 4xx (bad token, unknown purchase, bad request)                          -> PermanentError
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from allocations.api import MAX_BATCH
from workers.errors import DependencyUnavailable, PermanentError, Superseded, TransientError

# Requests are encoded, and answers decoded, by orjson: the allocations stage posts batches of up to MAX_BATCH.
JSON_CONTENT = {"Content-Type": "application/json"}
TRANSIENT_STATUSES = {409, 429}


@dataclass(frozen=True)
class AllocationRequest:
    student_id: int
    course_id: int
    purchase_id: int
    correlation_id: uuid.UUID | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "student_id": self.student_id,
            "course_id": self.course_id,
            "purchase_id": self.purchase_id,
            "correlation_id": str(self.correlation_id) if self.correlation_id else None,
        }


@dataclass(frozen=True)
class AllocationResult:
    allocation_id: int
    trainer_id: int
    student_id: int
    course_id: int
    slot_time: str
    status: str
    created: bool

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> AllocationResult:
        try:
            return cls(**{name: body[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise TransientError(f"allocation API answered an unexpected body: {body!r:.200}") from exc


def error_for(status: int, body: Any, what: str) -> TransientError | PermanentError | Superseded:
    """The exception (not raised) for a non-2xx answer."""
    detail = body if isinstance(body, dict) else {}
    message = f"{what}: HTTP {status} {detail.get('error') or detail.get('errors') or ''}".strip()
    if detail.get("reason"):
        message += f" ({detail['reason']})"
    if status >= 500:
        return DependencyUnavailable(message)
    if status in TRANSIENT_STATUSES:
        return TransientError(message)
    if status == 410:
        return Superseded(message)
    return PermanentError(message)


def result_or_error(status: int, body: Any, what: str) -> AllocationResult | Exception:
    if status in (200, 201):
        if not isinstance(body, dict):
            return TransientError(f"{what}: HTTP {status} without a JSON object body")
        return AllocationResult.from_body(body)
    return error_for(status, body, what)


class AllocationClient:
    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float | None = None) -> None:
        self.base_url = (base_url if base_url is not None else settings.ADMIN_SERVICE_URL).rstrip("/")
        self.token = token if token is not None else settings.ALLOCATION_API_TOKEN
        self.timeout = timeout if timeout is not None else settings.ALLOCATION_API_TIMEOUT_SECONDS
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0))
        self.session.mount("https://", HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0))
        self.session.headers.update({"Authorization": f"Bearer {self.token}", "Accept": "application/json"})

    def close(self) -> None:
        self.session.close()

    def _post(self, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        url = f"{self.base_url}{path}"
        try:
            response = self.session.post(url, data=orjson.dumps(payload), headers=JSON_CONTENT,
                                         timeout=self.timeout)
        except requests.Timeout as exc:
            raise DependencyUnavailable(f"allocation API timed out after {self.timeout}s ({url})") from exc
        except requests.RequestException as exc:  # connection refused/reset, DNS, ...
            raise DependencyUnavailable(f"allocation API unreachable ({url}): {exc}") from exc
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        return response.status_code, body

    def allocate(self, request: AllocationRequest) -> AllocationResult:
        what = f"allocation of student {request.student_id} to course {request.course_id}"
        status, body = self._post("/api/allocations", request.as_json())
        result = result_or_error(status, body, what)
        if isinstance(result, Exception):
            raise result
        return result

    def allocate_many(
        self, requests_: Sequence[AllocationRequest]
    ) -> list[AllocationResult | Exception]:
        """One HTTP call per MAX_BATCH allocations (the API's limit); per item, the result or the exception it
        maps to (not raised). A failure of a call as a whole (timeout, 5xx, 401, ...) is raised."""
        results: list[AllocationResult | Exception] = []
        for start in range(0, len(requests_), MAX_BATCH):
            results += self._allocate_chunk(requests_[start:start + MAX_BATCH])
        return results

    def _allocate_chunk(self, requests_: Sequence[AllocationRequest]) -> list[AllocationResult | Exception]:
        status, body = self._post("/api/allocations/batch", {"requests": [r.as_json() for r in requests_]})
        if status != 200:
            raise error_for(status, body, f"allocation batch of {len(requests_)}")
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list) or len(results) != len(requests_):
            raise TransientError("allocation batch answered an unexpected body")
        return [
            result_or_error(item.get("status", 0), item.get("body"), f"allocation of student {req.student_id} "
                            f"to course {req.course_id}")
            for req, item in zip(requests_, results)
        ]


    def release(self, purchase_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Cancel the purchases' holding allocations (and their future sessions), one call per MAX_BATCH
        purchases; returns what was released."""
        released: list[dict[str, Any]] = []
        for start in range(0, len(purchase_ids), MAX_BATCH):
            released += self._release_chunk(purchase_ids[start:start + MAX_BATCH])
        return released

    def _release_chunk(self, purchase_ids: Sequence[int]) -> list[dict[str, Any]]:
        status, body = self._post("/api/allocations/release", {"purchase_ids": list(purchase_ids)})
        released = body.get("released") if status == 200 and isinstance(body, dict) else None
        if status != 200:
            raise error_for(status, body, f"release of {len(purchase_ids)} purchase(s)")
        if not isinstance(released, list):
            raise TransientError("allocation release answered an unexpected body")
        return released


_client: AllocationClient | None = None


def get_client() -> AllocationClient:
    """The process-wide client, rebuilt when its settings change (tests point it at a live server)."""
    global _client
    wanted = (settings.ADMIN_SERVICE_URL.rstrip("/"), settings.ALLOCATION_API_TOKEN,
              settings.ALLOCATION_API_TIMEOUT_SECONDS)
    if _client is None or (_client.base_url, _client.token, _client.timeout) != wanted:
        if _client is not None:
            _client.close()
        _client = AllocationClient()
    return _client


def close_client() -> None:
    """Close the process-wide client's connections (worker shutdown, tests)."""
    global _client
    if _client is not None:
        _client.close()
        _client = None
