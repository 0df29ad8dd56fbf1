"""`manage.py replay_dead_letters`: the admin's replay from the command line, with filters and a dry run."""
import datetime
import getpass
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from tests.factories import DeadLetterFactory
from tests.workers import support
from workers.dead_letter_store import REPLAY_HEADER, REPLAY_STALE_SECONDS
from workers.models import DeadLetter, DeadLetterAction

pytestmark = pytest.mark.django_db
UTC = datetime.UTC


def _replay(*args: str) -> str:
    out = StringIO()
    call_command("replay_dead_letters", *args, stdout=out)
    return out.getvalue()


def _replayed() -> set[int]:
    return set(DeadLetter.objects.filter(status=DeadLetter.Status.REPLAYED).values_list("pk", flat=True))


@pytest.fixture
def rows(topic_prefix):
    """Four dead letters that differ in stage, error class, failure time and status."""
    return {
        "alloc_old": DeadLetterFactory(last_failed_at=datetime.datetime(2030, 1, 1, 12, tzinfo=UTC)),
        "alloc_new": DeadLetterFactory(last_failed_at=datetime.datetime(2030, 1, 5, 12, tzinfo=UTC)),
        "sessions": DeadLetterFactory(stage="sessions", error_class="sessions.errors.CalendarFull",
                                      last_failed_at=datetime.datetime(2030, 1, 6, tzinfo=UTC)),
        "discarded": DeadLetterFactory(status=DeadLetter.Status.DISCARDED,
                                       last_failed_at=datetime.datetime(2030, 1, 7, tzinfo=UTC)),
    }


def test_dry_run_prints_the_selection_and_changes_nothing(rows):
    out = _replay("--stage", "allocations", "--dry-run")
    assert f"would replay #{rows['alloc_old'].pk} allocations" in out
    assert f"#{rows['alloc_new'].pk}" in out and f"#{rows['sessions'].pk}" not in out
    assert f"#{rows['discarded'].pk}" not in out  # default status: new
    assert "2 dead letter(s) would be replayed" in out
    assert not _replayed() and not DeadLetterAction.objects.exists()
    assert support.read_topic("purchase-created", 0, timeout=1) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--stage", "sessions"], {"sessions"}),
        (["--error", "calendarfull"], {"sessions"}),
        (["--error", "NoTrainer", "--since", "2030-01-03"], {"alloc_new"}),
        (["--since", "2030-01-05T12:00:00+00:00"], {"alloc_new", "sessions"}),
        (["--since", "2030-01-05T13:00"], {"sessions"}),  # naive: the current time zone (UTC)
        (["--stage", "allocations", "--status", "new"], {"alloc_old", "alloc_new"}),
    ],
)
def test_filters_combine(rows, args, expected):
    _replay(*args)
    assert _replayed() == {rows[name].pk for name in expected}


def test_ids_replay_publishes_and_audits_as_the_cli_user(rows):
    wanted = [rows["alloc_old"], rows["sessions"]]
    out = _replay("--id", str(wanted[0].pk), "--id", str(wanted[1].pk), "--id", str(rows["discarded"].pk))

    assert "replayed 2 of 2 dead letter(s)" in out
    assert _replayed() == {r.pk for r in wanted}
    actor = f"cli:{getpass.getuser()}"
    assert set(DeadLetter.objects.filter(pk__in=_replayed()).values_list("status_changed_by", flat=True)) == {actor}
    audit = DeadLetterAction.objects.get()
    assert (audit.actor, audit.action, audit.count) == (actor, "replay", 2)
    assert audit.dead_letter_ids == sorted(r.pk for r in wanted)
    messages = support.read_topic("purchase-created", 2)
    assert sorted(m.value() for m in messages) == sorted(bytes(r.payload) for r in wanted)
    assert {dict(m.headers())[REPLAY_HEADER] for m in messages} == {str(r.dead_letter_id).encode() for r in wanted}


def test_replayed_rows_are_replayed_again_only_when_asked(rows):
    _replay("--id", str(rows["alloc_old"].pk))
    assert "nothing to replay" in _replay("--id", str(rows["alloc_old"].pk))
    with pytest.raises(CommandError, match="1 replayed a moment ago"):  # its replay may still be in flight
        _replay("--id", str(rows["alloc_old"].pk), "--status", "replayed")
    DeadLetter.objects.filter(pk=rows["alloc_old"].pk).update(  # a replay that never resolved: lost, say
        status_changed_at=timezone.now() - datetime.timedelta(seconds=REPLAY_STALE_SECONDS + 1))
    assert "replayed 1 of 1" in _replay("--id", str(rows["alloc_old"].pk), "--status", "replayed")
    assert list(DeadLetterAction.objects.values_list("count", flat=True).order_by("id")) == [1, 0, 1]


def test_a_bad_since_is_refused(rows):
    with pytest.raises(CommandError, match="not an ISO date"):
        _replay("--since", "last tuesday")
