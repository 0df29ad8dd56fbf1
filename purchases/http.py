"""What the provider's webhooks (confirmations, refunds) share: a signed JSON object POSTed to us.

`read_signed_json` answers everything that is wrong with the request itself (405, 415, 413, 401, 400) and hands
back the parsed object; each webhook validates its own body.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from decimal import Decimal
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from purchases.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidSignature, verify

MAX_BODY_BYTES = 64 * 1024
# Provider ids are opaque tokens ("pi_3MtwBw...", "re_...", UUIDs): letters, digits and _ . : - only. Anything
# else (NUL bytes PostgreSQL cannot store, markup, quotes, spaces) is refused, not stored.
PROVIDER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
MAX_AMOUNT = Decimal("1000000.00")
AMOUNT_RE = re.compile(r"^(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?$")
CENTS = Decimal("0.01")


def decimal_amount(value: Any) -> Decimal:
    """Money travels as strings ("49.00"): a float has already lost precision by the time we see it."""
    if not isinstance(value, str) or not AMOUNT_RE.match(value):
        raise ValueError('amount must be a decimal string with at most 2 decimals, such as "49.00"')
    return Decimal(value).quantize(CENTS)


ProviderId = Annotated[str, Field(strict=True, min_length=1, max_length=128, pattern=PROVIDER_ID_PATTERN)]
Money = Annotated[Decimal, BeforeValidator(decimal_amount), Field(gt=0, le=MAX_AMOUNT)]
Currency = Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]
UtcTime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(datetime.UTC))]


class ProviderBody(BaseModel):
    """A provider's webhook body. Unknown extra fields are ignored (providers add fields over time) and do not
    take part in the content hash."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def content_sha256(self) -> str:
        """SHA-256 of the canonical JSON of the validated body: sorted keys, amounts with 2 decimals, times in
        UTC, so formatting differences of one notice do not look like a conflict."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def error(status: int, message: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def field_errors(exc: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "body"
        errors.setdefault(field, err["msg"])
    return errors


def read_signed_json(request: HttpRequest, what: str) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    """(the body as a JSON object, None), or (None, the 4xx answer). `what` names the body in messages."""
    if request.method != "POST":
        response = error(405, f"method not allowed: POST a signed JSON {what}")
        response["Allow"] = "POST"
        return None, response
    if request.content_type and request.content_type != "application/json":
        return None, error(415, "Content-Type must be application/json")
    try:
        body = request.body
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE: Django refuses to read it at all
        body = None
    if body is None or len(body) > MAX_BODY_BYTES:
        return None, error(413, f"body over {MAX_BODY_BYTES} bytes")
    try:
        verify(
            body,
            settings.PAYMENT_WEBHOOK_SECRET,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            tolerance_seconds=settings.PAYMENT_WEBHOOK_TOLERANCE_SECONDS,
        )
    except InvalidSignature as exc:
        return None, error(401, str(exc))
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, an integer over 4300 digits, hostile nesting
        return None, error(400, "body is not valid JSON")
    if not isinstance(raw, dict):
        return None, error(400, "body must be a JSON object")
    return raw, None
