"""The wire format of an event: what `Event.to_json()` writes is what every consumer (and a replay, byte for byte)
reads back. Pure functions: no services needed."""
from __future__ import annotations

import datetime
import json
import uuid
import zoneinfo
from decimal import Decimal

import msgspec
import pytest

from enrollment.events import PURCHASE_CONFIRMED, PURCHASE_CREATED
from workers.envelope import build_event, decode


def _reference_json(event) -> bytes:
    """The format as specified: str UUIDs, ISO 8601 UTC with a Z, the payload's fields with amounts as decimal
    strings, sorted keys, no spaces, UTF-8."""
    return json.dumps({
        "event_id": str(event.event_id), "event_type": event.event_type, "version": event.version,
        "occurred_at": event.occurred_at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        "correlation_id": str(event.correlation_id),
        "causation_id": str(event.causation_id) if event.causation_id else None,
        "payload": {name: str(value) if isinstance(value, Decimal) else value
                    for name, value in msgspec.structs.asdict(event.payload).items()},
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
    event = msgspec.structs.replace(event, occurred_at=occurred_at)

    value = event.to_json()

    assert value == _reference_json(event)
    assert json.loads(value)["occurred_at"].endswith("Z")
    assert json.loads(value)["payload"]["amount"] == "49.00"  # money travels as a string, never a float
    assert decode(value) == msgspec.structs.replace(event, occurred_at=event.occurred_at.astimezone(datetime.UTC))


def test_an_event_without_causation_round_trips():
    event = build_event(PURCHASE_CREATED, {"purchase_id": 1, "payment_id": 2, "student_id": 3, "course_id": 4},
                        correlation_id=uuid.uuid4())

    value = event.to_json()

    assert value == _reference_json(event)
    assert json.loads(value)["causation_id"] is None
    assert decode(value) == event


def _variants() -> list[bytes]:
    """A valid envelope and variations of each field at the edge of what is valid."""
    event = build_event(PURCHASE_CREATED, {"purchase_id": 1, "payment_id": 2, "student_id": 3, "course_id": 4},
                        correlation_id=uuid.uuid4(), causation_id=uuid.uuid4())
    base = json.loads(event.to_json())
    eid = base["event_id"]
    changes = [
        {}, {"event_id": eid.replace("-", "")}, {"event_id": "{" + eid + "}"}, {"event_id": "urn:uuid:" + eid},
        {"event_id": eid.upper()}, {"event_id": eid + " "}, {"event_id": 5}, {"causation_id": None},
        {"causation_id": ""}, {"version": 1.0}, {"version": True}, {"version": "1"}, {"version": 0}, {"version": 2},
        {"version": 2**70}, {"event_type": ""}, {"event_type": "X" * 65}, {"event_type": "PURCHASE_CONFIRMED"},
        {"occurred_at": "2030-01-07T10:00:00z"}, {"occurred_at": "2030-01-07 10:00:00+05:30"},
        {"occurred_at": "2030-01-07T10:00Z"}, {"occurred_at": "2030-01-07T10:00:00,5Z"},
        {"occurred_at": "2030-01-07T10:00:00"}, {"occurred_at": "2030-01-07T10:00:00.123456789Z"},
        {"occurred_at": 1893974400}, {"occurred_at": "2030-02-30T10:00:00Z"}, {"extra": 1},
        {"payload": []}, {"payload": {**base["payload"], "student_id": 3.0}},
        {"payload": {**base["payload"], "student_id": 2**64}}, {"payload": {**base["payload"], "extra": 1}},
    ]
    values = [json.dumps({**base, **change}).encode() for change in changes]
    confirmed = json.loads(build_event(PURCHASE_CONFIRMED, CONFIRMED, correlation_id=uuid.uuid4()).to_json())
    values += [json.dumps({**confirmed, "payload": {**confirmed["payload"], **change}}).encode() for change in (
        {}, {"amount": 49.0}, {"amount": "49.001"}, {"amount": " 49.00"}, {"amount": "NaN"}, {"currency": "EUR\n"},
        {"provider_payment_id": ""}, {"provider_payment_id": "x" * 129})]
    deep = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    return [*values, json.dumps(base).encode().replace(b'"version":1', b'"version":1,"version":1'),
            json.dumps({**base, "payload": None}).encode()[:-1] + b',"x":' + deep + b"}", b"\xff", b"[]", b"{}",
            json.dumps(base).encode().replace(b"PURCHASE_CREATED", b"PURCHASE_\xe9"),
            json.dumps(base).encode().replace(b'"version":1', b'"version":1,"note":"\xe9"'),
            json.dumps(base).encode().replace(b'"purchase_id":1', b'"purchase_id":1,"note":"\\ud800"')]


@pytest.mark.parametrize("value", _variants())
def test_the_fast_path_accepts_exactly_what_the_step_by_step_path_accepts(value):
    """decode()'s msgspec fast path never decides alone: where it would accept, the result is the rule's result, and
    anything it refuses goes to the step-by-step path (pydantic), the rule for what is valid."""
    from workers.envelope import InvalidEvent, _decode_step_by_step

    def outcome(decoder):
        try:
            return decoder(value)
        except InvalidEvent as exc:
            return ("invalid", str(exc))

    assert outcome(decode) == outcome(_decode_step_by_step)


def test_a_valid_event_takes_the_fast_path():
    from workers.envelope import _FAST_DECODER

    event = build_event(PURCHASE_CREATED, {"purchase_id": 1, "payment_id": 2, "student_id": 3, "course_id": 4},
                        correlation_id=uuid.uuid4())
    assert _FAST_DECODER.decode(event.to_json()).event_id == event.event_id


def _confirmed_with(**changes) -> bytes:
    event = build_event(PURCHASE_CONFIRMED, CONFIRMED, correlation_id=uuid.uuid4())
    value = json.loads(event.to_json())
    value["payload"] = {k: v for k, v in {**value["payload"], **changes}.items() if v is not ...}
    return json.dumps(value).encode()


@pytest.mark.parametrize(("changes", "reason"), [
    ({"amount": 49.0}, 'amount: must be a decimal string such as "49.00"'),
    ({"amount": 49}, 'amount: must be a decimal string such as "49.00"'),
    ({"amount": "49.001"}, "amount: must have at most 2 decimal places"),
    ({"amount": "1E+20"}, "amount: must have at most 12 digits"),
    ({"amount": "-Infinity"}, "amount: must be finite"),
    ({"amount": "0.00"}, "amount: must be greater than 0"),
    ({"currency": "EUR\n"}, "currency: Expected `str` matching regex '^[A-Z]{3}\\\\Z'"),
    ({"student_id": 7.0}, "student_id: Expected `int`, got `float`"),
    ({"student_id": 0}, "student_id: Expected `int` >= 1"),
    ({"payment_id": ...}, "payment_id: Field required"),
    ({"is_admin": True}, "is_admin: Extra inputs are not permitted"),
])
def test_a_payload_error_says_which_field_and_why(changes, reason):
    """What the dead letter's reason says of a bad payload: the field, then what is wrong with it."""
    from workers.envelope import InvalidEvent

    with pytest.raises(InvalidEvent) as refused:
        decode(_confirmed_with(**changes))

    assert str(refused.value) == f"invalid PURCHASE_CONFIRMED v1 payload: {reason}"


@pytest.mark.parametrize("amount", ["49.00", "0.01", "9999999999.99", "49.5", "49"])
def test_an_amount_is_read_as_the_decimal_it_says(amount):
    assert decode(_confirmed_with(amount=amount)).payload.amount == Decimal(amount)


@pytest.mark.parametrize("amount", ["49.00", "0.01", "0.00", "0", "0.1", "9999999999.99", "10000000000.00", "049.00",
                                    "49.", ".5", "49.001", "1e2", "-1.00", "+1.00", " 1.00", "1_000.00", "١٢.٣٤"])
def test_the_amount_shortcut_decides_as_the_rules_do(amount):
    from enrollment.events import _amount, amount_by_the_rules

    def outcome(check):
        try:
            return check(amount)
        except ValueError as exc:
            return str(exc)

    assert outcome(_amount) == outcome(amount_by_the_rules)
