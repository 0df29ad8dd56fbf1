"""The event contract of the enrollment pipeline: event types, one payload schema per (event type, version),
the topic of each type, and the partition key field. The envelope around the payload, its decoding and its
limits belong to the framework (workers.envelope); the framework reads this contract through
`settings.PIPELINE_CONTRACT = "enrollment.events.CONTRACT"`, never by an import.

The Kafka key is the student id, so one student's events stay in order within a topic.
"""
from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from workers.contract import Contract

PURCHASE_CONFIRMED = "PURCHASE_CONFIRMED"
PURCHASE_CREATED = "PURCHASE_CREATED"
TRAINER_ALLOCATED = "TRAINER_ALLOCATED"
SESSIONS_SCHEDULED = "SESSIONS_SCHEDULED"
PURCHASE_CANCELLED = "PURCHASE_CANCELLED"
ALLOCATION_RELEASED = "ALLOCATION_RELEASED"

# Base topic names; workers.kafka.topic() adds settings.KAFKA_TOPIC_PREFIX.
TOPIC_BY_EVENT_TYPE = {
    PURCHASE_CONFIRMED: "purchase-confirmed",
    PURCHASE_CREATED: "purchase-created",
    TRAINER_ALLOCATED: "trainer-allocated",
    SESSIONS_SCHEDULED: "sessions-scheduled",
    PURCHASE_CANCELLED: "purchase-cancelled",
    ALLOCATION_RELEASED: "allocation-released",
}

# Why an enrollment was cancelled: the refund reasons of the provider, or an operator in the admin.
CANCEL_REASONS = ("requested_by_customer", "duplicate", "fraudulent", "chargeback", "operator")

PositiveId = Annotated[int, msgspec.Meta(gt=0, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class Amount(Decimal):
    """An amount of money in an event: written as a decimal string ("49.00") so no float ever touches it, more
    than 0, at most 12 digits with at most 2 after the point. Its own type so that `decode_field` checks it (msgspec
    would take a JSON number for a plain Decimal field); it compares and computes as the Decimal it is."""


AMOUNT_MAX_DIGITS, AMOUNT_DECIMAL_PLACES = 12, 2
# How money is written where it travels (the provider's webhooks, the events): "49.00", at most 10 digits before
# the point and 2 after, no sign, no exponent, no leading zeros.
AMOUNT_PATTERN = r"(?:0|[1-9][0-9]{0,9})(?:\.[0-9]{1,2})?"
# That form has at most 12 digits and 2 decimals by its shape: checked by this alone (0.5 us per amount against 1.6
# for the full rules of `_amount`, which decide everything else and say what is wrong).
_PLAIN_AMOUNT = re.compile(AMOUNT_PATTERN)


def _amount(value: Any) -> Amount:
    if isinstance(value, str) and _PLAIN_AMOUNT.fullmatch(value):
        amount = Amount(value)
        if amount > 0:
            return amount
    return amount_by_the_rules(value)


def amount_by_the_rules(value: Any) -> Amount:
    """An event's amount, or ValueError saying what is wrong with it (the rule `_amount`'s shortcut follows)."""
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, str):
        try:
            amount = Decimal(value)
        except ArithmeticError:
            amount = None
    else:
        amount = None
    if amount is None:
        raise ValueError('must be a decimal string such as "49.00"')
    if not amount.is_finite():
        raise ValueError("must be finite")
    if amount <= 0:
        raise ValueError("must be greater than 0")
    _, digit_tuple, exponent = amount.as_tuple()
    digits = len(digit_tuple)
    decimals = max(-exponent, 0)
    if max(digits, decimals) + max(exponent, 0) > AMOUNT_MAX_DIGITS:
        raise ValueError(f"must have at most {AMOUNT_MAX_DIGITS} digits")
    if decimals > AMOUNT_DECIMAL_PLACES:
        raise ValueError(f"must have at most {AMOUNT_DECIMAL_PLACES} decimal places")
    return Amount(amount)


def decode_field(kind: type, value: Any) -> Any:
    """The contract's field types that msgspec does not check itself (its `dec_hook`): Amount."""
    if kind is Amount:
        return _amount(value)
    raise NotImplementedError(f"no decoder for {kind.__name__}")


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A payload schema: every field typed and checked (no coercion: "7" is not 7, 7.0 is not 7, true is not 1),
    unknown fields refused, immutable. msgspec Structs rather than pydantic models: every stage validates one per
    consumed and one per emitted event, at 0.2-0.9 us against pydantic's 1.5-3.3 (bench/analysis.md)."""


class PurchaseConfirmedV1(_Strict):
    payment_id: PositiveId
    provider_payment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    student_id: PositiveId
    course_id: PositiveId
    amount: Amount
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]


class PurchaseCreatedV1(_Strict):
    purchase_id: PositiveId
    payment_id: PositiveId
    student_id: PositiveId
    course_id: PositiveId


class TrainerAllocatedV1(_Strict):
    allocation_id: PositiveId
    trainer_id: PositiveId
    student_id: PositiveId
    course_id: PositiveId


class SessionsScheduledV1(_Strict):
    allocation_id: PositiveId
    student_id: PositiveId
    course_id: PositiveId
    sessions_created: Count
    future_sessions: Count


class PurchaseCancelledV1(_Strict):
    """A full refund or a chargeback cancelled the purchase (already deactivated when this is emitted)."""

    purchase_id: PositiveId
    payment_id: PositiveId
    student_id: PositiveId
    course_id: PositiveId
    reason: Literal[CANCEL_REASONS]  # type: ignore[valid-type]


class AllocationReleasedV1(_Strict):
    """An allocation stopped holding its trainer's time (cancelled with its purchase, or ended by an operator);
    its future sessions were cancelled in the same transaction."""

    allocation_id: PositiveId
    purchase_id: PositiveId | None
    student_id: PositiveId
    course_id: PositiveId
    status: Literal["ended", "cancelled"]
    sessions_cancelled: Count


PAYLOAD_SCHEMAS: dict[tuple[str, int], type[_Strict]] = {
    (PURCHASE_CONFIRMED, 1): PurchaseConfirmedV1,
    (PURCHASE_CREATED, 1): PurchaseCreatedV1,
    (TRAINER_ALLOCATED, 1): TrainerAllocatedV1,
    (SESSIONS_SCHEDULED, 1): SessionsScheduledV1,
    (PURCHASE_CANCELLED, 1): PurchaseCancelledV1,
    (ALLOCATION_RELEASED, 1): AllocationReleasedV1,
}

CONTRACT = Contract(schemas=PAYLOAD_SCHEMAS, topics=TOPIC_BY_EVENT_TYPE, key_field="student_id",
                    decode_field=decode_field)
