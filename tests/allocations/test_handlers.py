"""The allocation stage's handlers against the real allocation API (live_server), inside a transaction.

These tests commit (live_server needs it), so the emitted events are published to the test's own topics."""
import msgspec
import pytest
from django.db import transaction

from allocations.client import close_client
from allocations.models import TrainerAllocation
from allocations.stage import STAGE
from allocations.stage import handle_allocation_event as handle_purchase_created
from allocations.stage import handle_allocation_events as handle_purchase_created_batch
from enrollment.events import ALLOCATION_RELEASED, PURCHASE_CANCELLED, PURCHASE_CREATED, TRAINER_ALLOCATED
from sessions_sched.models import TrainingSession
from sessions_sched.scheduler import ensure_window
from tests.factories import CourseFactory, DeadLetterFactory, PurchaseFactory, TrainerFactory
from tests.workers import support
from workers import metrics
from workers.consumer import StageConsumer
from workers.envelope import build_event, decode
from workers.errors import PermanentError, Superseded, TransientError
from workers.models import DeadLetter, OutboxEvent

TOKEN = "test-allocation-token"


@pytest.fixture(autouse=True)
def _api(live_server, settings, topic_prefix):
    settings.ADMIN_SERVICE_URL = live_server.url
    settings.ALLOCATION_API_TOKEN = TOKEN
    yield
    close_client()  # a kept-alive connection would keep a live-server thread and its DB session open


def created_event(purchase, **overrides):
    payload = {"purchase_id": purchase.pk, "payment_id": purchase.payment_id,
               "student_id": purchase.student_id, "course_id": purchase.course_id, **overrides}
    return build_event(PURCHASE_CREATED, payload, correlation_id=purchase.correlation_id, causation_id=None)


def emitted():
    return [decode(bytes(row.value)) for row in OutboxEvent.objects.order_by("id")]


def test_allocates_and_emits_trainer_allocated():
    course = CourseFactory()
    trainer = TrainerFactory(courses=[course])
    purchase = PurchaseFactory(payment__course=course)
    event = created_event(purchase)
    with transaction.atomic():
        handle_purchase_created(event)
    allocation = TrainerAllocation.objects.get()
    assert allocation.correlation_id == event.correlation_id
    [out] = emitted()
    assert out.event_type == TRAINER_ALLOCATED
    assert (out.correlation_id, out.causation_id) == (event.correlation_id, event.event_id)
    assert msgspec.structs.asdict(out.payload) == {"allocation_id": allocation.pk, "trainer_id": trainer.pk,
                                        "student_id": purchase.student_id, "course_id": course.pk}


def test_existing_allocation_is_emitted_again_without_a_second_allocation():
    """Redelivery after a crash between the API call and our commit: the event was never emitted."""
    course = CourseFactory()
    TrainerFactory(courses=[course])
    event = created_event(PurchaseFactory(payment__course=course))
    for _ in range(2):
        with transaction.atomic():
            handle_purchase_created(event)
    assert TrainerAllocation.objects.count() == 1
    assert [e.payload.allocation_id for e in emitted()] == [TrainerAllocation.objects.get().pk] * 2


def test_no_capacity_is_transient_and_emits_nothing():
    event = created_event(PurchaseFactory())  # nobody teaches the course
    with pytest.raises(TransientError, match="409"), transaction.atomic():
        handle_purchase_created(event)
    assert not OutboxEvent.objects.exists()


@pytest.mark.parametrize("override,message", [({"student_id": 10**9}, "another student or course"),
                                              ({"purchase_id": 10**9}, "unknown purchase")])
def test_a_purchase_that_does_not_exist_or_does_not_match_is_permanent(override, message):
    event = created_event(PurchaseFactory(), **override)
    with pytest.raises(PermanentError, match=message), transaction.atomic():
        handle_purchase_created(event)
    assert not TrainerAllocation.objects.exists()


def cancelled_event(purchase):
    payload = {"purchase_id": purchase.pk, "payment_id": purchase.payment_id, "student_id": purchase.student_id,
               "course_id": purchase.course_id, "reason": "requested_by_customer"}
    return build_event(PURCHASE_CANCELLED, payload, correlation_id=purchase.correlation_id)


def cancel(purchase):
    purchase.is_active, purchase.cancelled_at = False, purchase.created_at
    purchase.save()


def test_a_cancellation_releases_the_allocation_and_cancels_its_future_sessions_once():
    course = CourseFactory()
    TrainerFactory(courses=[course])
    purchase = PurchaseFactory(payment__course=course)
    with transaction.atomic():
        handle_purchase_created(created_event(purchase))
    allocation = TrainerAllocation.objects.get()
    assert ensure_window(allocation) == 7
    cancel(purchase)
    for _ in range(2):  # a redelivered cancellation finds nothing left to release
        with transaction.atomic():
            handle_purchase_created(cancelled_event(purchase))
    allocation.refresh_from_db()
    assert allocation.status == TrainerAllocation.Status.CANCELLED
    assert set(TrainingSession.objects.values_list("status", flat=True)) == {"cancelled"}
    released = [e for e in emitted() if e.event_type == ALLOCATION_RELEASED]
    assert [msgspec.structs.asdict(e.payload) for e in released] == [{
        "allocation_id": allocation.pk, "purchase_id": purchase.pk, "student_id": purchase.student_id,
        "course_id": course.pk, "status": "cancelled", "sessions_cancelled": 7}]
    assert released[0].correlation_id == purchase.correlation_id


