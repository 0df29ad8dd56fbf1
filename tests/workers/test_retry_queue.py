"""The retry queue in the admin: what waits, and "retry now" / "discard" with their own permissions and an audit
row. Real consumers run what the actions release."""
import pytest

from tests.workers import support
from workers import registry, retry_queue
from workers.models import DeadLetter, PendingRetry, RetryQueueAction

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/admin/workers/pendingretry/"


def _waiting(make_consumer_for, settings, student_id: int, behind: int = 0):
    """An event that failed once and waits 10 minutes for its next attempt, and `behind` later events of the
    same student parked behind it (key order)."""
    settings.RETRY_BASE_SECONDS = settings.RETRY_MAX_SECONDS = 600
    first = support.purchase_created(student_id)
    later = [support.purchase_created(student_id) for _ in range(behind)]
    support.SCRIPT[student_id] = ["transient"] * 5  # however often the batch and then the event alone are tried
    support.produce_events([first, *later])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: PendingRetry.objects.filter(consumer=consumer.stage.group_id).count()
                       == 1 + behind)
    support.SCRIPT[student_id] = []  # its next attempt succeeds
    return consumer, first, later


def _act(client, action: str, rows, **extra):
    return client.post(URL, {"action": action, "_selected_action": [r.pk for r in rows], **extra}, follow=True)


def test_the_queue_shows_each_waiting_event_and_its_state(admin_client, make_consumer_for, settings):
    _waiting(make_consumer_for, settings, 501, behind=1)
    page = admin_client.get(URL).content.decode()
    assert "retrying" in page and "waits behind an earlier event of its key" in page
    assert "dependency unavailable" in page  # its last error
    assert retry_queue.stage_of(registry.stage("purchases").group_id) == "purchases"  # the stage column


def test_retry_now_runs_it_at_once_and_is_audited(client, django_user_model, make_consumer_for, settings):
    consumer, first, _ = _waiting(make_consumer_for, settings, 502)
    client.force_login(support.staff(django_user_model, "ops", "view_pendingretry", "retry_pendingretry"))
    answer = _act(client, "retry_selected_now", PendingRetry.objects.all())
    assert "Made due now: 1 waiting event(s)." in answer.content.decode()
    support.poll_until(consumer, lambda: support.effects([first]) == 1, timeout=10)  # not 10 minutes
    assert not PendingRetry.objects.exists()
    audit = RetryQueueAction.objects.get()
    assert (audit.actor, audit.action, audit.count, audit.event_ids) == ("ops", "retry_now", 1, [str(first.event_id)])


def test_discard_keeps_the_message_as_a_discarded_dead_letter_and_frees_its_key(
        client, django_user_model, make_consumer_for, settings):
    consumer, first, later = _waiting(make_consumer_for, settings, 503, behind=2)
    client.force_login(support.staff(django_user_model, "ops", "view_pendingretry", "discard_pendingretry"))
    head = PendingRetry.objects.get(event_id=first.event_id)
    asked = _act(client, "discard_selected", [head])
    assert "give a reason" in asked.content.decode()
    assert PendingRetry.objects.filter(pk=head.pk).exists()  # nothing happens without a reason
    _act(client, "discard_selected", [head], post="yes", reason="test purchase, refunded by hand")
    letter = DeadLetter.objects.get(event_id=first.event_id)
    assert letter.status == DeadLetter.Status.DISCARDED and letter.status_changed_by == "ops"
    assert bytes(letter.payload) == first.to_json() and letter.attempts == 1
    assert letter.consumer_group == consumer.stage.group_id
    assert "test purchase, refunded by hand" in letter.status_reason
    settings.RETRY_BASE_SECONDS = settings.RETRY_MAX_SECONDS = 0.2
    support.poll_until(consumer, lambda: support.effects(later) == 2, timeout=15)  # the key moves on
    assert support.effects([first]) == 0 and not PendingRetry.objects.exists()
    audit = RetryQueueAction.objects.get()
    assert (audit.action, audit.count, audit.reason) == ("discard", 1, "test purchase, refunded by hand")


def test_the_actions_need_their_permissions(client, django_user_model, make_consumer_for, settings):
    _waiting(make_consumer_for, settings, 504)
    client.force_login(support.staff(django_user_model, "viewer", "view_pendingretry"))
    page = client.get(URL).content.decode()
    assert "Retry selected now" not in page and "Discard selected" not in page
    _act(client, "retry_selected_now", PendingRetry.objects.all())
    _act(client, "discard_selected", PendingRetry.objects.all(), post="yes", reason="x")
    assert PendingRetry.objects.count() == 1 and not RetryQueueAction.objects.exists()


def test_a_row_holding_its_key_for_a_dead_letter_is_left_to_the_dead_letter(admin_client, make_consumer_for,
                                                                             settings):
    _waiting(make_consumer_for, settings, 505)
    PendingRetry.objects.update(dead_lettered=True)
    answer = _act(admin_client, "retry_selected_now", PendingRetry.objects.all()).content.decode()
    assert "Made due now: 0 waiting event(s)." in answer and "hold their key for a dead letter" in answer
