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
from django.http import HttpRequest, HttpResponse, UnreadablePostError
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from enrollment.events import AMOUNT_PATTERN
from enrollment.http import json_response
from purchases.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidSignature, verify

MAX_BODY_BYTES = 64 * 1024
# Provider ids are opaque tokens ("pi_3MtwBw...", "re_...", UUIDs): letters, digits and _ . : - only. Anything
# else (NUL bytes PostgreSQL cannot store, markup, quotes, spaces) is refused, not stored.
PROVIDER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
MAX_AMOUNT = Decimal("1000000.00")
AMOUNT_RE = re.compile(rf"^{AMOUNT_PATTERN}$")
CENTS = Decimal("0.01")
# The signature headers as WSGI names them: read from request.META, so that request.headers (a dict of every header,
# built on first use) is never built on the webhook's path.
TIMESTAMP_META = "HTTP_" + TIMESTAMP_HEADER.upper().replace("-", "_")
SIGNATURE_META = "HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")


def decimal_amount(value: Any) -> Decimal:
    """Money travels as strings ("49.00"): a float has already lost precision by the time we see it."""
    if not isinstance(value, str) or not AMOUNT_RE.match(value):
        raise ValueError('amount must be a decimal string with at most 2 decimals, such as "49.00"')
    return Decimal(value).quantize(CENTS)


def utc(value: datetime.datetime) -> datetime.datetime:
    """The time in UTC; a time whose UTC date is out of Python's range (year 1 or 9999 with an offset) is refused
    as invalid, where the OverflowError used to escape as a 500."""
    try:
        return value.astimezone(datetime.UTC)
    except OverflowError:
        raise ValueError("time out of range once converted to UTC") from None


ProviderId = Annotated[str, Field(strict=True, min_length=1, max_length=128, pattern=PROVIDER_ID_PATTERN)]
Money = Annotated[Decimal, BeforeValidator(decimal_amount), Field(gt=0, le=MAX_AMOUNT)]
Currency = Annotated[str, Field(strict=True, pattern=r"^[A-Z]{3}$")]
UtcTime = Annotated[AwareDatetime, AfterValidator(utc)]


class ProviderBody(BaseModel):
    """A provider's webhook body. Unknown extra fields are ignored (providers add fields over time) and do not
    take part in the content hash."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    def content_sha256(self) -> str:
        """SHA-256 of the canonical JSON of the validated body: sorted keys, amounts with 2 decimals, times in
        UTC, so formatting differences of one notice do not look like a conflict."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def error(status: int, message: str, **extra: Any) -> HttpResponse:
    return json_response({"error": message, **extra}, status=status)


def _limit_reads(request: HttpRequest) -> None:
    """Under gunicorn, give the client's socket a read timeout of WEBHOOK_BODY_TIMEOUT_SECONDS for the rest of the
    connection: a client that sends its body slowly (or not at all) is cut off with 408 instead of holding a web
    thread, and so is one that trickles in a body we refused unread (gunicorn drains it before the next request
    of a keep-alive connection). Django's development and test servers have no such socket."""
    sock = request.META.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(settings.WEBHOOK_BODY_TIMEOUT_SECONDS)


def _read_body(request: HttpRequest) -> tuple[bytes, HttpResponse | None]:
    try:
        body = request.body
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE: Django refuses to read it at all
        return b"", error(413, f"body over {MAX_BODY_BYTES} bytes")
    except (OSError, UnreadablePostError):  # the read timed out (TimeoutError is an OSError) or the client left
        return b"", error(408, f"body not received within {settings.WEBHOOK_BODY_TIMEOUT_SECONDS:g} s")
    if len(body) > MAX_BODY_BYTES:
        return b"", error(413, f"body over {MAX_BODY_BYTES} bytes")
    return body, None


def read_signed_json(request: HttpRequest, what: str) -> tuple[dict[str, Any] | None, HttpResponse | None]:
    """(the body as a JSON object, None), or (None, the 4xx answer). `what` names the body in messages."""
    if request.method != "POST":
        response = error(405, f"method not allowed: POST a signed JSON {what}")
        response["Allow"] = "POST"
        return None, response
    _limit_reads(request)
    if request.content_type and request.content_type != "application/json":
        return None, error(415, "Content-Type must be application/json")
    timestamp, signature = request.META.get(TIMESTAMP_META), request.META.get(SIGNATURE_META)
    if not timestamp or not signature:
        return None, error(401, "missing signature headers")  # refused before a byte of the body is read
    declared = request.META.get("CONTENT_LENGTH") or ("" if "HTTP_TRANSFER_ENCODING" in request.META else "0")
    if not declared.isdigit():  # a chunked body: its size is unknown until it has all been read
        return None, error(411, "Content-Length is required")
    if int(declared) > MAX_BODY_BYTES:  # from the header: the body is never read
        return None, error(413, f"body over {MAX_BODY_BYTES} bytes")
    body, problem = _read_body(request)
    if problem is not None:
        return None, problem
    try:
        verify(
            body,
            [settings.PAYMENT_WEBHOOK_SECRET, *settings.PAYMENT_WEBHOOK_PREVIOUS_SECRETS],
            timestamp,
            signature,
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
