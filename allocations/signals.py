"""`allocation_released`: sent inside the transaction in which allocations stop holding their trainer's time,
so the apps that booked time for them (sessions_sched) free it in the same transaction. This app knows no
app above it; they connect here.

Receivers get `allocations` (the released TrainerAllocation rows) and `now`, and return how many future
bookings they cancelled per allocation id ({id: count}).
"""
from django.dispatch import Signal

allocation_released = Signal()
