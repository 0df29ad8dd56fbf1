"""Two allocation batches over the same courses, in opposite order, at the same time: neither deadlocks, because a
batch locks all of its trainers in one statement, in id order. Each batch pauses right after it took trainer
locks (a hook on the lock query) until the other one took some too: with locks taken course by course, that is
the interleaving that deadlocked in `make scale-out`."""
import threading

import pytest
from django.db import connection

from allocations import batch
from allocations.batch import allocate_many
from allocations.models import TrainerAllocation
from tests.allocations.support import bought
from tests.factories import CourseFactory, StudentFactory, TrainerFactory

pytestmark = pytest.mark.django_db(transaction=True)


def test_batches_over_the_same_courses_in_opposite_order_do_not_deadlock(monkeypatch):
    first, second = CourseFactory(), CourseFactory()
    TrainerFactory(capacity=10, courses=[first])
    TrainerFactory(capacity=10, courses=[second])
    one_way = [bought(StudentFactory().pk, c.pk) for c in (first, first, second, second)]
    other_way = [bought(StudentFactory().pk, c.pk) for c in (second, second, first, first)]
    both_locked = threading.Barrier(2, timeout=3)

    def fetch_then_wait(sql, params):
        rows = real_fetch(sql, params)
        if sql is batch.LOCK_TRAINERS_SQL:
            try:
                both_locked.wait()  # the other batch took its first locks too
            except threading.BrokenBarrierError:  # it waits for ours: go on
                pass
        return rows

    real_fetch = batch.fetch
    monkeypatch.setattr(batch, "fetch", fetch_then_wait)
    outcomes: dict[str, object] = {}

    def run(name, requests):
        try:
            outcomes[name] = allocate_many(requests)
        except Exception as exc:  # a deadlock: PostgreSQL aborts one of the two
            outcomes[name] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=("one way", one_way)),
               threading.Thread(target=run, args=("other way", other_way))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for name, got in outcomes.items():
        assert isinstance(got, list), f"{name}: {got!r}"
        assert all(created for _, created in got)
    assert len(outcomes) == 2 and TrainerAllocation.objects.count() == 8


def test_the_api_runs_a_batch_again_that_postgresql_aborted(monkeypatch, caplog):
    """The fault is injected (one try raises the error PostgreSQL gives the victim of a deadlock): a real deadlock
    needs the leftover path of two batches to meet, which the locks above make rare."""
    from django.db import OperationalError
    from psycopg.errors import DeadlockDetected

    from allocations import api

    course = CourseFactory()
    TrainerFactory(capacity=5, courses=[course])
    requests = [bought(StudentFactory().pk, course.pk) for _ in range(3)]
    tries = []

    def deadlocked_once(reqs):
        tries.append(len(reqs))
        if len(tries) == 1:
            allocate_many(reqs)  # its work is rolled back with the aborted transaction in real life:
            TrainerAllocation.objects.all().delete()  # undo it here too
            error = OperationalError("deadlock detected")
            error.__cause__ = DeadlockDetected("deadlock detected")
            raise error
        return allocate_many(reqs)

    monkeypatch.setattr(api, "allocate_many", deadlocked_once)
    answers = api.process_many([r._asdict() for r in requests])
    assert [status for status, _ in answers] == [201, 201, 201] and tries == [3, 3]
    assert "allocation batch aborted by the database; trying again" in caplog.text
    assert TrainerAllocation.objects.count() == 3

    monkeypatch.setattr(api, "allocate_many", lambda reqs: (_ for _ in ()).throw(OperationalError("disk full")))
    with pytest.raises(OperationalError):  # any other database error is not retried: the consumer sees a 500
        api.process_many([r._asdict() for r in requests])
