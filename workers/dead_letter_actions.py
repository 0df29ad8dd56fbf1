"""Operator actions on dead letters, audited: the admin actions and `replay_dead_letters` both go through here,
so every replay and discard leaves one DeadLetterAction row (who, when, what, how many, which ids, why)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from workers import dead_letter_store
from workers.dead_letter_store import ReplayResult
from workers.models import DeadLetter, DeadLetterAction


def replay(rows: Iterable[DeadLetter], *, actor: str) -> ReplayResult:
    """Republish the rows' original messages (see `dead_letter_store.replay`) and audit it.

    Returns what was republished and what was refused, and why. New rows are eligible, and replayed rows whose
    replay is stale; invalid, cut and malformed rows never are.
    """
    rows = list(rows)
    result = dead_letter_store.replay(rows, actor=actor)
    refused = "; ".join(f"{count} refused: {kind}" for kind, count in sorted(result.refused.items()))
    DeadLetterAction.objects.create(
        actor=actor, action=DeadLetterAction.Action.REPLAY, count=result.replayed,
        dead_letter_ids=sorted(r.pk for r in rows), reason=refused,
    )
    return result


def discard(rows: Iterable[DeadLetter], *, actor: str, reason: str) -> int:
    """Mark the rows discarded with the reason (resolved rows stay resolved) and audit it."""
    if not reason.strip():
        raise ValueError("a discard needs a reason")
    rows = list(rows)
    with transaction.atomic():
        done = dead_letter_store.discard(rows, actor=actor, reason=reason.strip())
        DeadLetterAction.objects.create(
            actor=actor, action=DeadLetterAction.Action.DISCARD, count=done,
            dead_letter_ids=sorted(r.pk for r in rows), reason=reason.strip(),
        )
    return done
