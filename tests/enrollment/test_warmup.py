"""Web workers are warmed before they take traffic (enrollment/warmup.py, gunicorn's post_worker_init)."""
import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from enrollment.warmup import warm_threads, warm_up

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 4


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
