"""The bad-input corpus: malformed and hostile messages for every stage topic, each with what must happen to it.

`corpus(topic_base, seed)` returns the cases for one topic. A case is the exact key, value and headers to produce,
and the expected dead letter: `reason` (the `dlq.reason` header: "invalid" = never decoded to an event of this
topic, never retried; "permanent" = a valid event whose handler raised PermanentError, e.g. unknown student) and
`message` (a substring of `dlq.error_message`). Every case carries a `corpus.case` header (`<topic>/<name>`), which
the dead letter keeps, so a test finds each case's dead letter.

A stage that never dead-letters (cache, the only reader of sessions-scheduled and a second reader of
purchase-created and trainer-allocated) drops the "invalid" cases with a log line and handles the "permanent"
ones (a cache delete for an unknown student is harmless).

Decided behaviour, asserted by tests/e2e/test_bad_input_corpus.py:
- An event of a known type on a topic that is not its own (TRAINER_ALLOCATED on purchase-confirmed) is "invalid"
  there: workers/processing.py checks the event type against the topic (TOPIC_BY_EVENT_TYPE) before any handler
  runs. Before that check, the purchase and allocation handlers acted on the fields the payloads share (a
  PURCHASE_CONFIRMED on purchase-created allocated a trainer) or crashed with AttributeError and were retried.
  The wrong-topic cases below point at real rows (`seed`), so a missing check shows up as a write.
- A second message with an event id the group already processed is skipped, whatever its content (the id is the
  idempotency key: ProcessedEvent (group, event_id)); it is not dead-lettered. `duplicate()` builds one.
- The Kafka key is routing only (student id by convention) and is not validated: a null, binary or huge key on a
  bad value is dead-lettered for the value, and the dead letter keeps the key byte for byte.
- Headers are kept byte for byte (a NUL or binary value too: the store keeps them base64-encoded), up to the
  limits a stage accepts (settings.KAFKA_MAX_HEADERS, KAFKA_MAX_HEADER_BYTES); past them the message is invalid.
- A message whose dead-letter copy would not fit the broker (a value within a few KB of the limit, a compressed
  value that expands past it, megabytes of headers) is dead-lettered cut, with the cut part's size and SHA-256.
"""
from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from enrollment.events import (
    ALLOCATION_RELEASED,
    PURCHASE_CANCELLED,
    PURCHASE_CONFIRMED,
    PURCHASE_CREATED,
    SESSIONS_SCHEDULED,
    TRAINER_ALLOCATED,
)

CASE_HEADER = "corpus.case"
TOPIC_TYPES = {
    "purchase-confirmed": PURCHASE_CONFIRMED,
    "purchase-created": PURCHASE_CREATED,
    "trainer-allocated": TRAINER_ALLOCATED,
    "sessions-scheduled": SESSIONS_SCHEDULED,
    "purchase-cancelled": PURCHASE_CANCELLED,
    "allocation-released": ALLOCATION_RELEASED,
}
# Ids no row has (valid as ids: positive, below 2**63).
UNKNOWN_STUDENT = 9_000_000_001
UNKNOWN_COURSE = 9_000_000_002
UNKNOWN_PAYMENT = 9_000_000_003
UNKNOWN_ALLOCATION = 9_000_000_004
OVERSIZED_BYTES = 300_000  # over KAFKA_MAX_MESSAGE_BYTES (256 KiB), under the producer's and broker's 1 MB


@dataclass(frozen=True)
class Seed:
    """Real rows the corpus points at. Nothing in the corpus may change them: `student_id` has a payment
    (`payment_id`, for `course_id`) but no purchase, and one allocation (`allocation_id`, with `trainer_id`) without
    sessions; `other_student_id` has nothing."""

    student_id: int
    course_id: int
    payment_id: int
    allocation_id: int
    trainer_id: int
    other_student_id: int


@dataclass(frozen=True)
class Case:
    topic: str  # base topic name
    name: str
    value: bytes | None
    reason: str  # expected dlq.reason: "invalid" | "permanent"
    message: str  # expected substring of dlq.error_message
    key: bytes | None = b"corpus"
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    cut: str = ""  # the part its dead-letter copy must cut to fit the broker ("value", "headers")
    producer: dict = field(default_factory=dict)  # producer settings it needs (compression, a larger limit)

    @property
    def case_id(self) -> str:
        return f"{self.topic}/{self.name}"

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(CASE_HEADER, self.case_id.encode()), *self.headers]


