"""The bad-input corpus (tests/e2e/corpus.py) through the running pipeline (every Procfile process).

Every bad message is produced to every stage topic, interleaved with good events and a real signed payment.
Afterwards: each bad message on a dead-lettering stage's topic was dead-lettered exactly once by its consuming
group, with its reason (dlq.* headers and the DeadLetter row stored by the dead_letters process); the cache stage
(which never dead-letters) dropped each invalid one with a log line; nothing bad wrote a row (payments, purchases,
allocations, sessions, outbox, processed events, retries); every process still runs; the good events between
the bad ones were processed, and the payment ended with 7 sessions.
"""
import datetime
import json
import time
import uuid
from collections import defaultdict

import pytest
import requests
from django.conf import settings
from django.core.cache import cache

from allocations.models import TrainerAllocation, slot_time
from enrollment.events import (
    PURCHASE_CONFIRMED,
    PURCHASE_CREATED,
    SESSIONS_SCHEDULED,
    TOPIC_BY_EVENT_TYPE,
    TRAINER_ALLOCATED,
)
from purchases.models import Payment, StudentCoursePurchase
from purchases.signing import sign
from sessions_sched.models import TrainingSession
from tests.e2e.corpus import CASE_HEADER, TOPIC_TYPES, Case, Seed, corpus, duplicate
from tests.e2e.harness import group_lag, stage_groups, wait_until
from tests.factories import (
    AllocationFactory,
    CourseFactory,
    PaymentFactory,
    PurchaseFactory,
    StudentFactory,
    TrainerFactory,
)
from tests.workers import support
from workers.dead_letters import context_from_headers, decode_headers
from workers.envelope import build_event
from workers.kafka import make_producer, topic
from workers.models import DeadLetter, OutboxEvent, PendingRetry, ProcessedEvent

# The corpus is nearly all garbage by design: with the default limits every stage would stop the line (that is
# tested in tests/workers/test_stop_the_line.py), so here they are out of reach. Many of its events share the
# victim's key: under key order the first one dead-lettered would hold the rest back until an operator acts
# (tested in tests/workers/test_key_order.py); here each bad message's own fate is the point, so dead letters
# release their keys (retries still hold them).
pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True),
              pytest.mark.pipeline_env(STOP_THE_LINE_IN_A_ROW="100000", STOP_THE_LINE_SHARE="1.0",
                                       STAGE_ORDERING="purchases=key-retries-only,allocations=key-retries-only,"
                                                      "sessions=key-retries-only")]

# topic -> the stage that reads it and dead-letters (the cache stage also reads them, and never does)
DEAD_LETTERING = {
    "purchase-confirmed": ("purchases", "purchase-creation-workers"),
    "purchase-created": ("allocations", "trainer-allocation-workers"),
    "trainer-allocated": ("sessions", "session-scheduling-workers"),
    "purchase-cancelled": ("allocations", "trainer-allocation-workers"),
}
ERROR_CLASS = {"invalid": "workers.envelope.InvalidEvent", "permanent": "workers.errors.PermanentError"}
ATTEMPTS = {"invalid": "0", "permanent": "1"}
WINDOW = 7
BUDGET_SECONDS = 90




def _produce(messages: list[tuple[str, bytes | None, bytes | None, list]], **producer_config) -> None:
    """(base topic, key, value, headers), all to partition 0, in order."""
    producer = make_producer(**producer_config)
    for base, key, value, headers in messages:
        producer.produce(topic(base), key=key, value=value, headers=headers, partition=0)
    assert producer.flush(30) == 0


def _produce_cases(cases: list[Case]) -> None:
    """In order; the cases that need producer settings of their own (compression, a larger limit) get them."""
    for config in {json.dumps(c.producer, sort_keys=True) for c in cases}:
        _produce([(c.topic, c.key, c.value, c.kafka_headers()) for c in cases
                  if json.dumps(c.producer, sort_keys=True) == config], **json.loads(config))


def _identify(headers, key: bytes | None, cut_cases: set[str]) -> str | None:
    """The case of a dead letter: its case header, or for a copy cut without its headers, its key."""
    found = _case_of(headers)
    if found is None and key is not None and key.decode(errors="replace") in cut_cases:
        return key.decode()
    return found


