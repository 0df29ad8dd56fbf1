"""What the JSON APIs (the payment webhooks, the allocation API) share: the field errors of a refused body, and
their answers."""
from __future__ import annotations

from typing import Any

import orjson
from django.http import HttpResponse
from pydantic import ValidationError


def json_response(body: Any, status: int = 200) -> HttpResponse:
    """`JsonResponse(body, status=status)` for bodies of JSON types (dicts, lists, str, int, bool, None), encoded
    by orjson: the allocation API answers a batch of 50-500 allocations per request, and json.dumps was 5 % of
    its CPU end to end (py-spy, docs/benchmarks.md)."""
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def field_errors(exc: ValidationError) -> dict[str, str]:
    """field path ("amount", "requests.3.student_id"; "body" for the whole body) -> the first error's message."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        errors.setdefault(".".join(str(part) for part in err["loc"]) or "body", err["msg"])
    return errors
