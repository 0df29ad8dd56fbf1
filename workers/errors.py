"""How a handler tells the framework what kind of failure it hit.

- TransientError (and the errors in TRANSIENT_ERRORS): worth retrying later; retried with backoff up to the
  stage's limit, then dead-lettered. DependencyUnavailable and the errors of OUTAGE_ERRORS (timeouts, refused
  connections, the database down) also feed the stage's circuit breaker. A stage's client maps its library's
  errors to these (the allocation client turns `requests` timeouts into DependencyUnavailable), or the
  stage's RetryPolicy names them (`outage_errors`), so the framework imports no HTTP or Redis library.
- PermanentError: retrying cannot help (unknown student, a 4xx from a dependency); dead-lettered at once.
- Any other exception is a bug or an unexpected state: treated like a transient error (retried, then
  dead-lettered) so a deploy that fixes the bug can still save the event, but it does not trip the breaker.
- Superseded: the event names something that was undone meanwhile (a cancelled purchase, a released
  allocation). Not a failure: the event counts as processed, its handler's writes are rolled back, and it is
  logged and counted (`pipeline_events_superseded_total`). Raised by a one-event handler; a batch handler
  that raises it is re-run one event at a time, like any batch that raises.
- InvalidEvent (workers.envelope): the message is not an event at all; dead-lettered at once.
"""
from __future__ import annotations

import django.db


class TransientError(Exception):
    """Not now, maybe later (e.g. no trainer has capacity right now): retried with backoff."""


class DependencyUnavailable(TransientError):
    """A dependency is down or too slow (timeout, connection refused, 5xx). Retried like any transient error,
    and counted by the stage's circuit breaker: when most recent attempts fail this way the stage pauses."""


class PermanentError(Exception):
    """This event can never succeed as it is; dead-letter it now."""


class Superseded(Exception):
    """Nothing to do any more: what the event asks for was undone meanwhile (see the module docstring)."""


# Failures that mean "the dependency is down": they feed the circuit breaker.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    DependencyUnavailable,
    TimeoutError,
    ConnectionError,
    django.db.OperationalError,
    django.db.InterfaceError,
)


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, *OUTAGE_ERRORS)

