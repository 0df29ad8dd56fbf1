"""Web workers are warmed before they take traffic (enrollment/warmup.py, gunicorn's post_worker_init)."""
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from enrollment.warmup import warm_threads, warm_up
from workers import outbox
from workers.kafka import topic

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 4


@pytest.fixture(autouse=True)
def _marker_stopped_after_the_test(monkeypatch):
    """warm_up() starts the worker's "sent" marker, a thread with its own database connection: stop it when the
    test ends, or it outlives the test and its connection keeps the test database from being dropped."""
    stop, started = threading.Event(), []
    start = outbox.mark_sent_in_background

    def start_stoppable(publisher, interval=0.25, _stop=None):
        started.append(start(publisher, interval, stop))
        return started[-1]

    monkeypatch.setattr(outbox, "mark_sent_in_background", start_stoppable)
    yield
    stop.set()
    for thread in started:
        thread.join(5)


def _in_every_thread(pool: ThreadPoolExecutor, work) -> list:
    """Run `work` once in each of the pool's threads (the barrier keeps any thread from taking two)."""
    barrier = threading.Barrier(THREADS)

    def task():
        result = work()
        barrier.wait(5)
        return result

    return [f.result(10) for f in [pool.submit(task) for _ in range(THREADS)]]


def _is_connected() -> bool:
    return connection.connection is not None


def test_every_thread_of_the_pool_has_its_database_connection_before_the_first_request():
    with ThreadPoolExecutor(THREADS) as pool:
        assert _in_every_thread(pool, _is_connected) == [False] * THREADS  # a fresh pool opened nothing yet
    with ThreadPoolExecutor(THREADS) as pool:
        warm_threads(pool, THREADS)
        try:
            assert _in_every_thread(pool, _is_connected) == [True] * THREADS
        finally:
            _in_every_thread(pool, lambda: connection.close())


def test_warm_up_freezes_the_startup_objects_out_of_the_collectors_sight(topic_prefix):
    gc.unfreeze()
    warm_up()
    try:
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_web_workers_producer_gathers_events_for_web_kafka_linger_ms(settings, topic_prefix, monkeypatch):
    """A webhook publishes one event per request: the worker's producer waits WEB_KAFKA_LINGER_MS for more
    before it sends (the consumers' producers send their batches within 5 ms)."""
    settings.WEB_KAFKA_LINGER_MS = 400
    monkeypatch.setattr(outbox, "_publisher", None)  # this test's worker makes its own
    gc.unfreeze()
    warm_up()
    gc.unfreeze()
    producer, delivered = outbox.publisher().producer, threading.Event()
    started = time.monotonic()
    producer.produce(topic("purchase-confirmed"), value=b"{}", on_delivery=lambda err, msg: delivered.set())
    while not delivered.is_set() and time.monotonic() - started < 10:
        producer.poll(0.02)
    assert delivered.is_set() and time.monotonic() - started >= 0.35


def test_a_web_linger_out_of_range_is_refused_at_boot(settings):
    from workers.checks import limits_are_consistent

    settings.WEB_KAFKA_LINGER_MS = 1001
    assert [e.id for e in limits_are_consistent()] == ["workers.E015"]
    settings.WEB_KAFKA_LINGER_MS = 0
    assert limits_are_consistent() == []
