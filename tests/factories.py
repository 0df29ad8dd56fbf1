"""All factories in one place."""
import datetime
import decimal
import hashlib
import uuid

import factory
from django.utils import timezone

from allocations.models import Trainer, TrainerAllocation, slot_time
from enrollment.models import Course, Student
from purchases.models import Payment, StudentCoursePurchase
from sessions_sched.models import TrainingSession


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
        lambda o: datetime.datetime.combine(o.scheduled_date, o.scheduled_time, tzinfo=datetime.timezone.utc)
    )
