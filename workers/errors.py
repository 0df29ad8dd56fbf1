"""How a handler tells the framework what kind of failure it hit.

- TransientError (and the library errors in TRANSIENT_ERRORS): worth retrying later; retried with backoff up
  to the stage's limit, then dead-lettered. They also feed the stage's circuit breaker.
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
    """A dependency is down, slow or busy; try again later."""


class PermanentError(Exception):
    """This event can never succeed as it is; dead-letter it now."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    TimeoutError,
    ConnectionError,
    requests.Timeout,
    requests.ConnectionError,
    django.db.OperationalError,
    django.db.InterfaceError,
    RedisConnectionError,
    RedisTimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS)