def envelope(type_: str, payload: Any, /, **changes: Any) -> dict:
    env = {
        "event_id": str(uuid.uuid4()),
        "event_type": type_,
        "version": 1,
        "occurred_at": "2026-11-26T10:00:00Z",
        "correlation_id": str(uuid.uuid4()),
        "causation_id": None,
        "payload": payload,
    }
    env.update(changes)
    return env


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def harmless_payload(event_type: str) -> dict:
    """A valid payload of the type that points at no row: if an envelope case were ever accepted, the event would
    still change nothing (dead-lettered as permanent, or a cache delete of nobody)."""
    return {
        PURCHASE_CONFIRMED: {"payment_id": UNKNOWN_PAYMENT, "provider_payment_id": "pay_corpus",
                             "student_id": UNKNOWN_STUDENT, "course_id": UNKNOWN_COURSE, "amount": "49.00",
                             "currency": "EUR"},
        PURCHASE_CREATED: {"purchase_id": UNKNOWN_PAYMENT, "payment_id": UNKNOWN_PAYMENT,
                           "student_id": UNKNOWN_STUDENT, "course_id": UNKNOWN_COURSE},
        TRAINER_ALLOCATED: {"allocation_id": UNKNOWN_ALLOCATION, "trainer_id": UNKNOWN_ALLOCATION,
                            "student_id": UNKNOWN_STUDENT, "course_id": UNKNOWN_COURSE},
        SESSIONS_SCHEDULED: {"allocation_id": UNKNOWN_ALLOCATION, "student_id": UNKNOWN_STUDENT,
                             "course_id": UNKNOWN_COURSE, "sessions_created": 7, "future_sessions": 7},
        PURCHASE_CANCELLED: {"purchase_id": UNKNOWN_PAYMENT, "payment_id": UNKNOWN_PAYMENT,
                             "student_id": UNKNOWN_STUDENT, "course_id": UNKNOWN_COURSE,
                             "reason": "requested_by_customer"},
        ALLOCATION_RELEASED: {"allocation_id": UNKNOWN_ALLOCATION, "purchase_id": UNKNOWN_PAYMENT,
                              "student_id": UNKNOWN_STUDENT, "course_id": UNKNOWN_COURSE, "status": "cancelled",
                              "sessions_cancelled": 7},
    }[event_type]


def real_payload(event_type: str, seed: Seed) -> dict:
    """A valid payload of the type that points at the seed's real rows (for the wrong-topic cases)."""
    return {
        PURCHASE_CONFIRMED: {"payment_id": seed.payment_id, "provider_payment_id": "pay_seed",
                             "student_id": seed.student_id, "course_id": seed.course_id, "amount": "49.00",
                             "currency": "EUR"},
        PURCHASE_CREATED: {"purchase_id": seed.payment_id, "payment_id": seed.payment_id,
                           "student_id": seed.student_id, "course_id": seed.course_id},
        TRAINER_ALLOCATED: {"allocation_id": seed.allocation_id, "trainer_id": seed.trainer_id,
                            "student_id": seed.student_id, "course_id": seed.course_id},
        SESSIONS_SCHEDULED: {"allocation_id": seed.allocation_id, "student_id": seed.student_id,
                             "course_id": seed.course_id, "sessions_created": 7, "future_sessions": 7},
        # The seed's student has no purchase: a cancellation of it releases nothing.
        PURCHASE_CANCELLED: {"purchase_id": UNKNOWN_PAYMENT, "payment_id": seed.payment_id,
                             "student_id": seed.student_id, "course_id": seed.course_id, "reason": "chargeback"},
        ALLOCATION_RELEASED: {"allocation_id": seed.allocation_id, "purchase_id": None,
                              "student_id": seed.student_id, "course_id": seed.course_id, "status": "ended",
                              "sessions_cancelled": 0},
    }[event_type]


