"""The dead letter admin: review (list, filters, search, counts, read-only detail), replay and discard (with
their permissions and audit trail), and replays that end resolved without duplicating anything downstream."""
import datetime
import uuid

import pytest
from django.urls import reverse

from enrollment.events import TRAINER_ALLOCATED
from tests.factories import (
    AllocationFactory,
    DeadLetterFactory,
    PaymentFactory,
    PurchaseFactory,
    SessionFactory,
)
from tests.workers import support
from workers.dead_letter_store import REPLAY_HEADER, persist
from workers.models import (
    DeadLetter,
    DeadLetterAction,
    OutboxEvent,
    OutboxPending,
    PendingRetry,
    ProcessedEvent,
)

CHANGELIST = reverse("admin:workers_deadletter_changelist")


def _change_url(row: DeadLetter) -> str:
    return reverse("admin:workers_deadletter_change", args=[row.pk])


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(support.staff(django_user_model, "viewer", "view_deadletter", "view_deadletteraction"))
    return client


def _action(client, name: str, rows, **extra):
    return client.post(CHANGELIST, {"action": name, "_selected_action": [r.pk for r in rows], "index": 0, **extra})


def _action_names(response) -> set[str]:
    form = response.context.get("action_form")
    return {value for value, _ in form.fields["action"].choices if value} if form else set()


# --- review -----------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_list_is_newest_first_with_counts_per_status(admin_client):
    old = DeadLetterFactory(last_failed_at="2030-01-01T10:00Z")
    newest = DeadLetterFactory(last_failed_at="2030-01-03T10:00Z", status=DeadLetter.Status.DISCARDED)
    middle = DeadLetterFactory(last_failed_at="2030-01-02T10:00Z")
    DeadLetterFactory(status=DeadLetter.Status.RESOLVED, last_failed_at="2029-01-01T10:00Z")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert list(response.context["cl"].result_list)[:3] == [newest, middle, old]
    counts = {value: n for value, _, n in response.context["status_counts"]}
    assert counts == {"new": 2, "replayed": 0, "parked": 0, "discarded": 1, "resolved": 1}
    html = response.content.decode()
    assert 'id="dead-letter-status-counts"' in html and '<span class="count">2</span>New' in html
    for column in ("Stage", "Error class", "Status", "Event type", "Student id", "Correlation id", "Attempts",
                   "Last failed at"):
        assert column in html


@pytest.mark.django_db
def test_filters_by_stage_error_status_and_date(admin_client):
    alloc = DeadLetterFactory(last_failed_at="2030-01-01T10:00Z")
    sessions = DeadLetterFactory(stage="sessions", error_class="sessions.errors.Boom",
                                 last_failed_at="2030-02-01T10:00Z", status=DeadLetter.Status.REPLAYED)

    def shown(**query: str) -> list:
        return list(admin_client.get(CHANGELIST, query).context["cl"].result_list)

    assert shown(stage="sessions") == [sessions]
    assert shown(error_class="allocations.errors.NoTrainerAvailable") == [alloc]
    assert shown(status__exact="replayed") == [sessions]
    assert shown(last_failed_at__gte="2030-01-15 00:00:00+00:00",
                 last_failed_at__lt="2030-03-01 00:00:00+00:00") == [sessions]
    assert shown(created_at__gte="2000-01-01 00:00:00+00:00") == [sessions, alloc]


@pytest.mark.django_db
def test_search_is_exact_on_correlation_event_and_student_ids(admin_client):
    row, other = DeadLetterFactory(student_id=4242), DeadLetterFactory(student_id=42)

    def found(term: str) -> list:
        response = admin_client.get(CHANGELIST, {"q": term})
        assert response.status_code == 200
        return list(response.context["cl"].result_list)

    assert found(str(row.correlation_id)) == [row]
    assert found(str(row.event_id)) == [row]
    assert found("4242") == [row]
    assert found("42") == [other]
    assert found(str(row.correlation_id)[:8]) == []  # exact, not a substring
    assert found("not-an-id") == []
    assert found(str(uuid.uuid4())) == []


