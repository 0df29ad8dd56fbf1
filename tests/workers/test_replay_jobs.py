"""Bulk replay at a set rate (workers.replay_jobs) and the parking lot: a job takes `rate` dead letters a second,
whoever runs it, shows its progress, and a letter that fails again after its replay is parked, so a bulk replay
never loops."""
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.factories import DeadLetterFactory
from tests.workers import support
from workers import replay_jobs
from workers.dead_letter_store import persist
from workers.models import DeadLetter, DeadLetterAction, PendingRetry, ReplayJob

pytestmark = pytest.mark.django_db(transaction=True)
JOBS = "/admin/workers/replayjob/"


def _due_now(job: ReplayJob) -> None:
    """The second between two chunks has passed."""
    ReplayJob.objects.filter(pk=job.pk).update(next_chunk_at=timezone.now())


def test_a_job_takes_rate_letters_a_chunk_and_one_chunk_a_second(topic_prefix):
    rows = [DeadLetterFactory() for _ in range(12)]
    job = replay_jobs.start(rows, rate=5, actor="ops")
    job = replay_jobs.run_chunk()
    assert (job.position, job.replayed, job.status) == (5, 5, ReplayJob.Status.RUNNING)
    assert replay_jobs.run_chunk() is None  # the next chunk is not due for a second: the rate holds
    assert DeadLetter.objects.filter(status=DeadLetter.Status.REPLAYED).count() == 5
    _due_now(job)
    assert replay_jobs.run_chunk().position == 10
    _due_now(job)
    job = replay_jobs.run_chunk()
    assert (job.position, job.replayed, job.status) == (12, 12, ReplayJob.Status.DONE)
    assert len(support.read_topic("purchase-created", 12)) == 12  # each once
    audit = DeadLetterAction.objects.get()
    assert (audit.actor, audit.count, audit.dead_letter_ids) == ("ops", 12, [r.pk for r in rows])


def test_the_command_runs_a_job_with_its_progress(topic_prefix):
    rows = [DeadLetterFactory() for _ in range(6)]
    out = StringIO()
    call_command("replay_dead_letters", "--rate", "4", stdout=out)
    text = out.getvalue()
    assert "6 dead letter(s) at 4/s" in text and "4/6 taken, 4 replayed" in text and "6/6 taken, 6 replayed" in text
    assert ReplayJob.objects.get().status == ReplayJob.Status.DONE
    assert DeadLetter.objects.filter(pk__in=[r.pk for r in rows], status=DeadLetter.Status.REPLAYED).count() == 6


def test_the_admin_starts_a_job_at_a_rate_shows_its_progress_and_cancels_it(admin_client, topic_prefix):
    rows = [DeadLetterFactory() for _ in range(8)]
    ids = [r.pk for r in rows]
    asked = admin_client.post("/admin/workers/deadletter/", {"action": "replay_at_rate", "_selected_action": ids})
    assert "Dead letters a second" in asked.content.decode()
    admin_client.post("/admin/workers/deadletter/", {"action": "replay_at_rate", "_selected_action": ids,
                                                     "post": "yes", "rate": "0"})
    assert not ReplayJob.objects.exists()  # a rate of at least 1
    done = admin_client.post("/admin/workers/deadletter/", {"action": "replay_at_rate", "_selected_action": ids,
                                                            "post": "yes", "rate": "3"}, follow=True)
    assert "8 dead letter(s) at 3/s" in done.content.decode()
    job = ReplayJob.objects.get()
    replay_jobs.run_chunk()  # the persister's first tick
    assert "3 of 8 (38%)" in admin_client.get(JOBS).content.decode()
    admin_client.post(JOBS, {"action": "cancel_selected", "_selected_action": [job.pk]})
    _due_now(job)
    assert replay_jobs.run_chunk() is None and ReplayJob.objects.get().status == ReplayJob.Status.CANCELLED
    assert DeadLetter.objects.filter(status=DeadLetter.Status.NEW).count() == 5  # untouched


def test_a_letter_that_fails_again_after_its_replay_is_parked_not_replayed_in_bulk(
        admin_client, make_consumer_for, group_id):
    event = support.purchase_created(31)
    support.SCRIPT[31] = ["permanent"] * 10  # the cause is not fixed yet
    support.produce_events([event])
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 1)
    persist(support.dead_letters(1))
    letter = DeadLetter.objects.get()
    replay_jobs.start([letter], rate=10, actor="ops")
    replay_jobs.run_chunk()
    replayed_at = DeadLetter.objects.get().status_changed_at
    support.poll_until(consumer, lambda: PendingRetry.objects.filter(  # revived by the replay, failed again
        dead_lettered=True, last_failed_at__gt=replayed_at).exists())
    persist(support.dead_letters(2))
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.PARKED and "failed again after replay" in letter.status_reason

    out = StringIO()
    call_command("replay_dead_letters", stdout=out)  # a bulk replay of what is new: not the parked one
    assert "nothing to replay" in out.getvalue()
    parking_lot = admin_client.get("/admin/workers/parkeddeadletter/").content.decode()
    assert f"/admin/workers/parkeddeadletter/{letter.pk}/change/" in parking_lot

    support.SCRIPT[31] = []  # the cause is fixed: the operator replays the parked letter alone
    call_command("replay_dead_letters", "--id", str(letter.pk), "--status", "parked", stdout=StringIO())
    support.poll_until(consumer, lambda: support.effects([event]) == 1)
    letter.refresh_from_db()
    assert letter.status == DeadLetter.Status.RESOLVED
