"""Operator actions on dead letters, audited: the admin actions and `replay_dead_letters` both go through here,
so every replay and discard leaves one DeadLetterAction row (who, when, what, how many, which ids, why)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from workers import dead_letter_store
from workers.models import DeadLetter, DeadLetterAction


def replay(rows: Iterable[DeadLetter], *, actor: str) -> int:
    """Republish the rows' original messages (see `dead_letter_store.replay`) and audit it.

    Returns how many were republished. Only new and replayed rows are eligible; a replayed row replayed again
    republishes the same event id, which every consumer group skips if it already handled it.
    """
    rows = list(rows)
    done = dead_letter_store.replay(rows, actor=actor)
    DeadLetterAction.objects.create(
        actor=actor, action=DeadLetterAction.Action.REPLAY, count=done, dead_letter_ids=sorted(r.pk for r in rows)
    )
    return done


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
