"""The allocation API (the seed's admin-service), called over HTTP by the allocation consumer.

POST /api/allocations          {"student_id", "course_id", "purchase_id", "correlation_id"?}
POST /api/allocations/batch    {"requests": [ up to 500 of the above ]}
POST /api/allocations/release  {"purchase_ids": [up to 500]}: cancel the purchases' holding allocations and their
                               future sessions
Auth: `Authorization: Bearer <ALLOCATION_API_TOKEN>`.

Single answers: 201 created / 200 existing with the allocation; 409 {"error": "no trainer with capacity",
"reason"}; 410 the purchase was cancelled (nothing to allocate any more); 422 an unknown purchase, or one of
another student or course; 400 bad body {"errors": {field: msg}}; 401 bad token.
Release answers 200 {"released": [{"allocation_id", "purchase_id", "status", "sessions_cancelled"}]} (empty when
nothing held).
The batch answers 200 {"results": [{"status": <the code the single endpoint would give>, "body": <its body>}]}
in request order. Invalid items are answered 400 on their own; the valid ones are allocated together by
`allocate_many` (one transaction per course), so a bad item never affects the others.
"""
from __future__ import annotations

import hmac
import logging
import uuid
from typing import Annotated, Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from allocations.batch import AllocationOutcome, Placed, Request, allocate_many
from allocations.errors import AllocationError, NoCapacity, PurchaseCancelled, UnknownPurchase
from allocations.models import TrainerAllocation
from allocations.release import release
from allocations.services import allocate
from enrollment.http import field_errors, json_response

MAX_BATCH = 500
BATCH_TRIES = 3  # a batch that PostgreSQL aborted (deadlock, serialization failure) is run again this often
ABORTED = {"40P01", "40001"}  # deadlock_detected, serialization_failure
log = logging.getLogger(__name__)


class AllocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    student_id: Annotated[int, Field(strict=True, gt=0, lt=2**63)]
    course_id: Annotated[int, Field(strict=True, gt=0, lt=2**63)]
    purchase_id: Annotated[int, Field(strict=True, gt=0, lt=2**63)]
    correlation_id: uuid.UUID | None = None


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    purchase_ids: Annotated[list[Annotated[int, Field(strict=True, gt=0, lt=2**63)]],
                            Field(min_length=1, max_length=MAX_BATCH)]


def allocation_body(allocation: TrainerAllocation | Placed, created: bool) -> dict[str, Any]:
    return {
        "allocation_id": allocation.pk,
        "trainer_id": allocation.trainer_id,
        "student_id": allocation.student_id,
        "course_id": allocation.course_id,
        "slot_time": allocation.slot_time.strftime("%H:%M"),
        "status": allocation.status,
        "created": created,
    }


def validate(raw: Any) -> AllocationRequest | tuple[int, dict[str, Any]]:
    """A parsed request, or the (400, body) answer for it."""
    if not isinstance(raw, dict):
        return 400, {"errors": {"body": "each request must be a JSON object"}}
    try:
        return AllocationRequest.model_validate(raw)
    except ValidationError as exc:
        return 400, {"errors": field_errors(exc)}


def answer(req: AllocationRequest, outcome: AllocationOutcome) -> tuple[int, dict]:
    """(HTTP status, body) for the outcome of one request."""
    if isinstance(outcome, NoCapacity):
        return 409, {"error": "no trainer with capacity", "reason": outcome.reason}
    if isinstance(outcome, PurchaseCancelled):
        return 410, {"error": "purchase cancelled", "purchase_id": req.purchase_id}
    if isinstance(outcome, UnknownPurchase):
        return 422, {"error": str(outcome), "purchase_id": req.purchase_id}
    allocation, created = outcome
    return (201 if created else 200), allocation_body(allocation, created)


def process(raw: Any) -> tuple[int, dict[str, Any]]:
    """One allocation request (already parsed JSON) -> (HTTP status, body)."""
    req = validate(raw)
    if not isinstance(req, AllocationRequest):
        return req
    try:
        outcome: tuple[TrainerAllocation, bool] | AllocationError = allocate(
            req.student_id, req.course_id, req.correlation_id, purchase_id=req.purchase_id
        )
    except AllocationError as exc:
        outcome = exc
    return answer(req, outcome)


