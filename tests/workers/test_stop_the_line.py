"""Stop the line: a stage that dead-letters past its limit pauses itself, for every consumer of its group,
until an operator resumes it; nothing is lost meanwhile (workers.line)."""
import time

import pytest
from django.core.management import CommandError, call_command

from tests.workers import support
from workers import line
from workers.consumer import PAUSE_CHECK_SECONDS
from workers.health import Pause, Snapshot, Target, evaluate
from workers.metrics import STAGE_PAUSED
from workers.models import PendingRetry, StageControlAction, StagePause
from workers.stage import DeadLetterLimit

pytestmark = pytest.mark.django_db(transaction=True)
LIMIT = DeadLetterLimit(max_share=0.5, window=20, max_in_a_row=5)


def _paused() -> StagePause | None:
    return StagePause.objects.filter(stage="test").first()


def test_a_run_of_dead_letters_pauses_the_stage_and_parks_the_rest_until_the_resume(make_consumer_for, group_id):
    stage = support.make_stage(group_id, dead_letter_limit=LIMIT)
    both = support.Members(make_consumer_for(stage), make_consumer_for(stage))  # the second obeys the same pause
    support.poll_until(both, lambda: all(c.consumer.assignment() for c in both.consumers))
    bad = [support.purchase_created(i) for i in range(100, 112)]
    for event in bad:
        support.SCRIPT[event.payload.student_id] = ["permanent", "permanent"]  # the batch try, then alone
    support.produce_events(bad)
    support.poll_until(both, lambda: _paused() is not None)
    pause = _paused()
    assert pause.automatic and pause.paused_by == "stop-the-line"
    assert "5 dead letters in a row (limit 5)" in pause.reason
    assert len(support.dead_letters(4, timeout=5)) == 4  # the fifth was not written
    parked = PendingRetry.objects.filter(attempts=0, error_message__contains="stopped the line")
    assert parked.count() == 8
    assert support.committed_offset(group_id, "purchase-created") == 12  # parked: nothing lost, partition moves
    assert STAGE_PAUSED.labels("test")._value.get() == 1

    time.sleep(PAUSE_CHECK_SECONDS)  # every member has read the pause by now
    good = [support.purchase_created(300), support.purchase_created(301)]
    support.produce_events(good[:1], partition=0)
    support.produce_events(good[1:], partition=1)
    for _ in range(8):
        both.poll_once()
    assert support.effects(good) == 0 and parked.count() == 8  # paused: no consuming, no retries

    support.SCRIPT.clear()  # the fix is deployed
    assert line.resume("test", actor="ops", reason="handler fixed")
    support.poll_until(both, lambda: support.effects([*good, *bad[4:]]) == 10, timeout=30)
    # only the four dead-lettered heads stay, holding their keys (each its own student) until an operator acts
    assert set(PendingRetry.objects.values_list("event_id", "dead_lettered")) == {
        (e.event_id, True) for e in bad[:4]}
    assert [a.action for a in StageControlAction.objects.order_by("id")] == ["pause", "resume"]


def test_invalid_messages_past_the_limit_are_not_written_and_wait_for_the_resume(make_consumer_for, group_id):
    support.produce("purchase-created", [(b"x", b"garbage %d" % n) for n in range(6)])
    consumer = make_consumer_for(support.make_stage(group_id, dead_letter_limit=LIMIT))
    support.poll_until(consumer, lambda: _paused() is not None)
    assert support.dead_letters(0, timeout=1) == []
    assert support.committed_offset(group_id, "purchase-created") < 0  # rewound: read again after the resume
    line.resume("test", actor="ops", reason="they are garbage indeed", accept_dead_letters=6)
    support.poll_until(consumer, lambda: support.committed_offset(group_id, "purchase-created") == 6)
    assert len(support.dead_letters(6)) == 6 and _paused() is None


def test_a_share_of_the_window_stops_the_line_too():
    monitor = line.LineMonitor(DeadLetterLimit(max_share=0.5, window=10, max_in_a_row=100))
    for _ in range(5):
        monitor.succeeded()
        monitor.dead_lettered(1, "test")
    with pytest.raises(line.LineStopped, match="6 of the last 10 events dead-lettered"):
        monitor.dead_lettered(1, "test")


def test_worker_health_shows_stop_the_line_as_an_incident_and_an_operator_pause_as_paused():
    target, snapshot = Target("allocations", "g", ("t",)), Snapshot("STABLE", 1, {}, lag=50_000)
    stopped = evaluate(target, snapshot, max_lag=100, pause=Pause("stop-the-line: 100 in a row", "stop-the-line",
                                                                  automatic=True))
    assert not stopped.healthy and "resume_stage allocations" in stopped.line()
    held = evaluate(target, snapshot, max_lag=100, pause=Pause("incident 42", "cli:ops", automatic=False))
    assert held.healthy and "PAUSED by cli:ops: incident 42" in held.line()


def test_pause_and_resume_commands_need_a_known_stage_and_a_reason():
    with pytest.raises(CommandError, match="unknown stage 'nope'"):
        call_command("pause_stage", "nope", "--reason", "x")
    with pytest.raises(CommandError, match="--reason must say why"):
        call_command("pause_stage", "allocations", "--reason", " ")
    call_command("pause_stage", "allocations", "--reason", "API maintenance")
    assert StagePause.objects.get(stage="allocations").paused_by.startswith("cli:")
    call_command("resume_stage", "allocations")
    with pytest.raises(CommandError, match="allocations is not paused"):
        call_command("resume_stage", "allocations")
    assert StageControlAction.objects.filter(stage="allocations").count() == 2


def test_the_admin_lists_paused_stages_and_the_audit_trail_read_only(admin_client):
    line.pause("allocations", reason="API maintenance", actor="cli:ops")
    page = admin_client.get("/admin/workers/stagepause/")
    assert page.status_code == 200 and b"API maintenance" in page.content and b"cli:ops" in page.content
    line.resume("allocations", actor="cli:ops", reason="done")
    audit = admin_client.get("/admin/workers/stagecontrolaction/")
    assert audit.status_code == 200 and b"done" in audit.content
    assert admin_client.get("/admin/workers/stagepause/add/").status_code == 403
