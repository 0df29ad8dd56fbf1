"""handle_trainer_allocated, called directly inside a transaction like the framework does."""
import msgspec
import pytest
from django.db import transaction

from allocations.models import TrainerAllocation
from enrollment.events import SESSIONS_SCHEDULED, TRAINER_ALLOCATED
from sessions_sched.models import TrainingSession
from sessions_sched.stage import STAGE, handle_trainer_allocated, handle_trainer_allocated_batch
from tests.factories import AllocationFactory, StudentFactory
from workers import metrics
from workers.envelope import build_event, decode
from workers.errors import PermanentError, Superseded
from workers.models import OutboxEvent

pytestmark = pytest.mark.django_db


def allocated(allocation, **overrides):
    payload = {"allocation_id": allocation.pk, "trainer_id": allocation.trainer_id,
               "student_id": allocation.student_id, "course_id": allocation.course_id, **overrides}
    return build_event(TRAINER_ALLOCATED, payload, correlation_id=allocation.correlation_id)


def handle(event):
    with transaction.atomic():
        handle_trainer_allocated(event)


def test_schedules_seven_sessions_and_emits_sessions_scheduled():
    allocation = AllocationFactory()
    event = allocated(allocation)
    handle(event)
    assert TrainingSession.objects.filter(allocation=allocation).count() == 7
    row = OutboxEvent.objects.get()
    out = decode(bytes(row.value))
    assert row.event_type == out.event_type == SESSIONS_SCHEDULED and row.key == str(allocation.student_id)
    assert (out.correlation_id, out.causation_id) == (event.correlation_id, event.event_id)
    assert msgspec.structs.asdict(out.payload) == {"allocation_id": allocation.pk, "student_id": allocation.student_id,
                                        "course_id": allocation.course_id, "sessions_created": 7, "future_sessions": 7}


def test_a_full_window_is_already_done_without_a_second_event():
    allocation = AllocationFactory()
    handle(allocated(allocation))
    handle(allocated(allocation))  # a duplicate TRAINER_ALLOCATED (another event id)
    assert TrainingSession.objects.count() == 7
    assert OutboxEvent.objects.count() == 1


@pytest.mark.parametrize("status", [TrainerAllocation.Status.ENDED, TrainerAllocation.Status.CANCELLED])
def test_a_released_allocation_is_superseded_with_no_sessions_and_no_event(status):
    allocation = AllocationFactory(status=status)
    with pytest.raises(Superseded, match=f"is {status}"):
        handle(allocated(allocation))
    assert not TrainingSession.objects.exists() and not OutboxEvent.objects.exists()


def test_in_a_batch_a_released_allocation_is_skipped_and_counted(django_capture_on_commit_callbacks):
    released, holding = AllocationFactory(status=TrainerAllocation.Status.CANCELLED), AllocationFactory()
    counter = metrics.EVENTS_SUPERSEDED.labels("sessions", TRAINER_ALLOCATED)
    before = counter._value.get()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        handle_trainer_allocated_batch([allocated(released), allocated(holding)])
    assert set(TrainingSession.objects.values_list("allocation_id", flat=True)) == {holding.pk}
    assert counter._value.get() == before + 1


def test_unknown_allocation_is_permanent():
    allocation = AllocationFactory()
    event = allocated(allocation, allocation_id=10**9)
    with pytest.raises(PermanentError, match="unknown allocation"):
        handle(event)


def test_allocation_of_another_student_is_permanent():
    allocation = AllocationFactory()
    with pytest.raises(PermanentError, match="another student"):
        handle(allocated(allocation, student_id=StudentFactory().pk))
    assert not TrainingSession.objects.exists()


def test_stage():
    assert (STAGE.name, STAGE.group_id, STAGE.topics, STAGE.retry.max_attempts) == (
        "sessions", "session-scheduling-workers", ("trainer-allocated",), 3)
    assert STAGE.handler is handle_trainer_allocated