def test_a_cancellation_that_comes_first_means_no_allocation_is_made():
    """PURCHASE_CANCELLED overtook PURCHASE_CREATED (another topic): nothing to release, then the allocation
    is refused as superseded, and so is an old PURCHASE_CREATED dead letter replayed after the refund."""
    course = CourseFactory()
    TrainerFactory(courses=[course])
    purchase = PurchaseFactory(payment__course=course)
    cancel(purchase)
    with transaction.atomic():
        handle_purchase_created(cancelled_event(purchase))
    for _ in range(2):
        with pytest.raises(Superseded, match="410"), transaction.atomic():
            handle_purchase_created(created_event(purchase))
    assert not TrainerAllocation.objects.exists() and not emitted()


def test_in_a_batch_a_superseded_allocation_is_skipped_and_counted_without_failing_the_batch():
    course = CourseFactory()
    TrainerFactory(courses=[course])
    good, gone = PurchaseFactory(payment__course=course), PurchaseFactory(payment__course=course)
    cancel(gone)
    counter = metrics.EVENTS_SUPERSEDED.labels("allocations", PURCHASE_CREATED)
    before = counter._value.get()
    with transaction.atomic():
        handle_purchase_created_batch([created_event(good), created_event(gone)])
    assert [e.payload.student_id for e in emitted()] == [good.student_id]
    assert list(TrainerAllocation.objects.values_list("purchase_id", flat=True)) == [good.pk]
    assert counter._value.get() == before + 1


def test_batch_allocates_all_in_one_call_and_emits_each():
    course = CourseFactory()
    TrainerFactory(courses=[course], capacity=3)
    events = [created_event(PurchaseFactory(payment__course=course)) for _ in range(3)]
    with transaction.atomic():
        handle_purchase_created_batch(events)
    out = emitted()
    assert [e.causation_id for e in out] == [e.event_id for e in events]
    assert [e.payload.student_id for e in out] == [e.payload.student_id for e in events]
    assert len({e.payload.allocation_id for e in out}) == 3


@pytest.mark.parametrize("capacity,error", [(2, TransientError), (5, PermanentError)])
def test_batch_with_a_failed_item_raises_and_emits_nothing_so_the_framework_goes_one_by_one(capacity, error):
    course = CourseFactory()
    TrainerFactory(courses=[course], capacity=capacity)
    purchases = [PurchaseFactory(payment__course=course) for _ in range(3)]
    events = [created_event(p) for p in purchases] + [created_event(purchases[0], student_id=10**9)]
    with pytest.raises(error, match="failed"), transaction.atomic():
        handle_purchase_created_batch(events)
    assert not OutboxEvent.objects.exists()
    # The fallback, one at a time, finds the allocations made by the failed batch again.
    made = TrainerAllocation.objects.count()
    with transaction.atomic():
        handle_purchase_created(events[0])
    assert TrainerAllocation.objects.count() == made and len(emitted()) == 1


def test_stage():
    assert (STAGE.name, STAGE.group_id, STAGE.topics, STAGE.retry.max_attempts) == (
        "allocations", "trainer-allocation-workers", ("purchase-created", "purchase-cancelled"), 5)
    assert STAGE.batch_handler is handle_purchase_created_batch


def test_an_old_purchase_created_dead_letter_replayed_from_the_admin_after_the_refund_creates_nothing(admin_client):
    """The whole path: a dead letter row, the refund, the admin's replay to Kafka, the real allocation consumer
    (the allocation API refuses with 410: superseded), and the dead letter resolved."""
    course = CourseFactory()
    TrainerFactory(courses=[course])
    purchase = PurchaseFactory(payment__course=course)
    event = created_event(purchase)
    letter = DeadLetterFactory(stage=STAGE.name, consumer_group=STAGE.group_id, event_id=event.event_id,
                               payload=event.to_json(), key=str(purchase.student_id).encode())
    cancel(purchase)  # refunded meanwhile
    response = admin_client.post("/admin/workers/deadletter/", {"action": "replay_selected",
                                                                "_selected_action": [letter.pk]})
    assert response.status_code == 302
    consumer = StageConsumer(STAGE, batch_wait=0.2)
    try:
        support.poll_until(consumer, lambda: DeadLetter.objects.get(pk=letter.pk).status == "resolved")
    finally:
        consumer.close()
    assert not TrainerAllocation.objects.exists()
    assert not [e for e in emitted() if e.event_type == TRAINER_ALLOCATED]
