"""How a handler tells the framework what kind of failure it hit.

- TransientError (and the library errors in TRANSIENT_ERRORS): worth retrying later; retried with backoff up
  to the stage's limit, then dead-lettered. DependencyUnavailable and the library errors of OUTAGE_ERRORS
  (timeouts, refused connections, database or Redis down) also feed the stage's circuit breaker.
- PermanentError: retrying cannot help (unknown student, a 4xx from a dependency); dead-lettered at once.
- Any other exception is a bug or an unexpected state: treated like a transient error (retried, then
  dead-lettered) so a deploy that fixes the bug can still save the event, but it does not trip the breaker.
- InvalidEvent (enrollment.events): the message is not an event at all; dead-lettered at once.
"""
from __future__ import annotations

import django.db
import requests
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


class TransientError(Exception):
    """Not now, maybe later (e.g. no trainer has capacity right now): retried with backoff."""


class DependencyUnavailable(TransientError):
    """A dependency is down or too slow (timeout, connection refused, 5xx). Retried like any transient error,
    and counted by the stage's circuit breaker: when most recent attempts fail this way the stage pauses."""


class PermanentError(Exception):
    """This event can never succeed as it is; dead-letter it now."""


# Failures that mean "the dependency is down": they feed the circuit breaker.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    DependencyUnavailable,
    TimeoutError,
    ConnectionError,
    requests.Timeout,
    requests.ConnectionError,
    django.db.OperationalError,
    django.db.InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, *OUTAGE_ERRORS)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGE_ERRORS)