def _without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def _generic(event_type: str) -> list[tuple[str, bytes | None, str, str]]:
    """(name, value, reason, message) of the cases every topic gets: bytes, envelope, payload."""
    payload = harmless_payload(event_type)
    good = envelope(event_type, payload)

    def env(**changes):
        return dumps(envelope(event_type, payload, **changes))

    def pay(**changes):
        return dumps(envelope(event_type, {**payload, **changes}))

    text = json.dumps(good)
    nested = b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    cases: list[tuple[str, bytes | None, str, str]] = [
        # not an envelope at all
        ("not JSON", b"{not json", "invalid", "not JSON"),
        ("truncated JSON", text[: len(text) // 2].encode(), "invalid", "not JSON"),
        ("not UTF-8", b"\xff\xfe\x00garbage", "invalid", "not UTF-8"),
        ("latin-1 text", '{"event_type": "caf\u00e9"}'.encode("latin-1"), "invalid", "not UTF-8"),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + text.encode(), "invalid", "not JSON"),
        ("empty value", b"", "invalid", "not JSON"),
        ("whitespace", b" \n\t ", "invalid", "not JSON"),
        ("tombstone (null value)", None, "invalid", "tombstone"),
        ("raw NUL bytes in a JSON string", b'{"event_id": "\x00\x00"}', "invalid", "not JSON"),
        ("JSON number", b"42", "invalid", "must be a JSON object, got int"),
        ("JSON float overflow", b"1e999", "invalid", "must be a JSON object, got float"),
        ("JSON array", b'[{"event_type": "' + event_type.encode() + b'"}]', "invalid", "got list"),
        ("JSON string", json.dumps(text).encode(), "invalid", "got str"),
        ("JSON null", b"null", "invalid", "got NoneType"),
        ("JSON true", b"true", "invalid", "got bool"),
        ("oversized", dumps({**good, "padding": "x" * OVERSIZED_BYTES}), "invalid", "byte limit"),
        ("deeply nested JSON", nested, "invalid", "nests too deeply"),
        ("5000-digit integer", text.replace('"version": 1', '"version": ' + "9" * 5000).encode(), "invalid",
         "cannot be read"),
        # the envelope
        ("empty object", b"{}", "invalid", "Field required"),
        *[(f"missing {name}", dumps(_without(good, name)), "invalid", f"{name}: Field required")
          for name in ("event_id", "event_type", "version", "occurred_at", "correlation_id", "payload")],
        ("event_id not a UUID", env(event_id="not-a-uuid"), "invalid", "event_id"),
        ("event_id a number", env(event_id=42), "invalid", "event_id"),
        ("event_id SQL injection", env(event_id="'; DROP TABLE processed_events; --"), "invalid", "event_id"),
        ("correlation_id not a UUID", env(correlation_id="corr-1"), "invalid", "correlation_id"),
        ("causation_id a number", env(causation_id=7), "invalid", "causation_id"),
        ("version as string", env(version="1"), "invalid", "version"),
        ("version zero", env(version=0), "invalid", "version"),
        ("version negative", env(version=-1), "invalid", "version"),
        ("version float", env(version=1.5), "invalid", "version"),
        ("version bool", env(version=True), "invalid", "version"),
        ("future version", env(version=2), "invalid", f"unsupported version 2 of {event_type}"),
        ("absurd version", env(version=2**62), "invalid", "unsupported version"),
        ("unknown type", env(event_type="PURCHASE_EXPLODED"), "invalid", "unknown event type"),
        ("lower-case type", env(event_type=event_type.lower()), "invalid", "unknown event type"),
        ("empty type", env(event_type=""), "invalid", "event_type"),
        ("type not a string", env(event_type=5), "invalid", "event_type"),
        ("10,000-character type", env(event_type="A" * 10_000), "invalid", "at most 64 characters"),
        ("type SQL injection", env(event_type="X'; DROP TABLE payments; --"), "invalid", "unknown event type"),
        ("type HTML injection", env(event_type="<script>alert(1)</script>"), "invalid", "unknown event type"),
        ("type with a NUL byte", env(event_type=event_type + "\u0000"), "invalid", "unknown event type"),
        ("type with a lone surrogate", env(event_type="\ud800"), "invalid", "event_type"),
        ("naive timestamp", env(occurred_at="2026-11-26T10:00:00"), "invalid", "time zone"),
        ("timestamp not a date", env(occurred_at="yesterday"), "invalid", "occurred_at"),
        ("timestamp year 99999", env(occurred_at="99999-01-01T00:00:00Z"), "invalid", "occurred_at"),
        ("payload an array", env(payload=[payload]), "invalid", "payload"),
        ("payload null", env(payload=None), "invalid", "payload"),
        ("payload a JSON string", env(payload=json.dumps(payload)), "invalid", "payload"),
        ("extra envelope field", env(surprise=True), "invalid", "surprise: Extra inputs are not permitted"),
        ("extra field named with a NUL byte", env(**{"\u0000admin": True}), "invalid", "Extra inputs"),
        ("duplicate key, the last one bad", text[:-1].encode() + b', "event_id": "bad"}', "invalid", "event_id"),
        # the payload
        ("payload empty", env(payload={}), "invalid", "Field required"),
        ("payload missing student_id", dumps(envelope(event_type, _without(payload, "student_id"))), "invalid",
         "student_id: Field required"),
        ("student_id as string", pay(student_id="7"), "invalid", "student_id"),
        ("student_id float", pay(student_id=7.0), "invalid", "student_id"),
        ("student_id bool", pay(student_id=True), "invalid", "student_id"),
        ("student_id zero", pay(student_id=0), "invalid", "student_id"),
        ("student_id negative", pay(student_id=-7), "invalid", "student_id"),
        ("student_id 2**63", pay(student_id=2**63), "invalid", "student_id"),
        ("student_id null", pay(student_id=None), "invalid", "student_id"),
        ("student_id SQL injection", pay(student_id="1 OR 1=1"), "invalid", "student_id"),
        ("student_id 1e300", pay(student_id=1e300), "invalid", "student_id"),
        ("extra payload field", pay(is_admin=True), "invalid", "is_admin: Extra inputs are not permitted"),
    ]
    return cases


def _specific(event_type: str) -> list[tuple[str, bytes | None, str, str]]:
    """Payload cases of one event type: its own fields, wrong."""
    payload = harmless_payload(event_type)

    def pay(**changes):
        return dumps(envelope(event_type, {**payload, **changes}))

    def drop(name):
        return dumps(envelope(event_type, _without(payload, name)))

    if event_type == PURCHASE_CONFIRMED:
        return [
            ("amount negative", pay(amount="-49.00"), "invalid", "greater than 0"),
            ("amount zero", pay(amount="0.00"), "invalid", "greater than 0"),
            ("amount absurd", pay(amount="1000000000000.00"), "invalid", "12 digits"),
            ("amount 1E+1000000", pay(amount="1E+1000000"), "invalid", "12 digits"),
            ("amount NaN", pay(amount="NaN"), "invalid", "finite"),
            ("amount Infinity", pay(amount="Infinity"), "invalid", "finite"),
            ("amount float", pay(amount=49.0), "invalid", "decimal string"),
            ("amount integer", pay(amount=49), "invalid", "decimal string"),
            ("amount three decimals", pay(amount="49.001"), "invalid", "decimal places"),
            ("amount words", pay(amount="forty-nine"), "invalid", "decimal string"),
            ("currency lower-case", pay(currency="eur"), "invalid", "currency"),
            ("currency HTML", pay(currency="<b>"), "invalid", "currency"),
            ("provider id empty", pay(provider_payment_id=""), "invalid", "provider_payment_id"),
            ("provider id 10,000 characters", pay(provider_payment_id="x" * 10_000), "invalid",
             "provider_payment_id"),
            ("payment_id as string", pay(payment_id="1"), "invalid", "payment_id"),
            ("payment_id missing", drop("payment_id"), "invalid", "payment_id: Field required"),
        ]
    if event_type == PURCHASE_CREATED:
        return [
            ("purchase_id missing", drop("purchase_id"), "invalid", "purchase_id: Field required"),
            ("purchase_id as string", pay(purchase_id="1"), "invalid", "purchase_id"),
            ("payment_id negative", pay(payment_id=-1), "invalid", "payment_id"),
        ]
    if event_type == TRAINER_ALLOCATED:
        return [
            ("allocation_id missing", drop("allocation_id"), "invalid", "allocation_id: Field required"),
            ("allocation_id as string", pay(allocation_id="1"), "invalid", "allocation_id"),
            ("trainer_id negative", pay(trainer_id=-1), "invalid", "trainer_id"),
        ]
    if event_type == PURCHASE_CANCELLED:
        return [
            ("reason unknown", pay(reason="changed_my_mind"), "invalid", "reason"),
            ("purchase_id missing", drop("purchase_id"), "invalid", "purchase_id: Field required"),
            ("purchase_id zero", pay(purchase_id=0), "invalid", "purchase_id"),
        ]
    if event_type == ALLOCATION_RELEASED:
        return [
            ("status active", pay(status="active"), "invalid", "status"),
            ("sessions_cancelled negative", pay(sessions_cancelled=-1), "invalid", "sessions_cancelled"),
            ("allocation_id missing", drop("allocation_id"), "invalid", "allocation_id: Field required"),
        ]
    return [
        ("sessions_created negative", pay(sessions_created=-1), "invalid", "sessions_created"),
        ("future_sessions as string", pay(future_sessions="7"), "invalid", "future_sessions"),
        ("allocation_id missing", drop("allocation_id"), "invalid", "allocation_id: Field required"),
    ]


def _permanent(event_type: str, seed: Seed) -> list[tuple[str, bytes | None, str, str]]:
    """Valid envelopes the handler must refuse (PermanentError -> dead-lettered at once, never retried)."""

    def event(payload):
        return dumps(envelope(event_type, payload))

    if event_type == PURCHASE_CONFIRMED:
        base = real_payload(PURCHASE_CONFIRMED, seed)
        unknown_payment = {**base, "payment_id": UNKNOWN_PAYMENT}
        return [
            ("unknown student", event({**base, "student_id": UNKNOWN_STUDENT}), "permanent",
             "for another student or course"),
            ("unknown course", event({**base, "course_id": UNKNOWN_COURSE}), "permanent",
             "for another student or course"),
            ("unknown payment", event(unknown_payment), "permanent", f"unknown payment {UNKNOWN_PAYMENT}"),
            ("payment of another student", event({**base, "student_id": seed.other_student_id}), "permanent",
             "for another student or course"),
            ("absurd amount within the schema", event({**unknown_payment, "amount": "9999999999.99"}),
             "permanent", "unknown payment"),
            ("provider id SQL injection", event({**unknown_payment,
                                                 "provider_payment_id": "'; DROP TABLE payments; --"}),
             "permanent", "unknown payment"),
            ("provider id HTML injection", event({**unknown_payment,
                                                  "provider_payment_id": "<script>alert(1)</script>"}),
             "permanent", "unknown payment"),
            ("provider id with a NUL byte", event({**unknown_payment, "provider_payment_id": "pay\u0000_1"}),
             "permanent", "unknown payment"),
            ("provider id 128 emoji", event({**unknown_payment, "provider_payment_id": "\U0001f4b8" * 128}),
             "permanent", "unknown payment"),
        ]
    if event_type == PURCHASE_CREATED:
        # The allocation API checks the purchase: one that does not exist is a 422, whatever else the event says.
        base = {**real_payload(PURCHASE_CREATED, seed), "purchase_id": UNKNOWN_PAYMENT}
        return [
            ("unknown purchase", event(base), "permanent", f"unknown purchase {UNKNOWN_PAYMENT}"),
            ("unknown student", event({**base, "student_id": UNKNOWN_STUDENT}), "permanent", "unknown purchase"),
            ("unknown course", event({**base, "course_id": UNKNOWN_COURSE}), "permanent", "unknown purchase"),
        ]
    if event_type == TRAINER_ALLOCATED:
        base = real_payload(TRAINER_ALLOCATED, seed)
        return [
            ("unknown allocation", event({**base, "allocation_id": UNKNOWN_ALLOCATION}), "permanent",
             f"unknown allocation {UNKNOWN_ALLOCATION}"),
            ("allocation of another student", event({**base, "student_id": seed.other_student_id}), "permanent",
             "for another student or course"),
        ]
    return []  # sessions-scheduled is read by the cache stage only, which has no permanent failures


def _wrong_topic(topic_base: str, seed: Seed) -> list[tuple[str, bytes | None, str, str]]:
    """Valid events of every other type, pointing at the seed's real rows."""
    own = TOPIC_TYPES[topic_base]
    return [
        (f"{other} on this topic", dumps(envelope(other, real_payload(other, seed))), "invalid",
         f"event type {other} does not belong on topic")
        for other in TOPIC_TYPES.values() if other != own
    ]


def _keys_and_headers() -> list[Case]:
    """Hostile keys and headers, on values that are dead-lettered for themselves (the key is not validated)."""
    bad = b"{not json"
    spoof = [("dlq.reason", b"spoofed"), ("dlq.consumer_group", b"evil-group"),
             ("dlq.event_id", str(uuid.UUID(int=1)).encode()), ("dlq.partition_key", b"1"),
             ("dlq.error_message", b"nothing to see")]
    return [
        Case("", "null key", bad, "invalid", "not JSON", key=None),
        Case("", "binary key", bad, "invalid", "not JSON", key=b"\xff\xfe\x00\x01"),
        Case("", "10 KB key", bad, "invalid", "not JSON", key=b"k" * 10_000),
        Case("", "SQL injection key", bad, "invalid", "not JSON", key=b"'; DROP TABLE dead_letters; --"),
        Case("", "binary header", bad, "invalid", "not JSON", headers=[("x-bin", b"\xff\xfe\xfd")]),
        Case("", "NUL in a header value", bad, "invalid", "not JSON", headers=[("x-nul", b"a\x00b")]),
        Case("", "10 KB header", bad, "invalid", "not JSON", headers=[("x-big", b"h" * 10_000)]),
        Case("", "HTML header", bad, "invalid", "not JSON", headers=[("x-html", b"<script>alert(1)</script>")]),
        Case("", "100 headers", bad, "invalid", "101 headers, over the limit",  # and the case header
             headers=[(f"x-{i}", str(i).encode()) for i in range(100)]),
        Case("", "empty header name and value", bad, "invalid", "not JSON", headers=[("", b"")]),
        Case("", "spoofed dlq headers", bad, "invalid", "not JSON", headers=spoof),
    ]


BIG = {"message.max.bytes": 10_000_000}


def _too_big(topic_base: str, event_type: str, seed: Seed) -> list[Case]:
    """Messages whose dead-letter copy cannot be the original: it is cut to fit the broker (workers.oversize).
    Their key names the case, since a copy without its headers has lost the case header."""
    heavy = [(f"x-heavy-{i}", bytes([65 + i]) * 200_000) for i in range(10)]  # 2 MB of headers
    cases = [
        Case(topic_base, "just under the broker limit", b'{"pad": "' + b"x" * 1_040_000 + b'"}', "invalid",
             "over the 262144-byte limit", cut="value"),
        Case(topic_base, "compressed 5 MB of zeros", b"\x00" * 5_000_000, "invalid", "over the 262144-byte limit",
             cut="value", producer={**BIG, "compression.type": "gzip"}),
        Case(topic_base, "valid event with 2 MB of headers", dumps(envelope(event_type, real_payload(event_type,
             seed))), "invalid", "headers are", headers=heavy, cut="headers",
             producer={**BIG, "compression.type": "lz4"}),
    ]
    return [dataclasses.replace(c, key=c.case_id.encode()) for c in cases]


def corpus(topic_base: str, seed: Seed) -> list[Case]:
    """Every bad case for one topic (base name), in production order."""
    event_type = TOPIC_TYPES[topic_base]
    rows = [*_generic(event_type), *_specific(event_type), *_permanent(event_type, seed),
            *_wrong_topic(topic_base, seed)]
    cases = [Case(topic_base, name, value, reason, message) for name, value, reason, message in rows]
    cases += [Case(topic_base, c.name, c.value, c.reason, c.message, key=c.key, headers=c.headers)
              for c in _keys_and_headers()]
    cases += _too_big(topic_base, event_type, seed)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique per topic"
    return cases


def duplicate(original: bytes, payload: dict) -> bytes:
    """The same event id (and type, version) as `original`, with another payload: a redelivery that lies."""
    env = json.loads(original)
    env["payload"] = payload
    env["correlation_id"] = str(uuid.uuid4())
    return dumps(env)
