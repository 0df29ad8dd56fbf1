"""The stage registry: settings.PIPELINE_STAGES is the one list of stages, checked at boot; a stage added
there runs through the real consume loop, shows in worker_health and in the trace page, with no framework
change."""
from __future__ import annotations

import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import override_settings

from enrollment.events import SESSIONS_SCHEDULED
from enrollment.models import Student
from tests.workers import support
from workers import registry
from workers.checks import stage_registry_is_valid
from workers.command import StageCommand
from workers.consumer import StageConsumer
from workers.envelope import build_event
from workers.health import targets
from workers.models import ProcessedEvent
from workers.stage import RetryPolicy, Stage
from workers.trace import Step, TraceSection, build_trace

REGISTERED = [
    "purchases.stage.STAGE", "allocations.stage.STAGE", "sessions_sched.stage.STAGE",
    "enrollment.cache_invalidation.STAGE",
]


def welcome(event) -> None:
    """A throwaway stage's work: one row per scheduled enrollment (a duplicate would break a unique email)."""
    Student.objects.create(name="welcomed", email=f"welcome-{event.event_id}@example.test")


def welcome_trace(correlation_id: uuid.UUID) -> TraceSection:
    return TraceSection(steps=[Step(at=ProcessedEvent.objects.filter(correlation_id=correlation_id).first()
                                    .processed_at, source="welcome", title="Welcome mail sent")])


WELCOME = Stage(name="welcome", group_id="welcome-mailers", topics=("sessions-scheduled",), handler=welcome,
                retry=RetryPolicy(max_attempts=2), trace=welcome_trace)


class WelcomeCommand(StageCommand):  # what manage.py consume_welcome would be: five lines with its docstring
    stage_name = "welcome"


def test_the_registry_lists_the_stages_of_settings_in_flow_order():
    assert [s.name for s in registry.stages()] == ["purchases", "allocations", "sessions", "cache"]
    assert registry.stage("allocations").group_id == "trainer-allocation-workers"
    assert sorted(targets()) == ["allocations", "cache", "dead_letters", "purchases", "sessions"]
    with pytest.raises(ImproperlyConfigured, match="no stage named 'nope'"):
        registry.stage("nope")


@pytest.mark.django_db(transaction=True)
def test_a_stage_added_in_settings_runs_through_the_real_loop(topic_prefix, settings):
    settings.PIPELINE_STAGES = [*REGISTERED, "tests.workers.test_registry.WELCOME"]
    assert stage_registry_is_valid() == []
    assert "welcome" in targets() and "stage welcome, 2 attempts" in WelcomeCommand().help
    events = [build_event(SESSIONS_SCHEDULED, {"allocation_id": n, "student_id": n, "course_id": 1,
                                               "sessions_created": 7, "future_sessions": 7},
                          correlation_id=uuid.uuid4()) for n in (1, 2, 3)]
    support.produce("sessions-scheduled", [(str(e.key).encode(), e.to_json()) for e in events])
    consumer = StageConsumer(WelcomeCommand().stage, batch_wait=0.05)
    deadline = time.monotonic() + 30
    welcomed = Student.objects.filter(name="welcomed")
    consumer.run(should_stop=lambda: welcomed.count() == 3 or time.monotonic() > deadline)
    assert sorted(welcomed.values_list("email", flat=True)) == sorted(
        f"welcome-{e.event_id}@example.test" for e in events)
    assert ProcessedEvent.objects.filter(consumer="welcome-mailers").count() == 3
    assert support.committed_offset("welcome-mailers", "sessions-scheduled") == 3
    titles = [step.title for step in build_trace(events[0].correlation_id).steps]
    assert titles == ["Handled SESSIONS_SCHEDULED", "Welcome mail sent"]


@pytest.mark.parametrize(("stage", "problem"), [
    (Stage(name="cache", group_id="g1", topics=("purchase-created",), handler=welcome), "share the name 'cache'"),
    (Stage(name="x", group_id="cache-invalidation-workers", topics=("purchase-created",), handler=welcome),
     "share the group_id"),
    (Stage(name="x", group_id="g", topics=("no-such-topic",), handler=welcome), "'no-such-topic', a topic no event"),
    (Stage(name="x", group_id="g", topics=(), handler=welcome), "consumes no topic"),
    (Stage(name="x", group_id="g", topics=("purchase-created",), handler="welcome"), "handler is not callable"),
    (Stage(name="x", group_id="g", topics=("purchase-created",), handler=welcome, batch_handler=welcome,
           batchable=False), "not batchable but has a batch handler"),
    (Stage(name="x", group_id="g", topics=("purchase-created",), handler=welcome,
           retry=RetryPolicy(max_attempts=0)), "max_attempts must be at least 1"),
])
def test_the_system_check_refuses_a_wrong_registry(stage, problem):
    with override_settings(PIPELINE_STAGES=[*REGISTERED, "tests.workers.test_registry.BAD"]):
        globals()["BAD"] = stage
        try:
            messages = [m.msg for m in stage_registry_is_valid()]
        finally:
            del globals()["BAD"]
    assert any(problem in m for m in messages), messages


def test_the_system_check_names_an_entry_that_is_not_a_stage():
    with override_settings(PIPELINE_STAGES=[*REGISTERED, "workers.stage.Stage", "no.such.module.STAGE"]):
        messages = [m.msg for m in stage_registry_is_valid()]
    assert len(messages) == 1 and "'workers.stage.Stage' is a type, not a Stage" in messages[0]
    with override_settings(PIPELINE_STAGES=["no.such.module.STAGE"]):
        assert "cannot be imported" in stage_registry_is_valid()[0].msg


def test_check_command_fails_on_a_wrong_registry():
    from django.core.management.base import SystemCheckError

    with override_settings(PIPELINE_STAGES=["no.such.module.STAGE"]), pytest.raises(SystemCheckError,
                                                                                    match="workers.E001"):
        call_command("check")



@pytest.mark.parametrize(("command", "args", "message"), [
    ("consume_purchases", ["--batch-size", "0"], "--batch-size: 0 is out of range: from 1 to 10000"),
    ("consume_allocations", ["--batch-size", "50000"], "--batch-size: 50000 is out of range"),
    ("consume_sessions", ["--batch-size", "lots"], "--batch-size: 'lots' is not a number"),
    ("consume_cache", ["--batch-wait", "-1"], "--batch-wait: -1.0 is out of range: from 0 to 60"),
    ("consume_dead_letters", ["--batch-size", "0"], "--batch-size: 0 is out of range"),
])
def test_a_consumer_command_refuses_a_batch_size_out_of_range_with_a_clear_error(command, args, message):
    with pytest.raises(CommandError, match=message):
        call_command(command, *args)
