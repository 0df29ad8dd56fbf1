"""CPU time per component during a benchmark, read from /proc: where the two cores actually went.

A process tree's CPU is the user+system time of its live processes plus what their exited children left in
`cutime`/`cstime` (PostgreSQL backends that ended, gunicorn workers that were replaced), so the difference of
two snapshots counts every process that ran in between, alive or gone.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str, float, str]]:
    """pid -> (parent pid, comm, cpu seconds incl. reaped children, cmdline)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        ppid = int(fields[1])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        found[int(entry.name)] = (ppid, comm, (utime + stime + cutime + cstime) / TICK, cmdline)
    return found


def process_seconds(pid: int) -> float | None:
    """User and system CPU seconds of one process so far (its own, not its reaped children's); None when it is
    not on this machine."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    utime, stime = (int(x) for x in stat[stat.rindex(")") + 2:].split()[11:13])
    return (utime + stime) / TICK


def tree_pids(procs: dict, root: int) -> list[int]:
    """The live processes of the tree under `root`, root included (`procs` from `_processes()`)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, *_rest) in procs.items():
        children.setdefault(ppid, []).append(pid)
    members, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in procs:
            members.append(pid)
            todo.extend(children.get(pid, []))
    return members


def _tree_seconds(procs: dict, root: int) -> float:
    return sum(procs[pid][2] for pid in tree_pids(procs, root))


def services(procs: dict) -> dict[str, list[int]]:
    """The local stack's processes: the PostgreSQL postmaster(s), the Kafka broker, Redis."""
    roots: dict[str, list[int]] = {"postgresql": [], "kafka": [], "redis": []}
    for pid, (ppid, comm, _, cmdline) in procs.items():
        if comm == "postgres" and procs.get(ppid, (0, ""))[1] != "postgres":
            roots["postgresql"].append(pid)
        elif comm == "java" and "kafka.Kafka" in cmdline:
            roots["kafka"].append(pid)
        elif comm == "redis-server":
            roots["redis"].append(pid)
    return roots


def snapshot(own: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree (`own`: name -> root pid) and of the stack's services."""
    procs = _processes()
    roots = {name: [pid] for name, pid in own.items()} | services(procs)
    return {name: sum(_tree_seconds(procs, pid) for pid in pids) for name, pids in roots.items()}


def _machine_busy() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot, from /proc/stat."""
    user, nice, system, idle, iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])
    return (user + nice + system + irq + softirq + steal) / TICK, (idle + iowait) / TICK


def measure(own: Callable[[], dict[str, int]]) -> Callable[[], dict[str, float]]:
    """`since = measure(pids)`; later `since()` returns the CPU seconds each component used in between, plus
    `bench driver` (this process alone) and `machine_busy`/`machine_idle` for the whole machine (other processes
    included)."""
    before, (busy, idle), me = snapshot(own()), _machine_busy(), os.times()

    def since() -> dict[str, float]:
        after, (busy_now, idle_now), me_now = snapshot(own()), _machine_busy(), os.times()
        used = {name: round(after[name] - before.get(name, 0.0), 2) for name in after}
        driver = (me_now.user + me_now.system) - (me.user + me.system)  # this process alone, not its children
        return used | {"bench driver": round(driver, 2), "machine_busy": round(busy_now - busy, 2),
                       "machine_idle": round(idle_now - idle, 2)}

    return since
