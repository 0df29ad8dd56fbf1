"""What the JSON APIs (the payment webhooks, the allocation API) share: the field errors of a refused body."""
from __future__ import annotations

from pydantic import ValidationError


def field_errors(exc: ValidationError) -> dict[str, str]:
    """field path ("amount", "requests.3.student_id"; "body" for the whole body) -> the first error's message."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        errors.setdefault(".".join(str(part) for part in err["loc"]) or "body", err["msg"])
    return errors
