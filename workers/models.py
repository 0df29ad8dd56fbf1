"""The framework's own tables: what each consumer group processed, what waits to be published, what waits to
be retried, and what failed for good."""
import uuid

from django.contrib.postgres.indexes import BrinIndex
from django.db import models


class ProcessedEvent(models.Model):
    """One event handled by one consumer group. Keyed by (consumer, event_id), not event_id alone: two groups
    read `purchase-created`, and the first one done must not make the other skip it."""

    consumer = models.CharField(max_length=100)
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    correlation_id = models.UUIDField(null=True, db_index=True)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "processed_events"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="uniq_processed_event_per_consumer"),
        ]
        # Only pruning reads by time, and rows arrive in time order: a BRIN index serves that range scan at a
        # fraction of a B-tree's cost on every claim (this table takes one row per event per stage).
        indexes = [BrinIndex(fields=["processed_at"], name="processed_events_at_brin")]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id}"


class OutboxQuerySet(models.QuerySet):
    def unsent(self) -> "OutboxQuerySet":
        """Rows the broker has not acknowledged yet: those with an OutboxPending row."""
        return self.filter(pending__isnull=False)

    def sent(self) -> "OutboxQuerySet":
        return self.filter(pending__isnull=True)

    def with_unsent(self) -> "OutboxQuerySet":
        """Every row, each with `unsent` (True while it has an OutboxPending row), in one query."""
        return self.annotate(unsent=models.Exists(OutboxPending.objects.filter(outbox=models.OuterRef("pk"))))