def _good(event) -> tuple[str, bytes, bytes, list]:
    return (TOPIC_BY_EVENT_TYPE[event.event_type], str(event.key).encode(), event.to_json(),
            [("corpus.good", event.event_type.encode())])


def _case_of(headers) -> str | None:
    for name, value in headers or []:
        if name == CASE_HEADER:
            return value.decode() if isinstance(value, bytes) else value
    return None


def _cache_drops(pipeline) -> int:
    path = pipeline.log_dir / "cache.log"
    return sum("dropped an invalid message" in line for line in path.read_text(errors="replace").splitlines())


def test_every_bad_message_is_dead_lettered_once_with_its_reason_and_nothing_else_changes(pipeline):
    started = time.monotonic()
    # --- the world the corpus points at ------------------------------------------------------------------
    course = CourseFactory(time_zone="Europe/Berlin")
    TrainerFactory(capacity=10, courses=[course])  # the allocation API's choice for every real enrollment
    side_trainer = TrainerFactory(capacity=2, courses=[course])  # full with the two seeded allocations
    s_web, s_pc, s_pcr, s_ta, s_ss, s_victim, s_other = StudentFactory.create_batch(7)
    p_pc = PaymentFactory(student=s_pc, course=course)
    p_victim = PaymentFactory(student=s_victim, course=course)
    purchase_pcr = PurchaseFactory(payment=PaymentFactory(student=s_pcr, course=course))
    a_ta = AllocationFactory(student=s_ta, course=course, trainer=side_trainer, slot_time=slot_time(0))
    a_victim = AllocationFactory(student=s_victim, course=course, trainer=side_trainer, slot_time=slot_time(1))
    seed = Seed(student_id=s_victim.pk, course_id=course.pk, payment_id=p_victim.pk, allocation_id=a_victim.pk,
                trainer_id=side_trainer.pk, other_student_id=s_other.pk)
    cases = {base: corpus(base, seed) for base in TOPIC_TYPES}

    # --- good events, one per topic, and a duplicate of the first with other content ---------------------------
    good_pc = build_event(PURCHASE_CONFIRMED, {
        "payment_id": p_pc.pk, "provider_payment_id": p_pc.provider_payment_id, "student_id": s_pc.pk,
        "course_id": course.pk, "amount": "49.00", "currency": "EUR"}, correlation_id=p_pc.correlation_id)
    good_pcr = build_event(PURCHASE_CREATED, {
        "purchase_id": purchase_pcr.pk, "payment_id": purchase_pcr.payment_id, "student_id": s_pcr.pk,
        "course_id": course.pk}, correlation_id=purchase_pcr.correlation_id)
    good_ta = build_event(TRAINER_ALLOCATED, {"allocation_id": a_ta.pk, "trainer_id": side_trainer.pk,
                                              "student_id": s_ta.pk, "course_id": course.pk},
                          correlation_id=a_ta.correlation_id)
    good_ss = build_event(SESSIONS_SCHEDULED, {
        "allocation_id": a_ta.pk, "student_id": s_ss.pk, "course_id": course.pk, "sessions_created": WINDOW,
        "future_sessions": WINDOW}, correlation_id=uuid.uuid4())
    # Same event id as good_pc, but for the victim's real payment: had it run, the victim would have a purchase.
    lying_duplicate = duplicate(good_pc.to_json(), {
        "payment_id": p_victim.pk, "provider_payment_id": p_victim.provider_payment_id, "student_id": s_victim.pk,
        "course_id": course.pk, "amount": "49.00", "currency": "EUR"})
    ss_keys = [f"student:home:{s_ss.pk}", f"student:learning:{s_ss.pk}"]
    cache.set_many(dict.fromkeys(ss_keys, "stale page"), 600)

    # --- produce: half the corpus, the good events, a real payment, the other half ---------------------------------
    halves = {base: (found[: len(found) // 2], found[len(found) // 2:]) for base, found in cases.items()}
    _produce_cases([c for base in TOPIC_TYPES for c in halves[base][0]])
    _produce([_good(good_pc), _good(good_pcr), _good(good_ta), _good(good_ss)])
    body = {"provider_payment_id": f"pay_{uuid.uuid4().hex}", "student_id": s_web.pk, "course_id": course.pk,
            "amount": "49.00", "currency": "EUR", "confirmed_at": datetime.datetime.now(datetime.UTC).isoformat()}
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **sign(raw, settings.PAYMENT_WEBHOOK_SECRET)}
    accepted = requests.post(pipeline.web_url + "/api/payments/confirmations", data=raw, headers=headers, timeout=10)
    assert accepted.status_code == 202, accepted.text
    web_payment = Payment.objects.get(pk=accepted.json()["payment_id"])
    _produce([("purchase-confirmed", str(s_victim.pk).encode(), lying_duplicate, [("corpus.duplicate", b"1")])])
    _produce_cases([c for base in TOPIC_TYPES for c in halves[base][1]])

    # --- wait until everything is through ------------------------------------------------------------------------
    expected_dead = [c for base in DEAD_LETTERING for c in cases[base]]
    cache_topics = stage_groups()["cache"][1]
    expected_drops = sum(c.reason == "invalid" for base in cache_topics for c in cases[base])
    web_sessions = TrainingSession.objects.filter(allocation__student=s_web)

    def progress():
        return {
            "dead letters stored": DeadLetter.objects.count(),
            "web payment sessions": web_sessions.count(),
            "sessions": TrainingSession.objects.count(),
            "cache drops": _cache_drops(pipeline),
            "stale cache keys": len(cache.get_many(ss_keys)),
            "unsent outbox": OutboxEvent.objects.unsent().count(),
            "lag": {name: group_lag(g, t) for name, (g, t) in stage_groups().items()},
        }

    def done():
        p = progress()
        return (p["dead letters stored"] >= len(expected_dead) and p["web payment sessions"] == WINDOW
                and p["sessions"] >= 4 * WINDOW and p["cache drops"] >= expected_drops and not p["stale cache keys"]
                and not p["unsent outbox"] and not any(p["lag"].values()))

    remaining = BUDGET_SECONDS - (time.monotonic() - started)
    try:
        wait_until(done, timeout=max(remaining, 10), interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; progress: {progress()}; logs: "
                             + {n: pipeline.log(n)[-1500:] for n in pipeline.processes}.__repr__()) from None
    time.sleep(1)  # anything extra (a second dead letter, a late write) would show up now

    # --- every process is still running ----------------------------------------------------------------------
    for name in pipeline.commands:
        assert pipeline.running(name), f"{name} died: {pipeline.log(name)}"

    # --- each dead-lettering topic's bad message: exactly one dead letter, from its group, with its reason ------
    messages = support.dead_letters(len(expected_dead), timeout=30)
    cut_cases = {c.case_id for c in expected_dead if c.cut}
    by_case = defaultdict(list)
    for message in messages:
        by_case[_identify(message.headers(), message.key(), cut_cases)].append(message)
    assert None not in by_case, [context_from_headers(m.headers())[0] for m in by_case[None]]  # no good event
    assert sorted(by_case) == sorted(c.case_id for c in expected_dead)
    for case in expected_dead:
        [message] = by_case[case.case_id]
        context, original = context_from_headers(message.headers())
        stage, group = DEAD_LETTERING[case.topic]
        assert (context["reason"], context["stage"], context["consumer_group"]) == (case.reason, stage, group), case
        assert context["error_class"] == ERROR_CLASS[case.reason], (case, context["error_message"])
        assert case.message in context["error_message"], (case, context["error_message"])
        assert context["original_topic"] == topic(case.topic) and context["original_partition"] == "0"
        assert context["attempts"] == ATTEMPTS[case.reason]
        assert message.key() == case.key, case
        if case.cut:  # what had to go is described: its size and SHA-256
            assert context[f"cut.{case.cut}"].startswith(
                str(len(case.value) if case.cut == "value" else len(case.kafka_headers())) + " "), case
        if case.cut == "value":
            assert case.value.startswith(message.value()) and len(message.value()) > 500_000, case
        else:
            assert message.value() == case.value, case  # byte for byte
        if case.cut != "headers":
            assert [(k, v or b"") for k, v in original] == [
                (k, v) for k, v in case.kafka_headers() if not k.startswith("dlq.")]
        assert "\x00" not in context["error_message"] and "\x00" not in context["traceback"]
        if case.name == "spoofed dlq headers":  # the original's own dlq.* headers never pass for ours
            assert context["event_id"] == "" and context["partition_key"] == ""

    # ... and the dead_letters process stored each as exactly one row
    rows = defaultdict(list)
    for row in DeadLetter.objects.all():
        rows[_identify(decode_headers(row.headers), bytes(row.key) if row.key else None, cut_cases)].append(row)
    assert sorted(rows) == sorted(c.case_id for c in expected_dead)
    for case in expected_dead:
        [row] = rows[case.case_id]
        stage, group = DEAD_LETTERING[case.topic]
        assert (row.stage, row.consumer_group, row.original_topic) == (stage, group, topic(case.topic))
        assert case.message in row.error_message and row.error_class == ERROR_CLASS[case.reason]
        if case.cut == "value":
            assert case.value.startswith(bytes(row.payload)) and set(row.cut) == {"value"}, case
        else:
            assert bytes(row.payload) == (case.value or b"") and set(row.cut) == ({case.cut} - {""}), case
        assert (bytes(row.key) if row.key is not None else None) == case.key
        if case.name == "spoofed dlq headers":
            assert row.event_id is None and row.partition_key is None
    # the event-level context of the permanent and wrong-topic ones
    for case in expected_dead:
        if case.reason == "permanent" or "does not belong" in case.message:
            [row] = rows[case.case_id]
            assert str(row.event_id) == json.loads(case.value)["event_id"], case

    # --- the cache stage read three of the topics: it dropped each invalid message there and dead-lettered none ---
    assert _cache_drops(pipeline) == expected_drops
    assert not any(m for m in messages if dict(context_from_headers(m.headers())[0])["stage"] == "cache")

    # --- no partial writes ---------------------------------------------------------------------------------
    good_correlations = {web_payment.correlation_id, good_pc.correlation_id, good_pcr.correlation_id,
                         good_ta.correlation_id}
    assert Payment.objects.count() == 4  # three seeded, one from the webhook
    purchasers = StudentCoursePurchase.objects.filter(is_active=True).values_list("student_id", flat=True)
    assert sorted(purchasers) == sorted([s_web.pk, s_pc.pk, s_pcr.pk])
    allocations = {a.student_id: a for a in TrainerAllocation.objects.all()}
    assert sorted(allocations) == sorted([s_web.pk, s_pc.pk, s_pcr.pk, s_ta.pk, s_victim.pk])
    sessions = defaultdict(int)
    for allocation_id in TrainingSession.objects.values_list("allocation_id", flat=True):
        sessions[allocation_id] += 1
    assert sessions == {allocations[s].pk: WINDOW for s in (s_web.pk, s_pc.pk, s_pcr.pk, s_ta.pk)}
    assert a_victim.pk not in sessions  # a SESSIONS_SCHEDULED on trainer-allocated did not schedule it
    outbox = list(OutboxEvent.objects.values_list("correlation_id", "event_type"))
    assert {c for c, _ in outbox} == good_correlations
    # web: 4 events; good_pc: purchase, allocation, sessions; good_pcr: allocation, sessions; good_ta: sessions
    assert len(outbox) == 4 + 3 + 2 + 1, outbox
    processed = list(ProcessedEvent.objects.values_list("consumer", "event_id", "correlation_id"))
    assert {c for _, _, c in processed} == good_correlations
    assert len(processed) == 2 + 3 + 4, processed  # purchases 2, allocations 3, sessions 4 (cache records none)
    corpus_ids = set()
    for case in [c for found in cases.values() for c in found]:
        try:
            corpus_ids.add(uuid.UUID(json.loads(case.value)["event_id"]))
        except Exception:
            pass
    assert not corpus_ids & {e for _, e, _ in processed}
    assert not PendingRetry.objects.exists()  # nothing bad was ever taken for a transient failure

    # --- the duplicate event id with other content: skipped by the group that processed the id, no second effect ----
    assert [e for c, e, _ in processed if c == "purchase-creation-workers"].count(good_pc.event_id) == 1
    assert not StudentCoursePurchase.objects.filter(student=s_victim).exists()
    assert not DeadLetter.objects.filter(event_id=good_pc.event_id).exists()

    # --- the good events between the bad ones went through ---------------------------------------------------
    assert web_sessions.count() == WINDOW
    assert not cache.get_many(ss_keys)  # the good SESSIONS_SCHEDULED invalidated its student's pages
    assert time.monotonic() - started < BUDGET_SECONDS + 30
