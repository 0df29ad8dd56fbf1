"""Processing without a broker (workers.testing): the Processor driven by SourceMessages, dead letters kept in
memory. Needs only PostgreSQL: the seam handler and processing tests use."""
from __future__ import annotations

import pytest

from tests.workers import support
from workers import metrics
from workers.models import PendingRetry, ProcessedEvent
from workers.stage import DeadLetterPolicy
from workers.testing import local_processor, source_message

pytestmark = pytest.mark.django_db


def sources(events, start=0):
    return [source_message(e, "purchase-created", offset=start + n) for n, e in enumerate(events)]


def test_a_batch_is_handled_once_and_a_redelivery_is_skipped():
    stage = support.make_stage("local-group")
    processor, dead_letters = local_processor(stage)
    events = [support.purchase_created(n) for n in range(1, 5)]
    processor.process(sources(events))
    processor.process(sources(events))  # the same messages again (a redelivery after a crash)
    assert support.effects(events) == 4
    assert ProcessedEvent.objects.filter(consumer="local-group").count() == 4
    assert dead_letters.records == []


def test_poison_and_permanent_failures_are_dead_lettered_and_a_transient_one_waits_for_a_retry():
    stage = support.make_stage("local-group", batchable=False)  # each scripted outcome is played once
    processor, dead_letters = local_processor(stage)
    good, doomed, flaky = (support.purchase_created(n) for n in (21, 22, 23))
    support.SCRIPT.update({22: ["permanent"], 23: ["transient"]})
    poison = source_message(b"{not json", "purchase-created", offset=9)
    processor.process([*sources([good, doomed, flaky]), poison])
    assert sorted(dead_letters.reasons) == ["invalid", "permanent"]
    assert {r.event_id for r in dead_letters.records} == {None, str(doomed.event_id)}
    assert support.effects([good]) == 1 and support.effects([doomed, flaky]) == 0
    retry = PendingRetry.objects.get(consumer="local-group", dead_lettered=False)
    assert (retry.event_id, retry.attempts) == (flaky.event_id, 1)
    # the permanent failure's row stays as the dead-lettered head of its key (key order), never due
    held = PendingRetry.objects.get(consumer="local-group", dead_lettered=True)
    assert (held.event_id, held.attempts) == (doomed.event_id, 1)


def test_log_and_count_policy_drops_instead_of_dead_lettering():
    stage = support.make_stage("local-group", dead_letters=DeadLetterPolicy.LOG_AND_COUNT)
    processor, dead_letters = local_processor(stage)
    support.SCRIPT[31] = ["permanent"]
    processor.process([*sources([support.purchase_created(31)]),
                       source_message(b"[]", "purchase-created", offset=5)])
    assert dead_letters.records == [] and not PendingRetry.objects.exists()


def test_a_superseded_event_is_processed_without_its_writes_a_retry_or_a_dead_letter():
    stage = support.make_stage("local-group", batchable=False)  # each scripted outcome is played once
    processor, dead_letters = local_processor(stage)
    gone, fine = support.purchase_created(41), support.purchase_created(42)
    support.SCRIPT[41] = ["superseded", "superseded"]
    counter = metrics.EVENTS_SUPERSEDED.labels("test", "PURCHASE_CREATED")
    before = counter._value.get()
    processor.process(sources([gone, fine]))
    assert support.effects([gone]) == 0 and support.effects([fine]) == 1
    assert ProcessedEvent.objects.filter(consumer="local-group").count() == 2
    assert dead_letters.records == [] and not PendingRetry.objects.exists()
    assert counter._value.get() == before + 1
    processor.process(sources([gone]))  # a redelivery is skipped: it was processed
    assert support.SCRIPT[41] == ["superseded"]
