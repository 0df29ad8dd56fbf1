"""All factories in one place."""
import datetime
import decimal
import hashlib
import uuid

import factory
from django.utils import timezone

from allocations.models import Trainer, TrainerAllocation, slot_time
from enrollment.events import PURCHASE_CREATED
from enrollment.models import Course, Student
from purchases.models import Payment, StudentCoursePurchase
from sessions_sched.models import TrainingSession
from workers.dead_letters import encode_headers
from workers.envelope import build_event
from workers.kafka import topic
from workers.models import DeadLetter


class StudentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Student

    name = factory.Faker("name")
    email = factory.Sequence(lambda n: f"student{n}-{uuid.uuid4().hex[:6]}@example.test")


class CourseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Course

    title = factory.Sequence(lambda n: f"Course {n}")
    time_zone = "Europe/Berlin"
    price = decimal.Decimal("49.00")
    currency = "EUR"


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    provider_payment_id = factory.Sequence(lambda n: f"pay_{n}_{uuid.uuid4().hex[:8]}")
    student = factory.SubFactory(StudentFactory)
    course = factory.SubFactory(CourseFactory)
    amount = decimal.Decimal("49.00")
    currency = "EUR"
    body_sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.provider_payment_id.encode()).hexdigest())
    confirmed_at = factory.LazyFunction(timezone.now)


class PurchaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = StudentCoursePurchase

    payment = factory.SubFactory(PaymentFactory)
    student = factory.SelfAttribute("payment.student")
    course = factory.SelfAttribute("payment.course")
    correlation_id = factory.SelfAttribute("payment.correlation_id")
    is_active = True
    cancelled_at = factory.LazyAttribute(lambda o: None if o.is_active else timezone.now())


class TrainerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trainer
        skip_postgeneration_save = True

    name = factory.Faker("name")
    capacity = 5

    @factory.post_generation
    def courses(self, create, extracted, **kwargs):
        if create and extracted:
            self.courses.add(*extracted)


class AllocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainerAllocation

    student = factory.SubFactory(StudentFactory)
    course = factory.SubFactory(CourseFactory)
    trainer = factory.SubFactory(TrainerFactory)
    status = TrainerAllocation.Status.ACTIVE
    slot_time = slot_time(1)
    slot_weekdays = factory.LazyFunction(lambda: [0, 1, 2, 3, 4])
    correlation_id = factory.LazyFunction(uuid.uuid4)


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TrainingSession

    allocation = factory.SubFactory(AllocationFactory)
    trainer = factory.SelfAttribute("allocation.trainer")
    scheduled_date = datetime.date(2030, 1, 7)
    scheduled_time = factory.SelfAttribute("allocation.slot_time")
    starts_at = factory.LazyAttribute(
        lambda o: datetime.datetime.combine(o.scheduled_date, o.scheduled_time, tzinfo=datetime.UTC)
    )
    ends_at = factory.LazyAttribute(
        lambda o: o.starts_at + datetime.timedelta(minutes=o.allocation.course.session_minutes)
    )


class DeadLetterFactory(factory.django.DjangoModelFactory):
    """A dead-lettered PURCHASE_CREATED event, as the allocation stage leaves it (payload = real envelope bytes).
    The original topic gets the topic prefix in force when the row is built."""

    class Meta:
        model = DeadLetter

    class Params:
        student_id = factory.Sequence(lambda n: 1000 + n)  # the event's partition key
        event = factory.LazyAttribute(lambda o: _purchase_created(o.student_id or 1, o.correlation_id or uuid.uuid4()))

    stage = "allocations"
    consumer_group = "trainer-allocation-workers"
    partition_key = factory.LazyAttribute(lambda o: None if o.student_id is None else str(o.student_id))
    correlation_id = factory.LazyFunction(uuid.uuid4)
    event_id = factory.LazyAttribute(lambda o: o.event.event_id)
    event_type = "PURCHASE_CREATED"
    original_topic = factory.LazyFunction(lambda: topic("purchase-created"))
    original_partition = 0
    original_offset = factory.Sequence(lambda n: n)
    key = factory.LazyAttribute(lambda o: str(o.student_id).encode())
    headers = factory.LazyFunction(
        lambda: encode_headers([("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01")])
    )
    payload = factory.LazyAttribute(lambda o: o.event.to_json())
    error_class = "allocations.errors.NoTrainerAvailable"
    error_message = "no active trainer with a free slot for course 1"
    traceback = ('Traceback (most recent call last):\n  File "allocations/stage.py", line 42, in handle\n'
                 'NoTrainerAvailable')
    attempts = 5
    first_failed_at = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(minutes=3))
    last_failed_at = factory.LazyFunction(timezone.now)


def _purchase_created(student_id, correlation_id):
    return build_event(PURCHASE_CREATED, {"purchase_id": student_id, "payment_id": student_id,
                                          "student_id": student_id, "course_id": 1}, correlation_id=correlation_id)


def purchase_of(student_id: int, course_id: int) -> StudentCoursePurchase:
    """The student's active purchase of the course, bought (paid in full) here if there is none yet."""
    found = StudentCoursePurchase.objects.filter(student_id=student_id, course_id=course_id, is_active=True).first()
    if found is not None:
        return found
    return PurchaseFactory(payment=PaymentFactory(student_id=student_id, course_id=course_id))
