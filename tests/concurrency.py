"""Running the same function in several threads at once, for the tests of races."""
from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(target: Callable[[], None], count: int, timeout: float = 60.0) -> None:
    """Start `count` threads on `target`, then wait for each (at most `timeout` seconds apiece)."""
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
