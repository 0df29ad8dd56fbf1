"""Lanes only while the rest of the machine leaves a core to spare (workers.headroom): a busy machine gets one lane
per batch, an idle one gets them all, the consumer's own work does not count, one busy window does not flip the
choice back and forth, and a reading that spans an idle spell splits nothing."""
import hashlib
import multiprocessing
import os
import threading
import time
from collections import namedtuple

from workers.dead_letters import SourceMessage
from workers.headroom import IDLE_WINDOWS, Headroom, busy_and_total
from workers.lanes import Lanes

Times = namedtuple("Times", "user system idle iowait")
WINDOW = 0.25


class Machine:
    """CPU-time readings of a machine with two cores, advanced a window at a time: the rest of the machine at one
    busy fraction, this process at another."""

    def __init__(self) -> None:
        self.busy, self.idle, self.own, self.now, self.reads = 0.0, 0.0, 0.0, 0.0, 0

    def run(self, others: float, own: float = 0.0, seconds: float = WINDOW) -> None:
        self.busy += 2 * seconds * (others + own)
        self.idle += 2 * seconds * (1 - others - own)
        self.own += 2 * seconds * own
        self.now += seconds

    def times(self) -> Times:
        self.reads += 1
        return Times(user=self.busy * 0.8, system=self.busy * 0.2, idle=self.idle * 0.9, iowait=self.idle * 0.1)

    def headroom(self, limit: float = 0.7, resume: float = 0.6) -> Headroom:
        return Headroom(limit, resume, window=WINDOW, cpu_times=self.times, own_cpu=lambda: self.own,
                        clock=lambda: self.now)

    def after_first_batch(self) -> Headroom:
        """A headroom whose consumer has just asked for its first batch's lanes: its first window starts."""
        headroom = self.headroom()
        headroom.has_spare()
        return headroom


def test_busy_and_total_count_idle_and_io_wait_as_free():
    assert busy_and_total(Times(user=3.0, system=1.0, idle=5.0, iowait=1.0)) == (4.0, 10.0)


def next_batch(headroom: Headroom) -> bool:
    """The consumer finished a batch just now and asks for the next one's lanes."""
    headroom.batch_done()
    return headroom.has_spare()


def test_one_lane_until_a_window_of_work_saw_room():
    machine = Machine()
    headroom = machine.headroom()
    assert not headroom.has_spare()  # the first batch: nothing read yet
    machine.run(0.1, own=0.3)
    assert next_batch(headroom) and round(headroom.busy_fraction, 2) == 0.1


def test_a_busy_rest_of_the_machine_gets_one_lane_until_it_is_well_under_the_limit():
    machine = Machine()
    headroom = machine.after_first_batch()
    machine.run(0.3)
    assert next_batch(headroom)
    machine.run(0.75)
    assert not next_batch(headroom) and round(headroom.busy_fraction, 2) == 0.75
    machine.run(0.65)  # between resume (0.6) and the limit (0.7): stays at one lane
    assert not next_batch(headroom)
    machine.run(0.5)
    assert next_batch(headroom)
    machine.run(0.65)  # the same 0.65 with lanes in use: keeps them
    assert next_batch(headroom)
    machine.run(0.72)  # over the limit: one lane again
    assert not next_batch(headroom)


def test_the_consumers_own_work_does_not_count():
    """Its two lanes and PostgreSQL can keep both cores busy: that is the split working, not a busy machine."""
    machine = Machine()
    headroom = machine.after_first_batch()
    for _ in range(4):
        machine.run(0.4, own=0.6)
        assert next_batch(headroom)


def test_after_an_idle_spell_it_starts_again_at_one_lane():
    machine = Machine()
    headroom = machine.after_first_batch()
    machine.run(0.2)
    assert next_batch(headroom)
    headroom.batch_done()
    machine.run(0.0, seconds=IDLE_WINDOWS * WINDOW + 1)  # the consumer waited for work: a quiet machine
    assert not headroom.has_spare()  # a backlog arrives: read again before splitting
    machine.run(0.9)
    assert not next_batch(headroom)  # ...and the backlog met a busy machine
    machine.run(0.2)
    assert next_batch(headroom)


def test_a_long_batch_is_work_not_an_idle_spell():
    """A stage waiting on a slow dependency keeps its lanes (and its calls side by side)."""
    machine = Machine()
    headroom = machine.after_first_batch()
    machine.run(0.2)
    assert next_batch(headroom)
    machine.run(0.2, seconds=IDLE_WINDOWS * WINDOW + 1)  # one batch that long
    assert next_batch(headroom) and round(headroom.busy_fraction, 2) == 0.2


