"""Django's PostgreSQL backend, with a persistent connection's health check done without a query.

CONN_HEALTH_CHECKS stays on: a connection that PostgreSQL dropped (a restart, a failover, pg_terminate_backend)
is replaced before a request or a batch uses it, instead of failing it. Django checks with `SELECT 1`, one round
trip before every request's first query: a third of the payment webhook's round trips, on every web request and
every poll of every consumer. Here an idle connection is asked first whether anything arrived on its socket
(a `select()` with no wait): PostgreSQL sends nothing to an idle session of ours, except the error it writes
before closing one (or the end of the stream). Only then does `SELECT 1` decide, as Django's check would.
"""
from __future__ import annotations

import select

from django.db.backends.postgresql import base, operations


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor, sql, params):
        """What `connection.queries` and CaptureQueriesContext show: psycopg keeps no query text for a statement it
        ran prepared (settings: prepare_threshold), so the statement as written stands in for it."""
        return super().last_executed_query(cursor, sql, params) or sql


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def is_usable(self) -> bool:
        if self.connection is None or self.connection.closed:
            return False
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # the socket is gone
            return False
        if not readable:
            return True
        return super().is_usable()
