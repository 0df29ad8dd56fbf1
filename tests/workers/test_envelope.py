"""The wire format of an event: what `Event.to_json()` writes is what every consumer (and a replay, byte for byte)
reads back. Pure functions: no services needed."""
from __future__ import annotations

import dataclasses
import datetime
import json
import uuid
import zoneinfo
from decimal import Decimal

import pytest

from enrollment.events import PURCHASE_CONFIRMED, PURCHASE_CREATED
from workers.envelope import build_event, decode


def _reference_json(event) -> bytes:
    """The format as specified: str UUIDs, ISO 8601 UTC with a Z, the payload in pydantic's JSON mode, sorted keys,
    no spaces, UTF-8."""
    return json.dumps({
        "event_id": str(event.event_id), "event_type": event.event_type, "version": event.version,
        "occurred_at": event.occurred_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "correlation_id": str(event.correlation_id),
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "payload": event.payload.model_dump(mode="json"),
    }, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


CONFIRMED = {"payment_id": 7, "provider_payment_id": "pi_é€", "student_id": 2, "course_id": 3,
             "amount": Decimal("49.00"), "currency": "EUR"}


@pytest.mark.parametrize("zone", [None, "Europe/London", "Asia/Kolkata", "America/St_Johns"])
@pytest.mark.parametrize("whole_second", [False, True])
def test_to_json_writes_the_specified_format_in_any_time_zone(zone, whole_second):
    event = build_event(PURCHASE_CONFIRMED, CONFIRMED, correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())
    occurred_at = event.occurred_at.replace(microsecond=0) if whole_second else event.occurred_at
    if zone:
        occurred_at = occurred_at.astimezone(zoneinfo.ZoneInfo(zone))
    event = dataclasses.replace(event, occurred_at=occurred_at)

    value = event.to_json()

    assert value == _reference_json(event)
    assert json.loads(value)["occurred_at"].endswith("Z")
    assert json.loads(value)["payload"]["amount"] == "49.00"  # money travels as a string, never a float
    assert decode(value) == dataclasses.replace(event, occurred_at=event.occurred_at.astimezone(datetime.UTC))


def test_an_event_without_causation_round_trips():
    event = build_event(PURCHASE_CREATED, {"purchase_id": 1, "payment_id": 2, "student_id": 3, "course_id": 4},
                        correlation_id=uuid.uuid4())

    value = event.to_json()

    assert value == _reference_json(event)
    assert json.loads(value)["causation_id"] is None
    assert decode(value) == event
