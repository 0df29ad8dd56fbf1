"""Random (version 4) UUIDs for event ids, drawn from blocks of `os.urandom` bytes.

`uuid.uuid4()` makes one `getrandom` system call per id, and CPython releases the GIL around it: a stage that
emits 500 events per batch gave the GIL up 500 times per batch, and with two lanes (workers.lanes) each
release can hand the GIL to the other lane's thread and wait to get it back. One call per block of ids costs
the same randomness and one release. Blocks are per thread, and a forked child never hands out an id of its
parent's block (`os.register_at_fork`).
"""
from __future__ import annotations

import os
import threading
import uuid

BLOCK = 256  # ids per system call
_generation = 0  # bumped in a forked child: blocks drawn before the fork are dropped
_local = threading.local()


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


def uuid4() -> uuid.UUID:
    """A random UUID, as `uuid.uuid4()` makes it (same version and variant bits, same source of randomness)."""
    local = _local
    ids = getattr(local, "ids", None)
    if not ids or local.generation != _generation:
        raw = os.urandom(16 * BLOCK)
        ids = local.ids = [uuid.UUID(bytes=raw[i:i + 16], version=4) for i in range(0, len(raw), 16)]
        local.generation = _generation
    return ids.pop()