@pytest.mark.django_db
def test_detail_is_read_only_with_pretty_payload_headers_and_traceback(admin_client):
    row = DeadLetterFactory()
    response = admin_client.get(_change_url(row))
    html = response.content.decode()

    assert response.status_code == 200
    assert '<pre class="dl-payload">{\n  &quot;causation_id&quot;: null,' in html  # pretty-printed JSON
    assert "<th>traceparent</th><td>00-4bf92f3577b34da6-00f067aa0ba902b7-01</td>" in html
    assert '<pre class="dl-traceback">Traceback (most recent call last):' in html
    assert reverse("admin:workers_deadletter_trace", args=[row.correlation_id]) in html
    assert 'name="_save"' not in html and 'name="stage"' not in html  # nothing to edit

    before = DeadLetter.objects.values().get(pk=row.pk)
    response = admin_client.post(_change_url(row), {"status": "resolved", "stage": "x", "payload": "{}"})
    assert response.status_code == 403
    assert DeadLetter.objects.values().get(pk=row.pk) == before
    assert admin_client.get(reverse("admin:workers_deadletter_add")).status_code == 403
    delete_url = reverse("admin:workers_deadletter_delete", args=[row.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert DeadLetter.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_a_payload_that_is_not_json_is_shown_as_an_escaped_repr(admin_client):
    row = DeadLetterFactory(payload=b"<script>alert(1)</script>\xff", event_id=None, correlation_id=None)
    html = admin_client.get(_change_url(row)).content.decode()
    assert "b&#x27;&lt;script&gt;alert(1)&lt;/script&gt;\\xff&#x27;" in html
    assert "<script>alert(1)" not in html


# --- actions and permissions ------------------------------------------------------------------------------
@pytest.mark.django_db
def test_actions_follow_the_dedicated_permissions(admin_client, viewer_client, client, django_user_model):
    row = DeadLetterFactory()
    assert {"replay_selected", "discard_selected"} <= _action_names(admin_client.get(CHANGELIST))

    response = viewer_client.get(CHANGELIST)
    assert response.status_code == 200 and list(response.context["cl"].result_list) == [row]
    assert _action_names(response) == set()
    assert "Replay selected dead letters" not in response.content.decode()
    _action(viewer_client, "replay_selected", [row])  # a forged POST does nothing either
    _action(viewer_client, "discard_selected", [row], post="yes", reason="forged")
    assert DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.NEW
    assert not DeadLetterAction.objects.exists()

    client.force_login(support.staff(django_user_model, "replayer", "view_deadletter", "replay_deadletter"))
    assert _action_names(client.get(CHANGELIST)) == {"replay_selected", "replay_at_rate"}


@pytest.mark.django_db
def test_discard_asks_for_a_reason_then_marks_and_audits(admin_client):
    rows = [DeadLetterFactory(), DeadLetterFactory()]
    resolved = DeadLetterFactory(status=DeadLetter.Status.RESOLVED)
    selected = [*rows, resolved]

    page = _action(admin_client, "discard_selected", selected)
    assert page.status_code == 200 and 'name="reason"' in page.content.decode()
    assert _action(admin_client, "discard_selected", selected, post="yes", reason="  ").status_code == 200
    assert not DeadLetter.objects.filter(status=DeadLetter.Status.DISCARDED).exists()

    response = _action(admin_client, "discard_selected", selected, post="yes", reason="duplicate payment, refunded")
    assert response.status_code == 302
    for row in rows:
        row.refresh_from_db()
        assert (row.status, row.status_changed_by, row.status_reason) == (
            DeadLetter.Status.DISCARDED, "admin", "duplicate payment, refunded")
        assert row.status_changed_at is not None
    assert DeadLetter.objects.get(pk=resolved.pk).status == DeadLetter.Status.RESOLVED
    audit = DeadLetterAction.objects.get()
    assert (audit.actor, audit.action, audit.count, audit.reason) == (
        "admin", "discard", 2, "duplicate payment, refunded")
    assert audit.dead_letter_ids == sorted(r.pk for r in selected)


@pytest.mark.django_db
def test_the_audit_trail_is_visible_and_read_only(admin_client, viewer_client):
    audit = DeadLetterAction.objects.create(actor="cli:ops", action="replay", count=3, dead_letter_ids=[1, 2, 3])
    for client_ in (admin_client, viewer_client):
        assert "cli:ops" in client_.get(reverse("admin:workers_deadletteraction_changelist")).content.decode()
    change = reverse("admin:workers_deadletteraction_change", args=[audit.pk])
    assert admin_client.post(change, {"actor": "someone else", "count": 0}).status_code == 403
    assert DeadLetterAction.objects.get().actor == "cli:ops"
    assert admin_client.get(reverse("admin:workers_deadletteraction_add")).status_code == 403


@pytest.mark.django_db
def test_replay_republishes_the_original_message_and_marks_who_and_when(admin_client, topic_prefix):
    row = DeadLetterFactory(original_partition=1)
    discarded = DeadLetterFactory(status=DeadLetter.Status.DISCARDED)

    response = _action(admin_client, "replay_selected", [row, discarded])

    assert response.status_code == 302
    [message] = support.read_topic("purchase-created", 1)
    assert message.topic() == row.original_topic
    assert message.value() == bytes(row.payload) and message.key() == bytes(row.key)
    headers = message.headers()
    assert headers[0] == ("traceparent", b"00-4bf92f3577b34da6-00f067aa0ba902b7-01")  # original headers first
    replay = dict(headers[1:])
    assert replay[REPLAY_HEADER] == str(row.dead_letter_id).encode()
    assert replay["replay.by"] == b"admin" and replay["replay.at"]
    row.refresh_from_db()
    assert (row.status, row.status_changed_by) == (DeadLetter.Status.REPLAYED, "admin")
    assert row.status_changed_at is not None
    assert DeadLetter.objects.get(pk=discarded.pk).status == DeadLetter.Status.DISCARDED
    audit = DeadLetterAction.objects.get()
    assert (audit.actor, audit.action, audit.count) == ("admin", "replay", 1)
    assert audit.dead_letter_ids == sorted([row.pk, discarded.pk])


@pytest.mark.django_db(transaction=True)
def test_a_row_replayed_twice_is_handled_once_and_ends_resolved(admin_client, make_consumer_for, group_id):
    event = support.purchase_created(21)
    support.SCRIPT[21] = ["permanent"]  # fails once for good, then works
    support.produce_events([event])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 1)
    [message] = support.dead_letters(1)
    persist([message])
    row = DeadLetter.objects.get()
    assert row.consumer_group == group_id

    _action(admin_client, "replay_selected", [row])
    _action(admin_client, "replay_selected", [row])  # an impatient operator: the replay is in flight, skipped
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 2)

    row.refresh_from_db()
    assert (row.status, row.status_reason) == (DeadLetter.Status.RESOLVED, "replay succeeded")
    assert support.CALLS[event.event_id] == 2  # the failure, then one success
    assert support.effects([event]) == 1
    assert ProcessedEvent.objects.filter(consumer=group_id, event_id=event.event_id).count() == 1
    assert OutboxEvent.objects.filter(correlation_id=event.correlation_id, event_type=TRAINER_ALLOCATED).count() == 1
    assert len(support.read_topic("trainer-allocated", 1)) == 1
    # a resolved dead letter is not replayed again
    _action(admin_client, "replay_selected", [row])
    assert len(support.read_topic("purchase-created", 2)) == 2
    assert list(DeadLetterAction.objects.order_by("id").values_list("count", flat=True)) == [1, 0, 0]


