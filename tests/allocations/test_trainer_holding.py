"""trainers.holding: the count of each trainer's holding allocations, kept by triggers whatever writes them."""
import pytest
from django.db.models import Count, Q

from allocations.batch import allocate_many
from allocations.models import Trainer, TrainerAllocation
from tests.allocations.support import bought
from tests.factories import AllocationFactory, CourseFactory, StudentFactory, TrainerFactory

pytestmark = pytest.mark.django_db

Status = TrainerAllocation.Status


def _counted() -> dict[int, int]:
    holding = Q(allocations__status__in=TrainerAllocation.HOLDING_STATUSES)
    return dict(Trainer.objects.annotate(n=Count("allocations", filter=holding)).values_list("pk", "n"))


def _kept() -> dict[int, int]:
    return dict(Trainer.objects.values_list("pk", "holding"))


def test_the_count_follows_batches_single_writes_updates_and_deletes():
    course = CourseFactory()
    trainers = [TrainerFactory(capacity=5, courses=[course]) for _ in range(3)]
    allocate_many([bought(StudentFactory().pk, course.pk) for _ in range(7)])  # one INSERT for the batch
    assert _kept() == _counted() and sum(_kept().values()) == 7

    single = AllocationFactory(trainer=trainers[0], course=course)  # the ORM, one row
    AllocationFactory(trainer=trainers[1], course=course, status=Status.PENDING)  # not holding: no change
    assert _kept() == _counted() and sum(_kept().values()) == 8

    TrainerAllocation.objects.filter(trainer=trainers[1]).update(status=Status.CANCELLED)  # a release, the admin
    TrainerAllocation.objects.filter(pk=single.pk).update(trainer=trainers[2])  # moved to another trainer
    TrainerAllocation.objects.filter(status=Status.CANCELLED).update(status=Status.CANCELLED)  # no change at all
    assert _kept() == _counted()

    TrainerAllocation.objects.filter(trainer=trainers[2]).delete()
    assert _kept() == _counted()
    assert _kept()[trainers[2].pk] == 0


def test_the_least_loaded_trainers_are_chosen_by_the_count():
    course = CourseFactory()
    busy, idle = TrainerFactory(capacity=5, courses=[course]), TrainerFactory(capacity=5, courses=[course])
    for _ in range(3):
        AllocationFactory(trainer=busy, course=course)
    outcomes = allocate_many([bought(StudentFactory().pk, course.pk) for _ in range(3)])
    assert [allocation.trainer_id for allocation, _ in outcomes] == [idle.pk] * 3
    assert _kept() == _counted() == {busy.pk: 3, idle.pk: 3}