class OutboxEvent(models.Model):
    """An event written in the same transaction as the state change that caused it; published after commit,
    and by `relay_outbox` if that did not happen (crash between commit and publish, broker down).

    A row never changes once written (but for the relay's failure count): whether it is sent is the absence of
    its OutboxPending row, not a column. Marking a row sent used to be an UPDATE of `sent_at`, which wrote a new
    version of the whole row (its ~1 KB value included) and an entry in each of its B-trees; deleting the pending
    row costs PostgreSQL a fraction of that (docs/benchmarks.md)."""

    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64)
    topic = models.CharField(max_length=249)
    key = models.CharField(max_length=255)
    value = models.BinaryField(help_text="The serialized envelope, published byte for byte.")
    correlation_id = models.UUIDField(null=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    publish_attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    # After a failed relay attempt: not before this time again (backoff per row), so rows that keep failing never
    # hold up the rows behind them.
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        db_table = "outbox_events"
        indexes = [
            # Retention finds old rows by creation time (a row is sent within seconds of it). BRIN, not a B-tree:
            # rows arrive in time order, and every B-tree more is paid on each insert.
            BrinIndex(fields=["created_at"], name="outbox_created_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class OutboxPending(models.Model):
    """An outbox row the broker has not acknowledged yet.

    Every outbox row is born with one: a statement-level trigger on outbox_events inserts it (workers migration
    0013), whatever inserted the row (the hot paths' SQL, the ORM, a restore script), so no path can write an
    event that is never published. The publisher deletes it on the broker's delivery report; the relay
    publishes the rows that still have one after a grace period. The table holds only the unsent rows, so it
    stays small; its deletes are cheap and leave the outbox row itself untouched.

    No foreign-key constraint: its check would cost each insert a lookup (measured at twice the insert
    itself); the trigger makes the row from the outbox row's own id, and `prune` removes a pending row whose
    outbox row was deleted by hand."""

    outbox = models.OneToOneField(OutboxEvent, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False,
                                  db_column="outbox_id", related_name="pending")

    class Meta:
        db_table = "outbox_pending"

    def __str__(self) -> str:
        return f"pending outbox row {self.outbox_id}"


class PendingRetry(models.Model):
    """A message whose handler failed with a transient error and waits for its next attempt.

    The row holds the original message, so the Kafka offset can be committed as soon as the row is durable:
    the partition keeps flowing while this one event waits, and its attempt count and due time survive a
    restart. Workers of the group take due rows with SELECT ... FOR UPDATE SKIP LOCKED.
    """

    consumer = models.CharField(max_length=100)
    event_id = models.UUIDField()
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    key = models.BinaryField(null=True)
    value = models.BinaryField()
    headers = models.JSONField(default=list)
    attempts = models.PositiveIntegerField(default=1)
    next_attempt_at = models.DateTimeField()
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    error_class = models.CharField(max_length=200)
    error_message = models.TextField()
    traceback = models.TextField(blank=True, default="")
    correlation_id = models.UUIDField(null=True)
    # Key order (workers.ordering): the event was dead-lettered, and its row stays as the head of its key, never
    # due, holding the group's later events of that key behind it until the dead letter is discarded or replayed.
    dead_lettered = models.BooleanField(default=False)

    class Meta:
        db_table = "pending_retries"
        constraints = [models.UniqueConstraint(fields=["consumer", "event_id"], name="uniq_pending_retry_per_consumer")]
        indexes = [
            models.Index(fields=["consumer", "next_attempt_at"], name="pending_retry_due"),
            # The rows of one key in arrival order: the head of a key is its lowest id (workers.ordering).
            models.Index(fields=["consumer", "key", "id"], name="pending_retry_key_order"),
        ]
        verbose_name = "pending retry"
        verbose_name_plural = "retry queue"
        permissions = [
            ("retry_pendingretry", "Can retry pending retries now"),
            ("discard_pendingretry", "Can discard pending retries"),
        ]


class DeadLetter(models.Model):
    """A message a stage gave up on, with everything needed to understand and replay it."""

    class Status(models.TextChoices):
        NEW = "new"
        REPLAYED = "replayed"
        # Failed again after a replay: kept out of bulk replays (no replay loop), in the parking lot until an
        # operator replays it alone once the cause is fixed, or discards it.
        PARKED = "parked"
        DISCARDED = "discarded"
        RESOLVED = "resolved"

    class Reason(models.TextChoices):
        """Why the stage gave up (`dlq.reason`)."""

        INVALID = "invalid", "invalid (not an event of the contract)"
        PERMANENT = "permanent", "permanent error"
        EXHAUSTED = "exhausted", "attempts exhausted"
        UNKNOWN = "unknown", "unknown (no or an unknown dlq.reason)"

    id = models.BigAutoField(primary_key=True)
    dead_letter_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stage = models.CharField(max_length=64)
    consumer_group = models.CharField(max_length=100)
    event_id = models.UUIDField(null=True, blank=True, db_index=True)
    event_type = models.CharField(max_length=64, blank=True, default="")
    original_topic = models.CharField(max_length=249)
    original_partition = models.IntegerField()
    original_offset = models.BigIntegerField()
    key = models.BinaryField(null=True)
    headers = models.JSONField(default=list)
    payload = models.BinaryField(help_text="The original message value, byte for byte.")
    error_class = models.CharField(max_length=200)
    error_message = models.TextField()
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    first_failed_at = models.DateTimeField()
    last_failed_at = models.DateTimeField()
    correlation_id = models.UUIDField(null=True, blank=True, db_index=True)
    # The value of the contract's key field (settings.PIPELINE_CONTRACT): in this pipeline, the student id.
    partition_key = models.CharField(max_length=255, null=True, blank=True, db_index=True)
    reason = models.CharField(max_length=16, choices=Reason.choices, default=Reason.UNKNOWN, db_index=True)
    # The dlq.* headers could not all be stored as they came (an impossible date, an over-long name, a number
    # out of range): what could be was stored, and this says what was not. Such a letter is never replayed.
    malformed = models.BooleanField(default=False, db_index=True)
    malformed_detail = models.TextField(blank=True, default="")
    # Parts of the original message the dead-letter copy had to cut to fit the broker (workers.oversize):
    # part -> "<bytes> <sha256>" ("<count> <bytes> <sha256>" for headers). A cut letter is never replayed.
    cut = models.JSONField(default=dict, blank=True)
    # The replay in flight: only a consumer that handled this exact attempt of this event resolves the row.
    replay_attempt_id = models.UUIDField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.CharField(max_length=150, blank=True, default="")
    status_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "dead_letters"
        constraints = [
            models.UniqueConstraint(
                fields=["consumer_group", "original_topic", "original_partition", "original_offset"],
                name="uniq_dead_letter_per_message_and_group",
            ),
            # A replayed event that fails again updates its row instead of adding one.
            models.UniqueConstraint(
                fields=["consumer_group", "event_id"],
                condition=models.Q(event_id__isnull=False),
                name="uniq_dead_letter_per_event_and_group",
            ),
        ]
        permissions = [
            ("replay_deadletter", "Can replay dead letters"),
            ("discard_deadletter", "Can discard dead letters"),
        ]

    def __str__(self) -> str:
        return f"dead letter {self.pk} ({self.stage}: {self.error_class})"


class DeadLetterAction(models.Model):
    """The audit trail of what operators did to dead letters, from the admin or `replay_dead_letters`.

    One row per action run: who, when, what, how many rows it changed, which rows were selected, and why
    (a discard's reason). Rows are never edited: the admin shows them read-only.
    """

    class Action(models.TextChoices):
        REPLAY = "replay"
        DISCARD = "discard"

    actor = models.CharField(max_length=150, help_text="Admin username, or cli:<user> for the command.")
    action = models.CharField(max_length=16, choices=Action.choices)
    count = models.PositiveIntegerField(help_text="How many dead letters the action changed.")
    dead_letter_ids = models.JSONField(default=list, help_text="The ids of the selected dead letters.")
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "dead_letter_actions"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} of {self.count} dead letter(s) by {self.actor}"


class ParkedDeadLetter(DeadLetter):
    """The parking lot: dead letters that failed again after a replay (status parked), in an admin list of
    their own."""

    class Meta:
        proxy = True
        verbose_name = "parked dead letter"
        verbose_name_plural = "parking lot"


# The operators' models live in a module of their own; importing them here registers them with the app.
from workers.operator_models import (  # noqa: E402,F401
    ReplayJob,
    RetryQueueAction,
    StageControlAction,
    StagePause,
    StageSample,
)
