"""Entitlement and release: an allocation is made only for an active purchase, and stops holding its trainer's
time when the purchase is cancelled or an operator ends it.

Release runs under the allocations' row locks (FOR NO KEY UPDATE), the same locks the scheduler takes before it
adds sessions, so a window being filled and a release never cross: whichever comes second sees the other's
work. Its future sessions are cancelled in the same transaction (`allocation_released`), and one
ALLOCATION_RELEASED event per allocation tells the cache stage to refresh the student's pages.
"""
from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from allocations.errors import PurchaseCancelled, UnknownPurchase
from allocations.models import TrainerAllocation
from allocations.signals import allocation_released
from enrollment.events import ALLOCATION_RELEASED
from workers.outbox import Emission, emit_many
from workers.sql import fetch

Status = TrainerAllocation.Status
HOLDING = TrainerAllocation.HOLDING_STATUSES
# FOR SHARE: a refund that cancels the purchase (UPDATE) waits until the allocation is committed, and then
# finds the allocation to release; an allocation that comes after the refund sees the purchase cancelled.
LOCK_PURCHASES_SQL = """
SELECT id, student_id, course_id, is_active FROM student_course_purchases WHERE id = ANY(%b::bigint[])
ORDER BY id FOR SHARE
"""


def lock_purchases(purchase_ids: list[int]) -> dict[int, tuple[int, int, bool]]:
    """id -> (student_id, course_id, is_active) of the purchases that exist, locked until the transaction ends."""
    return {pk: (s, c, active) for pk, s, c, active in fetch(LOCK_PURCHASES_SQL, [sorted(set(purchase_ids))])}


def entitlement_error(purchase_id: int, student_id: int, course_id: int,
                      purchases: dict[int, tuple[int, int, bool]]) -> UnknownPurchase | PurchaseCancelled | None:
    """Why this purchase does not entitle the student to the course, or None when it does."""
    found = purchases.get(purchase_id)
    if found is None:
        return UnknownPurchase(f"unknown purchase {purchase_id}")
    if found[:2] != (student_id, course_id):
        return UnknownPurchase(f"purchase {purchase_id} is for another student or course")
    if not found[2]:
        return PurchaseCancelled(f"purchase {purchase_id} was cancelled")
    return None


@dataclass(frozen=True)
class Released:
    allocation_id: int
    purchase_id: int | None
    student_id: int
    course_id: int
    status: str
    sessions_cancelled: int


def release(
    *, purchase_ids: list[int] | None = None, allocation_ids: list[int] | None = None,
    status: str = Status.CANCELLED, now: datetime.datetime | None = None,
) -> list[Released]:
    """End (`ended`) or cancel (`cancelled`) the holding allocations of the purchases, or the given ones: their
    future sessions are cancelled (one UPDATE) and ALLOCATION_RELEASED is emitted for each (one outbox INSERT).
    Idempotent: what no longer holds is left alone. Must run inside a transaction."""
    if status not in (Status.ENDED, Status.CANCELLED):
        raise ValueError(f"an allocation is released as ended or cancelled, not {status!r}")
    wanted = Q(purchase_id__in=purchase_ids) if purchase_ids is not None else Q(pk__in=allocation_ids or [])
    locked = list(TrainerAllocation.objects.select_for_update(no_key=True).filter(wanted, status__in=HOLDING)
                  .order_by("pk"))
    if not locked:
        return []
    now = now or timezone.now()
    TrainerAllocation.objects.filter(pk__in=[a.pk for a in locked]).update(status=status, released_at=now)
    cancelled: dict[int, int] = {}
    for _, counts in allocation_released.send(sender=TrainerAllocation, allocations=locked, now=now):
        for pk, n in (counts or {}).items():
            cancelled[pk] = cancelled.get(pk, 0) + n
    released = [Released(a.pk, a.purchase_id, a.student_id, a.course_id, status, cancelled.get(a.pk, 0))
                for a in locked]
    emit_many([
        Emission(ALLOCATION_RELEASED, {"allocation_id": r.allocation_id, "purchase_id": r.purchase_id,
                                       "student_id": r.student_id, "course_id": r.course_id, "status": r.status,
                                       "sessions_cancelled": r.sessions_cancelled},
                 # An allocation made by hand has no flow of its own: a stable id of its own then.
                 correlation_id=a.correlation_id or uuid.uuid5(uuid.NAMESPACE_URL, f"allocation:{a.pk}"))
        for a, r in zip(locked, released)
    ])
    return released