# --- the enrollment trace ---------------------------------------------------------------------------------
@pytest.mark.django_db
def test_trace_shows_one_enrollment_in_time_order_and_its_rows(admin_client, viewer_client):
    t0 = datetime.datetime(2030, 1, 7, 9, 0, tzinfo=datetime.UTC)

    def at(seconds: float) -> datetime.datetime:
        return t0 + datetime.timedelta(seconds=seconds)

    # built out of order on purpose: the page sorts by time
    payment = PaymentFactory()
    cid = payment.correlation_id
    allocation = AllocationFactory(correlation_id=cid, student=payment.student, course=payment.course)
    for day in (7, 8):
        SessionFactory(allocation=allocation, scheduled_date=datetime.date(2030, 1, day))
    purchase = PurchaseFactory(payment=payment)
    dead = DeadLetterFactory(correlation_id=cid, last_failed_at=at(4), status=DeadLetter.Status.REPLAYED,
                             status_changed_at=at(5), status_changed_by="ops")
    PendingRetry.objects.create(consumer="trainer-allocation-workers", event_id=uuid.uuid4(), topic="t",
                                partition=0, offset=1, value=b"{}", attempts=2, next_attempt_at=at(60),
                                first_failed_at=at(2.8), last_failed_at=at(3), error_class="TimeoutError",
                                error_message="allocation API timed out", correlation_id=cid)
    for n, (event_type, sent) in enumerate([("PURCHASE_CONFIRMED", True), ("PURCHASE_CREATED", False)]):
        OutboxEvent.objects.create(event_id=uuid.uuid4(), event_type=event_type, topic=event_type.lower(), key="1",
                                   value=b"{}", correlation_id=cid)
        if sent:
            OutboxPending.objects.filter(outbox__event_type=event_type).delete()
        OutboxEvent.objects.filter(event_type=event_type).update(created_at=at(1 + 1.5 * n))
    ProcessedEvent.objects.create(consumer="purchase-creation-workers", event_id=uuid.uuid4(),
                                  event_type="PURCHASE_CONFIRMED", correlation_id=cid)
    ProcessedEvent.objects.update(processed_at=at(2))
    type(payment).objects.filter(pk=payment.pk).update(received_at=at(0))
    type(purchase).objects.filter(pk=purchase.pk).update(created_at=at(2.1))
    type(allocation).objects.filter(pk=allocation.pk).update(created_at=at(6))
    allocation.sessions.update(created_at=at(7))
    other = DeadLetterFactory(error_class="other.enrollment.Error")

    url = reverse("admin:workers_deadletter_trace", args=[cid])
    response = admin_client.get(url)

    assert response.status_code == 200
    assert [s.title for s in response.context["trace"].steps] == [
        "Payment received", "Emitted PURCHASE_CONFIRMED", "Handled PURCHASE_CONFIRMED", "Purchase created",
        "Emitted PURCHASE_CREATED", "Retry pending", "Dead-lettered by allocations (now replayed)",
        f"Dead letter {dead.pk} replayed by ops", "Trainer allocated", "2 session(s) scheduled",
    ]
    html = response.content.decode()
    assert "NOT SENT" in html and "attempt 2, next attempt at 2030-01-07 09:01:00" in html
    assert other.error_class not in html
    assert '<td id="trace-sessions-count">2</td>' in html
    assert "Mon 2030-01-07" in html and "Tue 2030-01-08" in html
    for admin_name, obj in (("purchases_payment", payment), ("purchases_studentcoursepurchase", purchase),
                            ("allocations_trainerallocation", allocation), ("workers_deadletter", dead)):
        assert reverse(f"admin:{admin_name}_change", args=[obj.pk]) in html
        # and each of those pages links back to the trace
        assert url in admin_client.get(reverse(f"admin:{admin_name}_change", args=[obj.pk])).content.decode()
    assert viewer_client.get(url).status_code == 200
    assert "Nothing is recorded" in admin_client.get(
        reverse("admin:workers_deadletter_trace", args=[uuid.uuid4()])).content.decode()


@pytest.mark.django_db
def test_trace_needs_the_dead_letter_view_permission(client, django_user_model):
    client.force_login(support.staff(django_user_model, "clerk", "view_deadletteraction"))
    assert client.get(reverse("admin:workers_deadletter_trace", args=[uuid.uuid4()])).status_code == 403
