"""Test helper: wait until some session of the test database waits for a lock (to stage insert races)."""
import time

from django.db import connection


def wait_until_blocked_on_a_lock(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("SELECT pg_stat_clear_snapshot()")  # activity stats are otherwise frozen per transaction
            cur.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database()"
            )
            if cur.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("nobody blocked on a lock")
