"""Replay bookkeeping holds under races: rows are marked before anything is published, under row locks and a
status guard, and only the current, genuine replay attempt resolves its row (workers.dead_letter_store)."""
import threading
import uuid

import pytest
from django.db import connection

from tests.factories import DeadLetterFactory
from tests.workers import support
from workers import dead_letter_actions, dead_letter_store
from workers.dead_letter_store import REPLAY_TOKEN_HEADER, mark_replays_resolved
from workers.models import DeadLetter

pytestmark = pytest.mark.django_db(transaction=True)


class WatchedProducer:
    """The real producer; `on_produce` runs when a replay is produced, as a consumer or an operator might act
    at that instant (the timing cannot be made on cue otherwise)."""

    def __init__(self, real, on_produce) -> None:
        self.real, self.on_produce = real, on_produce

    def produce(self, *args, **kwargs):
        self.on_produce()
        return self.real.produce(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def _watch(monkeypatch, on_produce) -> None:
    real = dead_letter_store.make_producer
    monkeypatch.setattr(dead_letter_store, "make_producer", lambda: WatchedProducer(real(), on_produce))


def _token(message) -> str:
    return dict(message.headers())[REPLAY_TOKEN_HEADER].decode()


def test_a_replay_is_marked_before_its_message_exists_so_a_fast_success_resolves_it(topic_prefix, monkeypatch):
    row = DeadLetterFactory()
    seen = []
    _watch(monkeypatch, lambda: seen.append(DeadLetter.objects.get(pk=row.pk).status))
    assert dead_letter_actions.replay([row], actor="ops").replayed == 1
    assert seen == [DeadLetter.Status.REPLAYED]
    [message] = support.read_topic("purchase-created", 1)
    assert mark_replays_resolved([(_token(message), row.event_id)], consumer_group=row.consumer_group) == 1
    assert DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.RESOLVED


def test_a_fast_failure_of_the_replay_keeps_its_new_status(topic_prefix, monkeypatch):
    row = DeadLetterFactory()

    def fails_again_at_once() -> None:  # what the persister does when the replayed event fails again
        DeadLetter.objects.filter(pk=row.pk).update(status=DeadLetter.Status.NEW, status_reason="failed again")

    _watch(monkeypatch, fails_again_at_once)
    dead_letter_actions.replay([row], actor="ops")
    row.refresh_from_db()
    assert (row.status, row.status_reason) == (DeadLetter.Status.NEW, "failed again")


def test_a_letter_discarded_after_it_was_selected_is_not_replayed(topic_prefix):
    row = DeadLetterFactory()
    selected = list(DeadLetter.objects.filter(pk=row.pk))  # the admin's queryset, before the discard lands
    dead_letter_actions.discard([row], actor="other-operator", reason="known bad")
    result = dead_letter_actions.replay(selected, actor="ops")
    assert (result.replayed, result.skipped) == (0, 1)
    assert support.read_topic("purchase-created", 0, timeout=1) == []
    assert DeadLetter.objects.get(pk=row.pk).status == DeadLetter.Status.DISCARDED


def test_two_concurrent_replays_of_one_letter_publish_it_once(topic_prefix):
    row = DeadLetterFactory()
    barrier, results = threading.Barrier(2), []

    def replay() -> None:
        barrier.wait()
        results.append(dead_letter_actions.replay(list(DeadLetter.objects.filter(pk=row.pk)), actor="ops").replayed)
        connection.close()

    threads = [threading.Thread(target=replay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1]
    assert len(support.read_topic("purchase-created", 1)) == 1


def test_only_the_genuine_current_attempt_for_its_own_event_resolves_a_letter(topic_prefix):
    first, second = DeadLetterFactory(), DeadLetterFactory()
    dead_letter_actions.replay([first, second], actor="ops")
    tokens = {m.value(): _token(m) for m in support.read_topic("purchase-created", 2)}
    token = tokens[bytes(first.payload)]
    group = first.consumer_group
    assert mark_replays_resolved([(token, second.event_id)], consumer_group=group) == 0  # copied onto another event
    assert mark_replays_resolved([(token + "x", first.event_id)], consumer_group=group) == 0  # forged
    assert mark_replays_resolved([("not a token", first.event_id)], consumer_group=group) == 0
    assert mark_replays_resolved([(token, first.event_id)], consumer_group="other-group") == 0
    assert mark_replays_resolved([(token, first.event_id)], consumer_group=group) == 1
    # a later attempt makes the earlier token stale
    DeadLetter.objects.filter(pk=second.pk).update(replay_attempt_id=uuid.uuid4())
    assert mark_replays_resolved([(tokens[bytes(second.payload)], second.event_id)], consumer_group=group) == 0
