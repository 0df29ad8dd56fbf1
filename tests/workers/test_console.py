"""The pipeline console: consumers write samples, the page shows each stage's live state from the broker and
from PostgreSQL, and pausing or resuming from it needs its own permission and is audited."""
import datetime
import uuid

import pytest
from django.utils import timezone

from tests.workers import support
from workers import console, line, samples
from workers.models import DeadLetter, StageControlAction, StagePause, StageSample

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/admin/workers/stagesample/"


def test_a_consumer_samples_what_it_handled_its_lag_and_its_last_commit(make_consumer_for, monkeypatch):
    monkeypatch.setattr(samples, "SAMPLE_SECONDS", 0.5)
    events = [support.purchase_created(i) for i in range(400, 410)]
    support.produce_events(events)
    consumer = make_consumer_for()
    support.poll_until(consumer, lambda: StageSample.objects.filter(stage="test", processed__gt=0).exists())
    support.poll_until(consumer, lambda: StageSample.objects.filter(stage="test").count() >= 3)
    rows = list(StageSample.objects.filter(stage="test").order_by("at"))
    assert sum(r.processed for r in rows) == 10 and rows[-1].lag == 0 and rows[-1].partitions == 2
    assert rows[-1].last_commit_at is not None and rows[-1].breaker == "closed"
    assert len({r.member for r in rows}) == 1


def _sample(stage: str, member: str, seconds_ago: float, processed: int, lag: int, breaker: str = "closed"):
    at = timezone.now() - datetime.timedelta(seconds=seconds_ago)
    StageSample.objects.create(stage=stage, member=member, at=at, seconds=5, processed=processed, lag=lag,
                               breaker=breaker, last_commit_at=at)


def test_the_state_of_each_stage_from_the_broker_and_the_samples(topic_prefix):
    support.produce(topic_base="purchase-confirmed", values=[(b"1", b"{}")] * 7, partition=1)  # nobody reads it
    for ago in (50, 45, 10, 5):
        _sample("purchases", "a:1", ago, processed=300, lag=100)
    _sample("purchases", "b:2", 5, processed=300, lag=20, breaker="open")
    _sample("allocations", "c:3", 200, processed=50, lag=0, breaker="open")  # stale: says nothing now
    line.pause("sessions", reason="incident 12", actor="cli:ops")
    DeadLetter.objects.create(stage="purchases", consumer_group="g", original_topic="t", original_partition=0,
                              original_offset=0, payload=b"x", error_class="E", error_message="m",
                              first_failed_at=timezone.now(), last_failed_at=timezone.now(),
                              dead_letter_id=uuid.uuid4())
    views = {v.name: v for v in console.pipeline()}
    assert list(views) == ["purchases", "allocations", "sessions", "cache"]  # the registry's order
    purchases = views["purchases"]
    assert purchases.group_id.startswith(topic_prefix)  # the group of this test's namespace
    assert purchases.members == [] and purchases.broker_error == ""
    lags = {p.name: p.lag for p in purchases.partitions}
    assert lags[f"{topic_prefix}purchase-confirmed[1]"] == 7 and purchases.lag == 7  # never committed: all of it
    assert purchases.events_per_second == 1500 / 60  # the samples of the last minute
    assert purchases.breaker == "open" and views["allocations"].breaker == "closed"
    assert purchases.dead_letters == {"new": 1} and purchases.last_commit_at is not None
    assert views["sessions"].pause.reason == "incident 12" and purchases.pause is None
    history = purchases.history
    assert len(history) == 60 and sum(p.events_per_second for p in history) * console.BUCKET_SECONDS == 1500
    assert history[-4].lag == 100  # 45-60 s ago: member a's samples
    assert history[-1].lag == 7  # the chart ends with the broker's lag of now


def test_a_viewer_sees_the_console_without_pause_buttons(client, django_user_model, topic_prefix):
    client.force_login(support.staff(django_user_model, "viewer", "view_stagesample"))
    page = client.get(URL)
    assert page.status_code == 200
    text = page.content.decode()
    for name in ("purchases", "allocations", "sessions", "cache"):
        assert f'id="stage-{name}"' in text
    assert "Pause purchases" not in text
    assert client.get(URL + "panel/").status_code == 200
    assert client.post(URL + "purchases/pause/", {"reason": "x"}).status_code == 403
    assert not StagePause.objects.exists()


def test_the_console_needs_its_view_permission(client, django_user_model):
    client.force_login(support.staff(django_user_model, "nobody"))
    assert client.get(URL).status_code == 403 and client.get(URL + "panel/").status_code == 403


def test_an_operator_pauses_and_resumes_a_stage_with_a_reason_audited(client, django_user_model, topic_prefix):
    client.force_login(support.staff(django_user_model, "ops", "view_stagesample", "pause_stage"))
    assert "Pause purchases" in client.get(URL).content.decode()
    client.post(URL + "purchases/pause/", {"reason": "  "})
    assert not StagePause.objects.exists()  # a pause needs a reason
    assert client.post(URL + "nope/pause/", {"reason": "x"}).status_code == 404
    assert client.get(URL + "purchases/pause/").status_code == 405
    answer = client.post(URL + "purchases/pause/", {"reason": "broker maintenance"})
    assert answer.status_code == 302
    pause = StagePause.objects.get(stage="purchases")
    assert pause.paused_by == "admin:ops" and pause.reason == "broker maintenance" and not pause.automatic
    panel = client.get(URL + "panel/").content.decode()
    assert "paused by admin:ops: broker maintenance" in panel and "Resume purchases" in panel
    client.post(URL + "purchases/resume/", {"reason": "done"})
    assert not StagePause.objects.exists()
    audit = [(a.action, a.actor, a.reason) for a in StageControlAction.objects.order_by("id")]
    assert audit == [("pause", "admin:ops", "broker maintenance"), ("resume", "admin:ops", "done")]
