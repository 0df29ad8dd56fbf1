"""The envelope every message carries, and its decoding: the framework's half of the event contract.

A message value is UTF-8 JSON:
    {"event_id": UUID, "event_type": "...", "version": 1, "occurred_at": ISO 8601 UTC,
     "correlation_id": UUID (one per business flow), "causation_id": UUID | null, "payload": {...}}
The payload's schema, the topic of each event type and the partition key field come from the application's
contract (`settings.PIPELINE_CONTRACT`, see workers.contract). `decode()` turns bytes into a validated
`Event` or raises `InvalidEvent` with the reason; invalid messages are never retried, they go straight to
the dead-letter queue.

The envelope's rule is a pydantic model (`_Envelope`, exact error messages), with a msgspec fast path in front of
it; a payload is checked by msgspec against its schema, the same way on both paths.
"""
from __future__ import annotations

import datetime
import decimal
import functools
import json
import re
import uuid
from typing import Annotated, Any

import msgspec
import orjson
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workers.kafka import topic
from workers.registry import contract
from workers.uuids import uuid7


class InvalidEvent(Exception):
    """The message cannot be an event of the contract. Never retried; dead-lettered with this reason."""


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: uuid.UUID
    event_type: Annotated[str, Field(min_length=1, max_length=64)]
    version: Annotated[int, Field(ge=1, strict=True)]
    occurred_at: datetime.datetime
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    payload: dict[str, Any]

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime.datetime) -> datetime.datetime:
        if value.tzinfo is None:
            raise ValueError("occurred_at must carry a time zone (ISO 8601 UTC)")
        return value


class _FastEnvelope(msgspec.Struct, forbid_unknown_fields=True):
    """`_Envelope` for msgspec, the fast path of `decode()`: it accepts a subset of what `_Envelope` accepts
    (e.g. no braced or URN UUIDs, no times without seconds; tests/workers/test_envelope.py compares them), so
    anything it refuses is decided by the step-by-step path."""

    event_id: uuid.UUID
    event_type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    version: Annotated[int, msgspec.Meta(ge=1)]
    occurred_at: Annotated[datetime.datetime, msgspec.Meta(tz=True)]
    correlation_id: uuid.UUID
    payload: msgspec.Raw  # decoded by its schema's own decoder once the type and version are known
    causation_id: uuid.UUID | None = None


_FAST_DECODER = msgspec.json.Decoder(_FastEnvelope)
# msgspec rounds a time's fraction of more than 6 digits to the microsecond where pydantic cuts it: a message with
# such a run of digits anywhere (a Java Instant's nanoseconds, say) takes the step-by-step path.
_SUB_MICROSECOND = re.compile(rb"\.[0-9]{7}")


class Event(msgspec.Struct, frozen=True):
    """A decoded or built event. A frozen msgspec Struct rather than a frozen dataclass: every stage makes one
    per consumed and per emitted event, and a frozen dataclass's __init__ (one object.__setattr__ per field) cost
    1.1 us of it against 0.1."""

    event_id: uuid.UUID
    event_type: str
    version: int
    occurred_at: datetime.datetime
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    payload: Any  # the payload schema's instance (a msgspec Struct) for (event_type, version)

    @property
    def key(self) -> Any:
        """The partition key: the value of the contract's key field in the payload (None without one)."""
        return contract().key_of(self.payload)

    def to_json(self) -> bytes:
        """The message value: compact UTF-8 JSON with sorted keys, `occurred_at` in UTC with a Z.

        orjson writes the UUIDs and the datetime itself (no str() or isoformat() per field: 6.5 us per event
        instead of 16 here) and the payload's fields; a Decimal (an amount) is written as its string. The bytes
        are the same as those of `json.dumps` with str UUIDs and isoformat (tests/workers/test_envelope.py)."""
        occurred_at = self.occurred_at
        if occurred_at.utcoffset():
            occurred_at = occurred_at.astimezone(datetime.UTC)
        return orjson.dumps(
            {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "version": self.version,
                "occurred_at": occurred_at,
                "correlation_id": self.correlation_id,
                "causation_id": self.causation_id,
                "payload": msgspec.structs.asdict(self.payload),
            },
            option=_JSON_OPTIONS,
            default=_json_default,
        )


# orjson: a quarter of json.dumps's cost, paid once per emitted event on every stage's hot path; it writes
# non-ASCII characters as UTF-8 rather than \u escapes. Sorted keys keep the bytes canonical.
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def topic_for_event_type(event_type: str) -> str:
    """The real topic of an event type, with the configured prefix."""
    return _topic_for(settings.KAFKA_TOPIC_PREFIX, event_type)


@functools.lru_cache(maxsize=256)
def _topic_for(prefix: str, event_type: str) -> str:  # once per emitted and per consumed event: cached
    return topic(contract().topic_of(event_type))


def build_event(
    event_type: str,
    payload: dict[str, Any],
    *,
    correlation_id: uuid.UUID,
    causation_id: uuid.UUID | None = None,
    version: int = 1,
) -> Event:
    """A new event with a fresh id; the payload is validated against its schema (a bug here fails loudly, with
    msgspec.ValidationError)."""
    schema = contract().schemas[(event_type, version)]
    return Event(
        event_id=uuid7(),
        event_type=event_type,
        version=version,
        occurred_at=datetime.datetime.now(datetime.UTC),
        correlation_id=correlation_id,
        causation_id=causation_id,
        payload=msgspec.convert(payload, schema, dec_hook=contract().decode_field),
    )


