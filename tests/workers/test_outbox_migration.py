"""workers migration 0013: "sent" moved from outbox_events.sent_at to the absence of an outbox_pending row. A
deploy must not lose an unsent event (it would never be published) nor publish every sent one again."""
import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, AFTER = ("workers", "0012_replay_jobs_parking_lot"), ("workers", "0013_outbox_pending")


def _migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def _rows(sql: str) -> set:
    with connection.cursor() as cur:
        cur.execute(sql)
        return set(cur.fetchall())


def test_unsent_rows_stay_unsent_and_sent_rows_stay_sent_both_ways():
    sent, unsent = uuid.uuid4(), uuid.uuid4()
    try:
        _migrate(BEFORE)
        with connection.cursor() as cur:
            cur.execute("INSERT INTO outbox_events (event_id, event_type, topic, key, value, created_at, sent_at,"
                        " publish_attempts, last_error) VALUES (%s, 'X', 't', '1', '\\x7b7d', now(), now(), 0, ''),"
                        " (%s, 'X', 't', '1', '\\x7b7d', now(), NULL, 2, 'broker down')", [sent, unsent])
        _migrate(AFTER)
        assert _rows("SELECT o.event_id FROM outbox_pending p JOIN outbox_events o ON o.id = p.outbox_id") == {
            (unsent,)}
        _migrate(BEFORE)
        assert _rows("SELECT event_id, sent_at IS NULL FROM outbox_events") == {(sent, False), (unsent, True)}
    finally:
        _migrate(("workers", max(MigrationExecutor(connection).loader.graph.leaf_nodes("workers"))[1]))
    assert _rows("SELECT o.event_id FROM outbox_pending p JOIN outbox_events o ON o.id = p.outbox_id") == {
        (unsent,)}
