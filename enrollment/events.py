"""The event contract of the enrollment pipeline: event types, one payload schema per (event type, version),
the topic of each type, and the partition key field. The envelope around the payload, its decoding and its
limits belong to the framework (workers.envelope); the framework reads this contract through
`settings.PIPELINE_CONTRACT = "enrollment.events.CONTRACT"`, never by an import.

The Kafka key is the student id, so one student's events stay in order within a topic.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

PositiveId = Annotated[int, Field(gt=0, lt=2**63)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PurchaseConfirmedV1(_Strict):
    payment_id: PositiveId
    provider_payment_id: Annotated[str, Field(min_length=1, max_length=128)]
    student_id: PositiveId
    course_id: PositiveId
    amount: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

    @field_validator("amount", mode="before")
    @classmethod
    def _amount_from_string(cls, value: Any) -> Any:
        # Amounts travel as strings ("49.00") so no float ever touches money.
        if isinstance(value, Decimal):
            return value
        if isinstance(value, str):
            try:
                return Decimal(value)
            except ArithmeticError as exc:
                raise ValueError("amount must be a decimal string") from exc
        raise ValueError("amount must be a decimal string such as \"49.00\"")


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
    sessions_created: Annotated[int, Field(ge=0)]
    future_sessions: Annotated[int, Field(ge=0)]


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
    sessions_cancelled: Annotated[int, Field(ge=0)]


PAYLOAD_SCHEMAS: dict[tuple[str, int], type[_Strict]] = {
    (PURCHASE_CONFIRMED, 1): PurchaseConfirmedV1,
    (PURCHASE_CREATED, 1): PurchaseCreatedV1,
    (TRAINER_ALLOCATED, 1): TrainerAllocatedV1,
    (SESSIONS_SCHEDULED, 1): SessionsScheduledV1,
    (PURCHASE_CANCELLED, 1): PurchaseCancelledV1,
    (ALLOCATION_RELEASED, 1): AllocationReleasedV1,
}

CONTRACT = Contract(schemas=PAYLOAD_SCHEMAS, topics=TOPIC_BY_EVENT_TYPE, key_field="student_id")
