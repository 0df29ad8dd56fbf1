"""A message of the dead-letter topic -> the fields of its DeadLetter row, whatever its dlq.* headers hold.

The persister must never stall: a header it cannot store as it is (an impossible date, an over-long stage name,
an attempt count out of range, a NUL byte) would otherwise fail the INSERT, and the batch would be read again
forever. So every field is checked here against its column; what does not fit is replaced by a safe value (the
message's own topic and offset, the time of storing, empty), and the row is flagged `malformed` with what was
replaced. Such a row is shown and filterable in the admin, and never replayed.
"""
from __future__ import annotations

import datetime
import uuid
from typing import Any

from confluent_kafka import Message
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from workers import oversize
from workers.dead_letters import context_from_headers, encode_headers
from workers.models import DeadLetter

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
TEXT_LIMITS = {"stage": 64, "consumer_group": 100, "event_type": 64, "original_topic": 249, "error_class": 200,
               "partition_key": 255}


def _clean(text: str) -> str:
    """Text PostgreSQL can store: no NUL (headers were decoded with errors="replace", so it is valid UTF-8)."""
    return text.replace("\x00", "\\x00")


class _Fields:
    """Collects the row's fields and what had to be replaced."""

    def __init__(self, context: dict[str, str]) -> None:
        self.context = context
        self.problems: list[str] = []

    def text(self, name: str, default: str = "", *, header: str | None = None) -> str:
        value = _clean(self.context.get(header or name, default))
        limit = TEXT_LIMITS.get(name)
        if limit is not None and len(value) > limit:
            self.problems.append(f"{header or name}: {len(value)} characters, over {limit}; cut")
            value = value[:limit]
        return value

    def integer(self, name: str, default: int, bounds: tuple[int, int]) -> int:
        raw = self.context.get(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}: not a number ({raw[:40]!r})")
            return default
        if not bounds[0] <= value <= bounds[1]:
            self.problems.append(f"{name}: {value} is out of range")
            return default
        return value

    def moment(self, name: str) -> datetime.datetime:
        raw = self.context.get(name)
        try:
            parsed = parse_datetime(raw) if raw else None
        except ValueError:  # well formed, but impossible (February 30th)
            parsed = None
        if parsed is None:
            if raw:
                self.problems.append(f"{name}: not a date ({raw[:40]!r})")
            return timezone.now()
        return timezone.make_aware(parsed, datetime.UTC) if timezone.is_naive(parsed) else parsed

    def identifier(self, name: str) -> uuid.UUID | None:
        raw = self.context.get(name)
        try:
            return uuid.UUID(raw) if raw else None
        except ValueError:
            self.problems.append(f"{name}: not a UUID ({raw[:40]!r})")
            return None

    def reason(self) -> str:
        raw = self.context.get("reason", "")
        if raw in DeadLetter.Reason.values:
            return raw
        if raw:
            self.problems.append(f"reason: unknown ({raw[:40]!r})")
        return DeadLetter.Reason.UNKNOWN


def row_fields(msg: Message) -> dict[str, Any]:
    """The DeadLetter fields of one DLQ message; never raises on what its headers hold."""
    context, original_headers = context_from_headers(msg.headers())
    f = _Fields(context)
    cut = {name[len(oversize.CUT_PREFIX):]: _clean(value)[:200] for name, value in context.items()
           if name.startswith(oversize.CUT_PREFIX)}
    fields = {
        "stage": f.text("stage", "unknown"),
        "consumer_group": f.text("consumer_group", "unknown"),
        "event_id": f.identifier("event_id"),
        "event_type": f.text("event_type"),
        "original_topic": f.text("original_topic", msg.topic()),
        "original_partition": f.integer("original_partition", msg.partition(), INT32),
        "original_offset": f.integer("original_offset", msg.offset(), INT64),
        "key": msg.key(),
        "headers": encode_headers(original_headers),
        "payload": msg.value() or b"",
        "reason": f.reason(),
        "error_class": f.text("error_class"),
        "error_message": f.text("error_message"),
        "traceback": f.text("traceback"),
        "attempts": f.integer("attempts", 0, (0, INT32[1])),
        "first_failed_at": f.moment("first_failed_at"),
        "last_failed_at": f.moment("last_failed_at"),
        "correlation_id": f.identifier("correlation_id"),
        "partition_key": f.text("partition_key") or None,
        "cut": cut,
    }
    fields["malformed"] = bool(f.problems)
    fields["malformed_detail"] = "; ".join(f.problems)
    return fields


def fallback_fields(msg: Message, error: Exception) -> dict[str, Any]:
    """The row of a message whose fields PostgreSQL still refused: where it is, its bytes, and why."""
    return {
        "stage": "unknown", "consumer_group": "unknown", "event_type": "", "original_topic": msg.topic(),
        "original_partition": msg.partition(), "original_offset": msg.offset(), "key": msg.key(),
        "headers": encode_headers(msg.headers()), "payload": msg.value() or b"", "error_class": "",
        "error_message": "", "attempts": 0, "first_failed_at": timezone.now(), "last_failed_at": timezone.now(),
        "malformed": True, "malformed_detail": f"could not be stored with its context: {_clean(str(error))[:500]}",
    }
