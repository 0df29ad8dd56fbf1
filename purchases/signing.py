"""HMAC-SHA256 signatures of payment webhooks, shared by the webhook, the tests and the demo load generator.

The provider signs `f"{timestamp}.".encode() + raw_body` with the shared secret and sends
`X-Signature-Timestamp: <unix seconds>` and `X-Signature: <hex digest>`. Signing the timestamp with the body
lets us refuse replays of an old, validly signed request (outside the tolerance window).

Rotation (docs/operations.md, "Rotating the webhook secret"): PAYMENT_WEBHOOK_SECRET is the current secret and
PAYMENT_WEBHOOK_PREVIOUS_SECRETS the ones still accepted while the provider switches over.
"""
from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

TIMESTAMP_HEADER = "X-Signature-Timestamp"
SIGNATURE_HEADER = "X-Signature"


class InvalidSignature(Exception):
    """The request is not signed by the provider, or the signature is too old or too new."""


def signature(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers a provider sends with `body` (timestamp defaults to now)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: signature(body, secret, ts)}


def verify(
    body: bytes,
    secrets: str | Sequence[str],
    timestamp_header: str | None,
    signature_header: str | None,
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> int:
    """Check the signature and its freshness; returns the timestamp or raises InvalidSignature(reason).

    `secrets` may hold several: during a rotation a signature by the new secret or by a previous one is accepted
    (each compared in constant time)."""
    if not timestamp_header or not signature_header:
        raise InvalidSignature("missing signature headers")
    ts_text = timestamp_header.strip()
    if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
        raise InvalidSignature("malformed signature timestamp")
    ts = int(ts_text)
    given = signature_header.strip().lower().encode("utf-8", "replace")
    candidates = [secrets] if isinstance(secrets, str) else list(secrets)
    matches = [hmac.compare_digest(signature(body, secret, ts).encode(), given) for secret in candidates if secret]
    if not any(matches):
        raise InvalidSignature("bad signature")
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        raise InvalidSignature("signature timestamp outside the tolerance window")
    return ts
