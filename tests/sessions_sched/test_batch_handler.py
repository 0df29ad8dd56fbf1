"""The sessions stage's batch path: every window filled in a few queries, same result as one at a time."""
import datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from allocations.models import slot_time
from enrollment.events import SESSIONS_SCHEDULED
from sessions_sched.models import TrainingSession
from sessions_sched.scheduler import ensure_window, ensure_windows, next_session_slots
from sessions_sched.stage import handle_trainer_allocated_batch
from tests.factories import AllocationFactory, TrainerFactory
from tests.sessions_sched.test_handlers import allocated
from workers.envelope import decode
from workers.errors import PermanentError
from workers.models import OutboxEvent

pytestmark = pytest.mark.django_db


def test_batch_fills_every_window_to_seven_in_a_few_queries():
    allocations = [AllocationFactory() for _ in range(20)]
    ensure_window(allocations[0], size=3)  # a partial window is completed, not duplicated
    ensure_window(allocations[1])  # a full window is already done
    events = [allocated(a) for a in allocations] + [allocated(allocations[2])]  # a duplicate in the batch
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        handle_trainer_allocated_batch(events)
    assert len(queries) <= 10  # a constant handful for 21 events, not a round per event
    now = timezone.now()
    for allocation in allocations:
        sessions = TrainingSession.objects.filter(allocation=allocation, starts_at__gt=now)
        assert sessions.count() == 7
        assert all(s.scheduled_date.weekday() < 5 for s in sessions)
    emitted = [decode(bytes(row.value)).payload for row in OutboxEvent.objects.all()]
    assert all(e.future_sessions == 7 for e in emitted) and len(emitted) == 19  # not for the full window
    created = {e.allocation_id: e.sessions_created for e in emitted}
    assert created[allocations[0].pk] == 4 and created[allocations[2].pk] == 7
    assert {e.allocation_id for e in emitted} == {a.pk for a in allocations} - {allocations[1].pk}
    assert {row.event_type for row in OutboxEvent.objects.all()} == {SESSIONS_SCHEDULED}


def test_a_trainer_collision_takes_a_later_date_within_the_batch():
    trainer = TrainerFactory()
    first = AllocationFactory(trainer=trainer, slot_time=slot_time(0))
    second = AllocationFactory(trainer=trainer, slot_time=slot_time(1))
    now = timezone.now()
    [(day, _, starts_at)] = next_session_slots(first, now, 1)
    # the trainer is already booked (by another allocation) at the instant of `first`'s next session
    TrainingSession.objects.create(allocation=second, trainer=trainer, scheduled_date=day,
                                   scheduled_time=datetime.time(23, 59), starts_at=starts_at,
                                   ends_at=starts_at + datetime.timedelta(minutes=30))
    with transaction.atomic():
        assert ensure_windows([first.pk], now) == {first.pk: 7}
    sessions = TrainingSession.objects.filter(allocation=first)
    assert sessions.count() == 7 and starts_at not in {s.starts_at for s in sessions}


def test_a_mismatched_allocation_fails_the_batch():
    allocation = AllocationFactory()
    with pytest.raises(PermanentError), transaction.atomic():
        handle_trainer_allocated_batch([allocated(AllocationFactory()), allocated(allocation, student_id=999999)])
    assert not TrainingSession.objects.exists()
