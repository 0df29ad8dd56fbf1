"""The reasons an allocation cannot be made (the API maps each to its HTTP answer, allocations.api.answer)."""
from __future__ import annotations


class AllocationError(Exception):
    """Base class of the reasons an allocation cannot be made."""


class UnknownPurchase(AllocationError):
    """The purchase does not exist, or is another student's or course's: the request is wrong (422)."""


class PurchaseCancelled(AllocationError):
    """The purchase was cancelled (refund, chargeback): nothing to allocate any more (410)."""


class NoCapacity(AllocationError):
    """No active trainer of the course has a free slot (now). Retrying later may succeed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