def test_the_machine_is_read_at_most_once_a_window():
    machine = Machine()
    headroom = machine.headroom()
    assert not headroom.has_spare() and machine.reads == 1
    machine.run(0.2, seconds=WINDOW / 2)
    assert not next_batch(headroom) and machine.reads == 1  # half a window: the first reading only
    machine.run(0.2, seconds=WINDOW / 2)
    assert next_batch(headroom) and machine.reads == 2
    for _ in range(100):
        next_batch(headroom)
    assert machine.reads == 2


def test_a_limit_of_one_always_splits_and_never_reads():
    machine = Machine()
    headroom = machine.headroom(limit=1.0)
    machine.run(1.0)
    assert headroom.has_spare() and next_batch(headroom) and machine.reads == 0


def _source(partition: int, offset: int) -> SourceMessage:
    return SourceMessage(topic="t", partition=partition, offset=offset, key=f"{partition}-{offset}".encode(),
                         value=b"{}", headers=[])


def test_lanes_split_a_batch_only_while_there_is_a_core_to_spare():
    from workers import metrics

    machine = Machine()
    lanes = Lanes(2, "headroom-test", headroom=machine.headroom())
    batch = [_source(p, o) for o in range(100) for p in (0, 1)]  # 200 keys: two lanes' worth, whatever the hash
    calls: list[int] = []
    try:
        lanes.run(lambda group: calls.append(len(group)), batch)
        assert calls == [200]  # the first batch: one lane until a window of work was read
        machine.run(0.1)
        calls.clear()
        lanes.run(lambda group: calls.append(len(group)), batch)
        assert len(calls) == 2 and sum(calls) == 200  # a quiet machine: two lanes
        machine.run(1.0)
        calls.clear()
        lanes.run(lambda group: calls.append(len(group)), batch)
        assert calls == [200]  # saturated: the whole batch as one lane
        assert metrics.LANES_IN_USE.labels("headroom-test")._value.get() == 1
    finally:
        lanes.close()


def test_a_small_batch_is_not_split_however_idle_the_machine():
    machine = Machine()
    lanes = Lanes(3, "headroom-test-small", headroom=machine.headroom(), min_events=100)
    try:
        lanes.lanes_for(500)
        machine.run(0.1)
        assert lanes.lanes_for(199) == 1  # two lanes would get under 100 each
        assert lanes.lanes_for(250) == 2
        assert lanes.lanes_for(500) == 3  # no more than there are
    finally:
        lanes.close()


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def _read_a_real_window() -> tuple[Headroom, bool]:
    """A headroom on psutil's real CPU times after one window of 0.6 s, and whether it would split then."""
    headroom = Headroom(0.7, 0.6, window=0.5)
    headroom.has_spare()  # the first batch: the window starts here
    time.sleep(0.6)
    return headroom, next_batch(headroom)


def test_real_readings_see_other_processes_busy():
    """psutil's real CPU times, with a busy loop in another process on every core of the machine."""
    hogs = [multiprocessing.Process(target=_spin, args=(2.0,)) for _ in range(os.cpu_count() or 1)]
    for hog in hogs:
        hog.start()
    try:
        time.sleep(0.2)  # every hog running
        headroom, spare = _read_a_real_window()
        assert headroom.busy_fraction >= 0.7 and not spare, f"read {headroom.busy_fraction} with every core spinning"
    finally:
        for hog in hogs:
            hog.join(5)


def test_real_readings_leave_out_the_consumers_own_threads():
    """Threads of this process keep every core busy (hashlib releases the GIL on large inputs): the machine is
    busy, the rest of it is not, and the consumer may split."""
    import psutil

    stop = threading.Event()

    def hash_until_stopped() -> None:
        data = b"x" * (1 << 20)
        while not stop.is_set():
            hashlib.sha256(data).digest()

    threads = [threading.Thread(target=hash_until_stopped) for _ in range(os.cpu_count() or 1)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        machine_before = busy_and_total(psutil.cpu_times())
        headroom, spare = _read_a_real_window()
        machine_after = busy_and_total(psutil.cpu_times())
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    machine_busy = (machine_after[0] - machine_before[0]) / (machine_after[1] - machine_before[1])
    assert machine_busy >= 0.8, f"the threads kept the machine only {machine_busy:.2f} busy"
    assert headroom.busy_fraction < 0.5 and spare, f"read the rest of the machine {headroom.busy_fraction} busy"


def test_a_resume_figure_above_the_limit_is_refused_at_boot(settings):
    from workers.checks import limits_are_consistent

    settings.WORKER_LANES_BUSY_LIMIT, settings.WORKER_LANES_RESUME_BELOW = 0.8, 0.9
    assert [e.id for e in limits_are_consistent()] == ["workers.E014"]
    settings.WORKER_LANES_BUSY_LIMIT = 1  # the check off: any resume figure up to it is fine
    assert limits_are_consistent() == []
