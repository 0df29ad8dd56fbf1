"""Bulk replays at a set rate: thousands of dead letters republished at `rate` a second, so the stages and their
dependencies take the replay as a steady trickle, not as a burst that trips their breakers.

A job (ReplayJob) lists the selected dead letters in order. Its runners (the dead-letter persister, between
polls, or `replay_dead_letters --rate` in the foreground) call `run_chunk`: under the job's row lock (SKIP
LOCKED, so runners never wait on each other) and only once its `next_chunk_at` has come, it replays the next
`rate` letters with `dead_letter_store.replay`, moves the position and sets `next_chunk_at` a second later. Two
runners therefore never exceed the rate together. A runner that dies mid-chunk loses at most that chunk from the
job: its letters stay new, for the next replay.

A letter that fails again after its replay is parked (DeadLetter.Status.PARKED, the admin's parking lot), not
made new again, so a bulk replay never loops. The finished job leaves one DeadLetterAction (who, how many, the
ids) in the audit trail."""
from __future__ import annotations

import datetime
import logging

from django.db import transaction
from django.utils import timezone

from workers import dead_letter_store
from workers.models import DeadLetter, DeadLetterAction, ReplayJob

log = logging.getLogger(__name__)
CHUNK_SECONDS = 1.0


def start(rows: list[DeadLetter], *, rate: int, actor: str) -> ReplayJob:
    if rate < 1:
        raise ValueError("the rate is at least 1 dead letter a second")
    return ReplayJob.objects.create(created_by=actor, rate=rate, dead_letter_ids=[r.pk for r in rows],
                                    next_chunk_at=timezone.now())


def run_chunk(job_id: int | None = None) -> ReplayJob | None:
    """Replay the next chunk of a due job (that one, or any), if one is due and free. Returns the job as it is
    after the chunk, or None when nothing was run.

    The chunk is taken in a short transaction and replayed after it commits: the replay's own claims must be
    committed before its messages go out, or a consumer that handles one at once could not resolve its letter."""
    now = timezone.now()
    with transaction.atomic():
        jobs = ReplayJob.objects.select_for_update(skip_locked=True).filter(
            status__in=[ReplayJob.Status.QUEUED, ReplayJob.Status.RUNNING], next_chunk_at__lte=now)
        if job_id is not None:
            jobs = jobs.filter(pk=job_id)
        job = jobs.order_by("created_at", "id").first()
        if job is None:
            return None
        ids = job.dead_letter_ids[job.position:job.position + job.rate]
        job.position += len(ids)
        job.status = ReplayJob.Status.RUNNING
        job.next_chunk_at = now + datetime.timedelta(seconds=CHUNK_SECONDS)
        job.save(update_fields=["position", "status", "next_chunk_at"])
    rows = list(DeadLetter.objects.filter(pk__in=ids).order_by("last_failed_at", "id"))
    result = dead_letter_store.replay(rows, actor=job.created_by)
    with transaction.atomic():
        job = ReplayJob.objects.select_for_update().get(pk=job.pk)
        job.replayed += result.replayed
        job.refused += sum(result.refused.values())
        job.skipped += result.skipped + (len(ids) - len(rows))  # gone since the job was made
        if job.position >= job.total and job.status == ReplayJob.Status.RUNNING:
            _finish(job)
        job.save()
    return job


def cancel(job: ReplayJob) -> bool:
    """Stop a job where it is (what it replayed stays replayed)."""
    with transaction.atomic():
        locked = ReplayJob.objects.select_for_update().get(pk=job.pk)
        if locked.status in (ReplayJob.Status.DONE, ReplayJob.Status.CANCELLED):
            return False
        locked.status, locked.finished_at = ReplayJob.Status.CANCELLED, timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        DeadLetterAction.objects.create(actor=locked.created_by, action=DeadLetterAction.Action.REPLAY,
                                        count=locked.replayed, dead_letter_ids=locked.dead_letter_ids[:locked.position],
                                        reason=f"replay job {locked.pk} at {locked.rate}/s, cancelled")
    return True


def _finish(job: ReplayJob) -> None:
    job.status, job.finished_at = ReplayJob.Status.DONE, timezone.now()
    DeadLetterAction.objects.create(
        actor=job.created_by, action=DeadLetterAction.Action.REPLAY, count=job.replayed,
        dead_letter_ids=job.dead_letter_ids,
        reason=f"replay job {job.pk} at {job.rate}/s: {job.refused} refused, {job.skipped} skipped")
    log.info("replay job done", extra={"job": job.pk, "replayed": job.replayed, "refused": job.refused})
