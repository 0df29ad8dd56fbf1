"""Stop the line: a stage that dead-letters too much pauses itself instead (Arroyo's DlqLimit is the model).

After a bad deploy (a handler bug, a tightened schema, a producer sending garbage) a stage would otherwise
dead-letter everything it reads, and operators would have thousands of letters to replay. With a
`DeadLetterLimit` (workers.stage), the consumer counts its outcomes; when the dead letters pass the limit (a
share of the last `window` events, or a run in a row), the letter that would pass it is not written. The event
and the rest of its batch are parked as retries that have spent no attempt (invalid messages, which cannot be
parked, have their batch rewound instead), and the stage is paused in PostgreSQL (a StagePause row), so every
consumer of the group stops within seconds, and the ones that join later start paused. It says so in the log
(ERROR), in the metric `pipeline_stage_paused{stage}` and in `worker_health`; `manage.py resume_stage NAME`
resumes it once the cause is fixed, and the parked and rewound events then run again.

The same pause serves operators (`manage.py pause_stage NAME --reason ...`): every pause and resume is audited
(StageControlAction).
"""
from __future__ import annotations

import logging
from collections import deque

from django.db import transaction

from workers import metrics
from workers.models import StageControlAction, StagePause
from workers.stage import DeadLetterLimit

log = logging.getLogger(__name__)
LINE_STOPPER = "stop-the-line"
PAUSE_OBEYED_WITHIN_SECONDS = 5  # consumers read the pause every second (workers.consumer.PAUSE_CHECK_SECONDS)


class LineStopped(Exception):
    """The stage passed its dead-letter limit: the batch must be rewound and the stage paused."""


class LineMonitor:
    """The recent outcomes of one consumer: dead-lettered or not."""

    def __init__(self, limit: DeadLetterLimit | None) -> None:
        self.limit = limit
        self._recent: deque[bool] = deque(maxlen=limit.window if limit else 1)
        self._in_a_row = 0
        self.stopped: str | None = None  # why the line stopped, until the consumer has paused the stage
        self.accept = 0  # dead letters to let through before the limit counts again (a resume's choice)

    def reset(self, *, accept: int = 0) -> None:
        self._recent.clear()
        self._in_a_row = 0
        self.stopped = None
        self.accept = accept

    def succeeded(self, count: int = 1) -> None:
        if self.limit is None or count <= 0:
            return
        self._recent.extend([False] * min(count, self.limit.window))
        self._in_a_row = 0

    def dead_lettered(self, count: int, stage: str) -> None:
        """Count `count` more dead letters; raise LineStopped, counting none of them, if they pass the limit."""
        if self.limit is None or count <= 0:
            return
        if self.accept >= count:
            self.accept -= count
            return
        recent = [*self._recent, *([True] * count)][-self.limit.window:]
        in_a_row = self._in_a_row + count
        share = sum(recent) / len(recent)
        if in_a_row >= self.limit.max_in_a_row:
            self.stopped = f"{in_a_row} dead letters in a row (limit {self.limit.max_in_a_row})"
        elif len(recent) >= self.limit.window and share > self.limit.max_share:
            self.stopped = (f"{sum(recent)} of the last {len(recent)} events dead-lettered "
                            f"(limit: {self.limit.max_share:.0%})")
        if self.stopped is not None:
            raise LineStopped(self.stopped)
        self._recent.extend([True] * count)
        self._in_a_row = in_a_row


def pause(stage: str, *, reason: str, actor: str, automatic: bool = False) -> bool:
    """Pause a stage (audited). Returns False when it was paused already (the first reason stays)."""
    with transaction.atomic():
        _, created = StagePause.objects.get_or_create(
            stage=stage, defaults={"reason": reason, "paused_by": actor, "automatic": automatic})
        if created:
            StageControlAction.objects.create(stage=stage, action=StageControlAction.Action.PAUSE, actor=actor,
                                              reason=reason)
    if created:
        log.error("stage paused: %s", reason, extra={"stage": stage, "paused_by": actor})
    return created


def resume(stage: str, *, actor: str, reason: str = "", accept_dead_letters: int = 0) -> bool:
    """Resume a paused stage (audited). Returns False when it was not paused. With `accept_dead_letters`, each
    consumer lets that many dead letters through before its limit counts again."""
    with transaction.atomic():
        deleted, _ = StagePause.objects.filter(stage=stage).delete()
        if deleted:
            StageControlAction.objects.create(stage=stage, action=StageControlAction.Action.RESUME, actor=actor,
                                              reason=reason, accept_dead_letters=accept_dead_letters)
    if deleted:
        log.warning("stage resumed", extra={"stage": stage, "resumed_by": actor})
    return bool(deleted)


def pause_of(stage: str) -> StagePause | None:
    pause_row = StagePause.objects.filter(stage=stage).first()
    metrics.STAGE_PAUSED.labels(stage).set(1 if pause_row else 0)
    return pause_row


def accepted_after_resume(stage: str) -> int:
    """The dead letters the stage's last resume lets through."""
    last = StageControlAction.objects.filter(stage=stage, action=StageControlAction.Action.RESUME).first()
    return last.accept_dead_letters if last else 0
