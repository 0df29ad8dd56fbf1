"""Key order through failures: a key's events run in order even when one of them fails (workers.stage.Ordering).

The queue is the PendingRetry table itself. The head of a key K, for one consumer group, is K's row with the
lowest id; every later row of K waits behind it, and a freshly consumed event of K is parked behind them
(a row with no attempt spent, due at once) instead of running. Rows are written in the order the group
consumed them, so the ids give the order. Only the head of a key is ever taken by `run_due`, so when the head
succeeds (its row is deleted in the same transaction as its effects) the next row becomes the head and runs
in the same pass. Events of other keys never wait.

Dead letters (policy KEY): an event that is dead-lettered leaves its row in place, marked `dead_lettered`:
never due, still the head. The key stays held until an operator acts on the letter:
- discard: the row goes (workers.dead_letter_store.discard), and the events behind it run;
- replay: when the replayed message comes back to the group, the row is revived where it stands (due now,
  attempts from zero), so the replay runs first and the events behind it after it.
Invalid messages (not an event of the contract) hold nothing: their key cannot be trusted.

Why the table and not memory: it survives restarts and rebalances, and every consumer of the group shares it
(the rows are locked with SKIP LOCKED). Why it is cheap: a batch costs one indexed lookup of the group's rows,
which finds nothing while nothing waits (`_rows_for`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Subquery, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from workers.dead_letter_store import REPLAY_TOKEN_HEADER, is_current_replay
from workers.dead_letters import SourceMessage, encode_headers
from workers.envelope import Event
from workers.models import DeadLetter, PendingRetry
from workers.sql import fetch
from workers.stage import Ordering

# What a batch needs of PendingRetry, in one lookup: the group's rows whole while they are few (almost always:
# none), else the rows of the batch's event ids (redeliveries) and keys (what is parked), two index scans. Sending
# the batch's ids and keys as arrays cost the consumer 1.24-1.27 us of CPU per event (a batch of 500, nothing
# waiting, 3 rounds of 200), reading the empty queue whole 0.41-0.42: for a lookup that nearly always finds nothing.
SMALL_QUEUE = 256
GROUP_ROWS_SQL = "SELECT event_id, key, dead_lettered FROM pending_retries WHERE consumer = %s LIMIT %s"
WAITING_SQL = """
SELECT event_id, key, dead_lettered FROM pending_retries WHERE consumer = %s AND event_id = ANY(%b::uuid[])
"""
WAITING_OR_HELD_SQL = """
SELECT event_id, key, dead_lettered FROM pending_retries
WHERE consumer = %s AND (event_id = ANY(%b::uuid[]) OR key = ANY(%b::bytea[]))
"""
PARKED_NOTE = "waiting behind an earlier event of its key"


@dataclass
class Sorted:
    """A batch split by what waits in PendingRetry: events to run now, events to park behind their key, events
    whose row owns them already (redeliveries), and dead-lettered rows a replay has just revived."""

    run: list[tuple[SourceMessage, Event]] = field(default_factory=list)
    park: list[tuple[SourceMessage, Event]] = field(default_factory=list)
    waiting: int = 0
    revived: int = 0


def sort_batch(group: str, ordering: Ordering, events: Sequence[tuple[SourceMessage, Event]]) -> Sorted:
    """Split `events` (in consumption order) with one query (`_rows_for`). An event whose event id already waits
    is left to its row, unless it is the replay of its dead-lettered row (then the row is revived). An event
    whose key has rows is parked behind them."""
    out = Sorted()
    if not events:
        return out
    rows = _rows_for(group, ordering, events)
    waiting = {row[0]: row[2] for row in rows}
    held = {bytes(row[1]) for row in rows if row[1] is not None} if ordering.by_key else set()
    for source, event in events:
        if event.event_id in waiting:
            if waiting[event.event_id] and _is_replay(group, source, event):
                out.revived += revive(group, source, event)
            else:
                out.waiting += 1
        elif source.key is not None and source.key in held:
            out.park.append((source, event))
        else:
            out.run.append((source, event))
    return out


def _rows_for(group: str, ordering: Ordering, events: Sequence[tuple[SourceMessage, Event]]) -> list[tuple]:
    """The group's PendingRetry rows that may concern the batch. While the group has at most SMALL_QUEUE rows,
    one statement brings them all (those of other events and keys are simply not asked about); past that, a
    second one looks up the batch's event ids and (key order) its keys."""
    rows = fetch(GROUP_ROWS_SQL, [group, SMALL_QUEUE + 1])
    if len(rows) <= SMALL_QUEUE:
        return rows
    ids = [e.event_id for _, e in events]
    if ordering.by_key:
        return fetch(WAITING_OR_HELD_SQL, [group, ids, list({s.key for s, _ in events if s.key is not None})])
    return fetch(WAITING_SQL, [group, ids])