def process_many(items: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    """A batch: invalid items answered 400, the valid ones allocated together (`allocate_many`)."""
    parsed = [validate(item) for item in items]
    valid = [(i, req) for i, req in enumerate(parsed) if isinstance(req, AllocationRequest)]
    outcomes = _allocate_many([Request(req.student_id, req.course_id, req.correlation_id, req.purchase_id)
                               for _, req in valid])
    answers: list[Any] = list(parsed)
    for (i, req), outcome in zip(valid, outcomes):
        answers[i] = answer(req, outcome)
    return answers


def _allocate_many(requests: list[Request]) -> list[AllocationOutcome]:
    """`allocate_many`, run again when PostgreSQL aborted its transaction to break a deadlock or a serialization
    failure: it rolled back whole, so another try is safe, and cheaper than the consumer's fallback of one request
    at a time. Batches lock their trainers in one order (allocations.batch), so this is for the rare rest."""
    for attempt in range(1, BATCH_TRIES + 1):
        try:
            return allocate_many(requests)
        except OperationalError as exc:
            if (attempt == BATCH_TRIES or getattr(exc.__cause__, "sqlstate", None) not in ABORTED
                    or transaction.get_connection().in_atomic_block):
                raise
            log.warning("allocation batch aborted by the database; trying again", extra={"error": str(exc),
                                                                                        "attempt": attempt})
    raise AssertionError("unreachable")


def _authorized(request: HttpRequest) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    expected = settings.ALLOCATION_API_TOKEN
    return (
        scheme.lower() == "bearer"
        and bool(expected)
        and hmac.compare_digest(token.strip().encode("utf-8", "replace"), expected.encode())
    )


def _parse(request: HttpRequest) -> tuple[Any, HttpResponse | None]:
    if request.method != "POST":
        response = json_response({"error": "method not allowed: POST a JSON body"}, status=405)
        response["Allow"] = "POST"
        return None, response
    if not _authorized(request):
        return None, json_response({"error": "missing or wrong bearer token"}, status=401)
    try:
        # orjson, as the client encodes: a batch body is up to 500 requests. It refuses NaN and Infinity, which
        # json.loads let through; an integer past 64 bits becomes a float, which the strict id fields refuse.
        return orjson.loads(request.body), None
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE: Django refuses to read it
        return None, json_response({"error": "body too large"}, status=413)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, hostile nesting
        return None, json_response({"error": "body is not valid JSON"}, status=400)


@csrf_exempt
def allocate_one(request: HttpRequest) -> HttpResponse:
    raw, problem = _parse(request)
    if problem is not None:
        return problem
    status, body = process(raw)
    return json_response(body, status)


@csrf_exempt
def allocate_batch(request: HttpRequest) -> HttpResponse:
    raw, problem = _parse(request)
    if problem is not None:
        return problem
    items = raw.get("requests") if isinstance(raw, dict) else None
    if not isinstance(items, list) or not items:
        return json_response({"errors": {"requests": "a non-empty list is required"}}, status=400)
    if len(items) > MAX_BATCH:
        return json_response({"errors": {"requests": f"at most {MAX_BATCH} requests per batch"}}, status=400)
    results = [{"status": status, "body": body} for status, body in process_many(items)]
    return json_response({"results": results})


@csrf_exempt
def release_purchase(request: HttpRequest) -> HttpResponse:
    raw, problem = _parse(request)
    if problem is not None:
        return problem
    try:
        req = ReleaseRequest.model_validate(raw)
    except ValidationError as exc:
        return json_response({"errors": field_errors(exc)}, status=400)
    with transaction.atomic():
        released = release(purchase_ids=req.purchase_ids)
    return json_response({"released": [{"allocation_id": r.allocation_id, "purchase_id": r.purchase_id,
                                       "status": r.status,
                                       "sessions_cancelled": r.sessions_cancelled} for r in released]})
