"""Lanes only while the machine has a core to spare (workers.headroom): a busy machine gets one lane per batch, an
idle one gets them all, and one busy second does not flip the choice back and forth."""
import multiprocessing
import os
import time
from collections import namedtuple

from workers.dead_letters import SourceMessage
from workers.headroom import Headroom, busy_and_total
from workers.lanes import Lanes

Times = namedtuple("Times", "user system idle iowait")


class Machine:
    """CPU-time readings of a machine with two cores, advanced one second at a time at a given busy fraction."""

    def __init__(self) -> None:
        self.busy, self.idle, self.now, self.reads = 0.0, 0.0, 0.0, 0

    def run(self, busy_fraction: float, seconds: float = 1.0) -> None:
        self.busy += 2 * seconds * busy_fraction
        self.idle += 2 * seconds * (1 - busy_fraction)
        self.now += seconds

    def times(self) -> Times:
        self.reads += 1
        return Times(user=self.busy * 0.8, system=self.busy * 0.2, idle=self.idle * 0.9, iowait=self.idle * 0.1)

    def headroom(self, limit: float = 0.9, resume: float = 0.8) -> Headroom:
        return Headroom(limit, resume, window=1.0, cpu_times=self.times, clock=lambda: self.now)


def test_busy_and_total_count_idle_and_io_wait_as_free():
    assert busy_and_total(Times(user=3.0, system=1.0, idle=5.0, iowait=1.0)) == (4.0, 10.0)


def test_a_busy_machine_gets_one_lane_until_it_is_well_under_the_limit():
    machine = Machine()
    headroom = machine.headroom()
    assert headroom.has_spare()  # nothing read yet: split

    machine.run(0.95)
    assert not headroom.has_spare() and round(headroom.busy_fraction, 2) == 0.95
    machine.run(0.85)  # between resume (0.8) and the limit (0.9): stays at one lane
    assert not headroom.has_spare()
    machine.run(0.7)
    assert headroom.has_spare()
    machine.run(0.85)  # the same 0.85 with lanes in use: keeps them
    assert headroom.has_spare()
    machine.run(0.92)  # over the limit: one lane again
    assert not headroom.has_spare()


def test_the_machine_is_read_at_most_once_a_window():
    machine = Machine()
    headroom = machine.headroom()
    machine.run(0.95, seconds=0.5)
    assert headroom.has_spare() and machine.reads == 1  # half a window: the constructor's reading only
    machine.run(0.95, seconds=0.5)
    assert not headroom.has_spare() and machine.reads == 2
    for _ in range(100):
        headroom.has_spare()
    assert machine.reads == 2


def test_a_limit_of_one_always_splits_and_never_reads():
    machine = Machine()
    headroom = machine.headroom(limit=1.0)
    machine.run(1.0)
    assert headroom.has_spare() and machine.reads == 0


def _source(partition: int, offset: int) -> SourceMessage:
    return SourceMessage(topic="t", partition=partition, offset=offset, key=b"k", value=b"{}", headers=[])


def test_lanes_split_a_batch_only_while_there_is_a_core_to_spare():
    from workers import metrics

    machine = Machine()
    lanes = Lanes(2, "headroom-test", headroom=machine.headroom())
    batch = [_source(p, o) for o in range(3) for p in (0, 1)]
    calls: list[int] = []
    try:
        lanes.run(lambda group: calls.append(len(group)), batch)
        assert sorted(calls) == [3, 3]  # idle machine: two lanes
        machine.run(1.0)
        calls.clear()
        lanes.run(lambda group: calls.append(len(group)), batch)
        assert calls == [6]  # saturated: the whole batch as one lane
        assert metrics.LANES_IN_USE.labels("headroom-test")._value.get() == 1
    finally:
        lanes.close()


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_real_readings_see_every_core_busy():
    """psutil's real CPU times, with a busy loop on every core of the machine for two seconds."""
    headroom = Headroom(0.9, 0.8, window=0.5)
    hogs = [multiprocessing.Process(target=_spin, args=(2.0,)) for _ in range(os.cpu_count() or 1)]
    for hog in hogs:
        hog.start()
    try:
        time.sleep(0.2)  # every hog running
        headroom.has_spare()  # starts a window inside the busy spell
        time.sleep(0.8)
        assert not headroom.has_spare(), f"read {headroom.busy_fraction} busy with every core spinning"
    finally:
        for hog in hogs:
            hog.join(5)


def test_a_resume_figure_above_the_limit_is_refused_at_boot(settings):
    from workers.checks import limits_are_consistent

    settings.WORKER_LANES_BUSY_LIMIT, settings.WORKER_LANES_RESUME_BELOW = 0.8, 0.9
    assert [e.id for e in limits_are_consistent()] == ["workers.E014"]
    settings.WORKER_LANES_BUSY_LIMIT = 1  # the check off: any resume figure up to it is fine
    assert limits_are_consistent() == []
