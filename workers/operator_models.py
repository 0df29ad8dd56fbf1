"""The operators' models: stage pauses and their audit, the consumers' samples for the pipeline console, the
retry queue's audit and replay jobs. Imported by workers.models, so Django sees them as the workers app's."""
from __future__ import annotations

from django.db import models


class StagePause(models.Model):
    """A stage that must not consume now: every consumer of its group pauses its partitions (still polling,
    still in the group) while this row exists, and a consumer that joins later starts paused. Written by
    stop-the-line (workers.line) or by an operator (`pause_stage`); `resume_stage` deletes it."""

    stage = models.CharField(max_length=64, unique=True)
    reason = models.TextField()
    automatic = models.BooleanField(default=False, help_text="Stopped by its dead-letter limit, not by a person.")
    paused_by = models.CharField(max_length=150)
    paused_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "stage_pauses"
        permissions = [("pause_stage", "Can pause and resume a stage")]

    def __str__(self) -> str:
        return f"{self.stage} paused by {self.paused_by}: {self.reason}"


class StageControlAction(models.Model):
    """The audit trail of pauses and resumes: who, when, which stage, why. Never edited."""

    class Action(models.TextChoices):
        PAUSE = "pause"
        RESUME = "resume"

    stage = models.CharField(max_length=64)
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.CharField(max_length=150)
    reason = models.TextField(blank=True, default="")
    # A resume may let this many dead letters through before the limit counts again (messages that were invalid
    # when the line stopped cannot wait as retries: their batch is read again after the resume).
    accept_dead_letters = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "stage_control_actions"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.stage} by {self.actor}"

class StageSample(models.Model):
    """What one consumer process saw over the last few seconds, written every SAMPLE_SECONDS by
    workers.samples: the pipeline console's history (throughput and lag over 15 minutes), its events/s, breaker
    state and time of the last commit. Each process deletes its stage's samples past SAMPLE_RETENTION.
    The view permission on this model is the console's ("Can view pipeline")."""

    stage = models.CharField(max_length=64)
    member = models.CharField(max_length=200, help_text="host:pid of the consumer process")
    at = models.DateTimeField()
    seconds = models.FloatField(help_text="The time this sample covers.")
    processed = models.PositiveIntegerField(help_text="Events handled in that time (skips and retries included).")
    lag = models.BigIntegerField(help_text="Messages behind the end of this member's partitions; -1 unknown.")
    partitions = models.PositiveIntegerField(default=0)
    breaker = models.CharField(max_length=16, default="closed")
    paused = models.BooleanField(default=False)
    last_commit_at = models.DateTimeField(null=True)

    class Meta:
        db_table = "stage_samples"
        indexes = [models.Index(fields=["stage", "at"], name="stage_sample_stage_at")]
        verbose_name = "pipeline"
        verbose_name_plural = "pipeline"

    def __str__(self) -> str:
        return f"{self.stage} {self.member} at {self.at:%H:%M:%S}"

class RetryQueueAction(models.Model):
    """The audit trail of the retry queue (workers.retry_queue): who made which waiting events due now, or took
    them out of the queue (kept as discarded dead letters), and why. Never edited."""

    class Action(models.TextChoices):
        RETRY_NOW = "retry_now"
        DISCARD = "discard"

    actor = models.CharField(max_length=150)
    action = models.CharField(max_length=16, choices=Action.choices)
    count = models.PositiveIntegerField(help_text="How many waiting events the action changed.")
    event_ids = models.JSONField(default=list, help_text="The event ids it changed.")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "retry_queue_actions"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} of {self.count} waiting event(s) by {self.actor}"

class ReplayJob(models.Model):
    """A bulk replay at a set rate (workers.replay_jobs): `rate` dead letters a second, in the order of
    `dead_letter_ids`, run by the dead-letter persister (or by `replay_dead_letters --rate` in the foreground),
    one chunk a second under the job's row lock, so two runners never exceed the rate together."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        CANCELLED = "cancelled"

    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    rate = models.PositiveIntegerField(help_text="Dead letters replayed per second.")
    dead_letter_ids = models.JSONField(default=list)
    position = models.PositiveIntegerField(default=0, help_text="How many of the ids were taken so far.")
    replayed = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    next_chunk_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "replay_jobs"
        ordering = ["-created_at", "-id"]

    @property
    def total(self) -> int:
        return len(self.dead_letter_ids)

    def __str__(self) -> str:
        return f"replay of {self.total} dead letter(s) at {self.rate}/s by {self.created_by}"