def _is_replay(group: str, source: SourceMessage, event: Event) -> bool:
    """Whether the message is the current replay of this group's dead letter of the event (one query, and only
    for a message that carries a replay token and whose event is dead-lettered here)."""
    return any(name == REPLAY_TOKEN_HEADER and value
               and is_current_replay(value.decode(errors="replace"), event.event_id, group)
               for name, value in source.headers)


def revive(group: str, source: SourceMessage, event: Event) -> int:
    """The replay of a dead-lettered head came back: its row runs again where it stands (due now, attempts from
    zero), carrying the replay's headers so that its success resolves the letter."""
    now = timezone.now()
    return PendingRetry.objects.filter(consumer=group, event_id=event.event_id, dead_lettered=True).update(
        dead_lettered=False, attempts=0, next_attempt_at=now, last_failed_at=now, value=source.value,
        headers=encode_headers(source.headers), error_message="replayed: runs again as the head of its key",
        error_class="", traceback="")


def earlier_of_key() -> Exists:
    """For a PendingRetry queryset: a row of the same group and key that came before (so this one is not the
    head). A row without a key is always its own head."""
    return Exists(PendingRetry.objects.filter(consumer=OuterRef("consumer"), key=OuterRef("key"),
                                              pk__lt=OuterRef("pk")))


def runnable(group: str, ordering: Ordering) -> QuerySet[PendingRetry]:
    """The rows `run_due` may take: not dead-lettered, and (key order) the head of their key."""
    rows = PendingRetry.objects.filter(consumer=group, dead_lettered=False)
    return rows.filter(~earlier_of_key()) if ordering.by_key else rows


@dataclass(frozen=True)
class Counts:
    retrying: int  # rows that run when due (heads, or any row without key order)
    parked: int  # rows waiting behind an earlier row of their key
    held_keys: int  # dead-lettered heads: keys held until an operator acts


def counts(group: str) -> Counts:
    """The group's PendingRetry rows by state, in one query (for the gauges and worker_health)."""
    behind = earlier_of_key()
    row = PendingRetry.objects.filter(consumer=group).aggregate(
        held=Count("pk", filter=Q(dead_lettered=True)),
        parked=Count("pk", filter=Q(dead_lettered=False) & behind),
        all=Count("pk"),
    )
    return Counts(retrying=row["all"] - row["held"] - row["parked"], parked=row["parked"], held_keys=row["held"])


def annotate_waiting_behind(letters: QuerySet[DeadLetter]) -> QuerySet[DeadLetter]:
    """Dead letters with `waiting_behind`: how many of their group's events wait behind them (0 for a letter
    that holds no key: resolved, discarded, invalid, or under a policy that releases keys)."""
    behind = (PendingRetry.objects.filter(consumer=OuterRef("consumer_group"), key=OuterRef("key"),
                                          dead_lettered=False)
              .order_by().values("consumer").annotate(n=Count("pk")).values("n"))
    holds = Exists(PendingRetry.objects.filter(consumer=OuterRef("consumer_group"), event_id=OuterRef("event_id"),
                                               dead_lettered=True))
    return letters.annotate(waiting_behind=Case(When(holds, then=Coalesce(Subquery(behind), 0)), default=0))


def waiting_behind(row: PendingRetry) -> tuple[PendingRetry | None, DeadLetter | None]:
    """For the trace page: the head a parked row waits behind (None when it is a head), and the head's dead
    letter when the head is dead-lettered (None also while the letter is not stored yet)."""
    head = (PendingRetry.objects.filter(consumer=row.consumer, key=row.key, pk__lt=row.pk).order_by("pk").first()
            if row.key is not None else None)
    if head is None or not head.dead_lettered:
        return head, None
    return head, DeadLetter.objects.filter(consumer_group=head.consumer, event_id=head.event_id).first()
