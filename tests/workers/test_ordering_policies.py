"""The ordering policies without a broker (workers.testing): what each policy holds back, what a batch costs,
and the per-stage override in settings. PostgreSQL only."""
from __future__ import annotations

import datetime

import pytest
from django.core.checks import run_checks
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.workers import support
from workers import ordering, registry
from workers.models import PendingRetry
from workers.stage import Ordering
from workers.testing import local_processor, source_message

pytestmark = pytest.mark.django_db


def sources(events, start=0):
    return [source_message(e, "purchase-created", offset=start + n) for n, e in enumerate(events)]


def lookups(queries) -> list[str]:
    return [q["sql"] for q in queries if "pending_retries" in q["sql"] and q["sql"].lstrip().startswith("SELECT")]


def test_a_batch_costs_one_lookup_of_what_waits_whether_or_not_anything_is_parked():
    processor, _ = local_processor(support.make_stage("local-group"))
    with CaptureQueriesContext(connection) as nothing_parked:
        processor.process(sources([support.purchase_created(n) for n in range(1, 201)]))
    assert len(lookups(nothing_parked.captured_queries)) == 1

    support.SCRIPT[500] = ["transient"]
    processor.process(sources([support.purchase_created(500)], start=300))
    behind = [support.purchase_created(500), *(support.purchase_created(n) for n in range(501, 600))]
    with CaptureQueriesContext(connection) as one_parked:
        processor.process(sources(behind, start=400))
    assert len(lookups(one_parked.captured_queries)) == 1
    assert support.effects(behind[1:]) == 99 and support.effects(behind[:1]) == 0
    assert ordering.counts("local-group") == ordering.Counts(retrying=1, parked=1, held_keys=0)


def test_within_one_batch_a_failed_event_holds_the_rest_of_its_key():
    processor, _ = local_processor(support.make_stage("local-group"))  # the batch fails, then one at a time
    support.SCRIPT[7] = ["transient", "transient"]  # the batch try, then alone
    first, second, other = support.purchase_created(7), support.purchase_created(7), support.purchase_created(8)
    processor.process(sources([first, other, second]))
    assert support.effects([other]) == 1 and support.effects([first, second]) == 0
    assert list(PendingRetry.objects.order_by("id").values_list("event_id", "attempts")) == [
        (first.event_id, 1), (second.event_id, 0)]
    assert support.CALLS[second.event_id] == 0


@pytest.mark.parametrize(("policy", "behind_runs", "counts"), [
    (Ordering.KEY, False, ordering.Counts(retrying=0, parked=1, held_keys=1)),
    (Ordering.KEY_RETRIES_ONLY, True, ordering.Counts(retrying=0, parked=0, held_keys=0)),
    (Ordering.NONE, True, ordering.Counts(retrying=0, parked=0, held_keys=0)),
])
def test_what_a_dead_letter_holds_under_each_policy(policy, behind_runs, counts):
    processor, dead_letters = local_processor(support.make_stage("local-group", ordering=policy))
    support.SCRIPT[9] = ["permanent"]
    doomed, behind = support.purchase_created(9), support.purchase_created(9)
    processor.process(sources([doomed]))
    processor.process(sources([behind], start=1))
    assert dead_letters.reasons == ["permanent"]
    assert support.effects([behind]) == (1 if behind_runs else 0)
    assert ordering.counts("local-group") == counts


def test_without_key_order_a_retry_is_overtaken_by_the_next_event_of_its_key():
    processor, _ = local_processor(support.make_stage("local-group", ordering=Ordering.NONE))
    support.SCRIPT[10] = ["transient"]
    first, second = support.purchase_created(10), support.purchase_created(10)
    processor.process(sources([first]))
    processor.process(sources([second], start=1))
    assert support.effects([second]) == 1 and support.effects([first]) == 0


def test_due_retries_take_only_the_head_of_each_key(settings):
    settings.RETRY_BASE_SECONDS, settings.RETRY_MAX_SECONDS = 60, 600
    processor, _ = local_processor(support.make_stage("local-group", batchable=False))
    support.SCRIPT[11] = ["transient"]
    first, second = support.purchase_created(11), support.purchase_created(11)
    processor.process(sources([first, second]))
    assert PendingRetry.objects.get(event_id=second.event_id).next_attempt_at <= timezone.now()  # due, yet:
    assert processor.run_due() == 0 and support.CALLS[second.event_id] == 0  # not the head of its key
    PendingRetry.objects.filter(event_id=first.event_id).update(next_attempt_at=timezone.now())
    assert processor.run_due() == 2  # the head succeeds, and the next row runs in the same pass
    assert support.effect_order([first, second]) == [first.event_id, second.event_id]


def test_stage_ordering_in_settings_overrides_a_stage_and_refuses_what_it_does_not_know(settings):
    assert registry.stage("allocations").ordering is Ordering.KEY
    assert registry.stage("cache").ordering is Ordering.NONE
    settings.STAGE_ORDERING = {"allocations": "key-retries-only"}
    assert registry.stage("allocations").ordering is Ordering.KEY_RETRIES_ONLY
    for wrong, message in (({"allocations": "sometimes"}, "not one of key, key-retries-only, none"),
                           ({"nosuchstage": "none"}, "no stage of PIPELINE_STAGES")):
        settings.STAGE_ORDERING = wrong
        errors = [e for e in run_checks(tags=["pipeline"]) if e.id == "workers.E001"]
        assert len(errors) == 1 and message in errors[0].msg


def test_a_long_queue_is_looked_up_by_the_batch_ids_and_keys_and_still_parks_what_it_holds():
    """Past ordering.SMALL_QUEUE rows the group's queue is not read whole: a second lookup by the batch's event
    ids and keys, which parks the same events."""
    processor, _ = local_processor(support.make_stage("local-group"))
    support.SCRIPT[900] = ["transient"]
    processor.process(sources([support.purchase_created(900)], start=0))  # key 900 now waits for its retry
    now = timezone.now()
    PendingRetry.objects.bulk_create([
        PendingRetry(consumer="local-group", event_id=support.purchase_created(10_000 + n).event_id,
                     topic="purchase-created", partition=0, offset=10_000 + n, key=str(10_000 + n).encode(),
                     value=b"{}", next_attempt_at=now + datetime.timedelta(hours=1), first_failed_at=now,
                     last_failed_at=now, error_class="Transient", error_message="waits")
        for n in range(ordering.SMALL_QUEUE)
    ])
    batch = [support.purchase_created(900), *(support.purchase_created(n) for n in range(901, 951))]
    with CaptureQueriesContext(connection) as queries:
        processor.process(sources(batch, start=100))
    assert len(lookups(queries.captured_queries)) == 2
    assert support.effects(batch[1:]) == 50 and support.effects(batch[:1]) == 0