@functools.lru_cache(maxsize=64)
def _payload_decoder(schema: type[msgspec.Struct]) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(schema, dec_hook=contract().decode_field)


# msgspec's message, then where: "Expected `int` >= 1 - at `$.student_id`", "Object missing required field `x`".
_MSGSPEC_ERROR = re.compile(r"(?P<message>.*?)(?: - at `\$\.?(?P<where>[^`]*)`)?", re.DOTALL)
_MSGSPEC_FIELD = re.compile(r"Object (?:missing required|contains unknown) field `(?P<field>[^`]*)`")


def _payload_reason(exc: msgspec.ValidationError) -> str:
    """msgspec's error in the form of the envelope's ("where: what"): "student_id: Field required",
    "is_admin: Extra inputs are not permitted", "amount: must be greater than 0"."""
    found = _MSGSPEC_ERROR.fullmatch(str(exc))
    message, where = found["message"], found["where"] or ""
    named = _MSGSPEC_FIELD.fullmatch(message)
    if named is not None:
        where = ".".join(filter(None, [where, named["field"]]))
        message = "Field required" if "missing" in message else "Extra inputs are not permitted"
    return f"{where or '(root)'}: {message}"


def _reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def decode(value: bytes | None, *, max_bytes: int | None = None) -> Event:
    """Bytes from Kafka -> a validated Event, or InvalidEvent saying exactly what is wrong.

    Fast path: msgspec parses and checks the envelope straight from the bytes (0.6 us against pydantic's 4.0 here),
    then the payload with its schema's decoder; valid events always take it. Anything it refuses is decoded again
    step by step, which says precisely what is wrong and is the rule for what is valid (the fast path accepts
    nothing the step-by-step path refuses)."""
    if value is None:
        raise InvalidEvent("message has no value (tombstone)")
    limit = max_bytes if max_bytes is not None else settings.KAFKA_MAX_MESSAGE_BYTES
    if len(value) > limit:
        raise InvalidEvent(f"message is {len(value)} bytes, over the {limit}-byte limit")
    if _SUB_MICROSECOND.search(value) is not None:
        return _decode_step_by_step(value)
    try:
        envelope = _FAST_DECODER.decode(value)
        payload = _payload_decoder(contract().schemas[(envelope.event_type, envelope.version)]).decode(envelope.payload)
    except Exception:  # whatever the fast path refuses, and however (msgspec raises UnicodeDecodeError, say)
        return _decode_step_by_step(value)
    return _event(envelope, payload)


def _event(envelope: _Envelope | _FastEnvelope, payload: msgspec.Struct) -> Event:
    return Event(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        version=envelope.version,
        occurred_at=envelope.occurred_at,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.causation_id,
        payload=payload,
    )


def _json(value: bytes) -> Any:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"message is not UTF-8: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"message is not JSON: {exc}") from exc
    except RecursionError:  # hostile nesting: must not escape as a crash (the batch would be rewound forever)
        raise InvalidEvent("message JSON nests too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise InvalidEvent(f"message has a JSON value that cannot be read: {exc}") from exc


def _decode_step_by_step(value: bytes) -> Event:
    raw = _json(value)
    if not isinstance(raw, dict):
        raise InvalidEvent(f"envelope must be a JSON object, got {type(raw).__name__}")
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid envelope: {_reason(exc)}") from exc
    schema = contract().schema(envelope.event_type, envelope.version)
    if schema is None:
        known = contract().versions(envelope.event_type)
        if not known:
            raise InvalidEvent(f"unknown event type {envelope.event_type!r}")
        raise InvalidEvent(f"unsupported version {envelope.version} of {envelope.event_type} (known: {known})")
    try:
        payload = msgspec.convert(envelope.payload, schema, dec_hook=contract().decode_field)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"invalid {envelope.event_type} v{envelope.version} payload: {_payload_reason(exc)}") \
            from exc
    return _event(envelope, payload)


def misplaced(event: Event, topic_name: str, prefix: str | None = None) -> InvalidEvent | None:
    """Each event type belongs on exactly one topic (the contract's `topics`). A valid event of another type on
    a pipeline topic (e.g. TRAINER_ALLOCATED on purchase-confirmed) is invalid there: a handler written for
    another payload would crash on it, or worse, act on the fields the payloads share.
    Returns the error to dead-letter it with, or None when the event is where it belongs. `prefix`: the
    KAFKA_TOPIC_PREFIX, when the caller read it once for a batch."""
    prefix = settings.KAFKA_TOPIC_PREFIX if prefix is None else prefix
    expected = _topic_for(prefix, event.event_type)
    if topic_name == expected or topic_name not in _pipeline_topics(prefix):
        return None
    return InvalidEvent(
        f"event type {event.event_type} does not belong on topic {topic_name} (its topic is {expected})")


@functools.lru_cache(maxsize=16)
def _pipeline_topics(prefix: str) -> frozenset[str]:
    return frozenset(prefix + name for name in contract().event_topics)


def forget_contract() -> None:
    """Called when a test overrides the contract: drop what was derived from the old one."""
    _pipeline_topics.cache_clear()
    _topic_for.cache_clear()
    _payload_decoder.cache_clear()
