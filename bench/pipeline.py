"""The whole pipeline as it runs in production: the Procfile's processes as subprocesses, end to end."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import ROOT, bulk_producer, produce_values, quiet_database, use_prefix, vacuum, wait_for
from bench.cpu import measure
from bench.memory import PeakMemory


def refuse_a_taken_port(port: int) -> None:
    """Raise if something already listens on the web's port: the load would go to it (a web left by an earlier run
    that was killed, as happened on 2026-12-07), and the bench would report another process's answers with none of
    its CPU."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is taken (a web left by an earlier run?): {exc}") from None


class Processes:
    """Some of the Procfile's processes, started with the given environment."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.procs = env, log_dir, {}
        self.commands = {}
        for line in (ROOT / "Procfile").read_text().splitlines():
            if line and not line.startswith("#") and ":" in line:
                name, command = line.split(":", 1)
                self.commands[name.strip()] = command.strip()
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, *names: str) -> None:
        for name in names:
            if name == "web":
                refuse_a_taken_port(int(self.env.get("WEB_PORT", "8000")))
            self.procs[name] = subprocess.Popen(
                ["bash", "-c", f"exec {self.commands[name]}"], cwd=ROOT, env=self.env, start_new_session=True,
                stdout=open(self.log_dir / f"{name}.log", "ab"), stderr=subprocess.STDOUT,
            )

    def start_copy(self, name: str, copy: int) -> None:
        """Another process of `name`'s command, known as "<name>#<copy>" (two consumers of one group)."""
        alias = f"{name}#{copy}"
        env = {**self.env, f"{name.upper()}_METRICS_PORT": "0"}  # the first process has the port
        self.procs[alias] = subprocess.Popen(
            ["bash", "-c", f"exec {self.commands[name]}"], cwd=ROOT, env=env, start_new_session=True,
            stdout=open(self.log_dir / f"{alias}.log", "ab"), stderr=subprocess.STDOUT,
        )

    def stop_one(self, name: str) -> None:
        """SIGTERM and wait, as a deploy does."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash or the OOM killer would."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.procs = {}


def wait_for_web(url: str) -> None:
    import requests

    def up() -> bool:
        try:
            return requests.get(url + "/api/students/0/home", timeout=2).status_code == 404
        except requests.RequestException:
            return False

    wait_for(up, 60, "web app")


def end_to_end(n: int, env: dict[str, str], log_dir: Path, profile_stage: str | None = None,
               sample_memory: bool = False) -> dict:
    """The running pipeline facing a backlog: every consumer started and joined to its group first (a process's
    start-up, ~1 s of CPU for Python and Django, is not the pipeline's throughput), then n PURCHASE_CONFIRMED
    produced at once (the broker takes them far faster than any stage), timed from the first one produced until
    the last sessions are scheduled and every cache invalidation is consumed.

    With `sample_memory`, the peak of the whole stack's memory too (bench.memory). Off for the headline run: a
    sample reads smaps_rollup of every process, 30-50 ms of kernel time (the broker's heap most), so the samples
    took 0.15 s of the bench process's CPU in a run of 5 s, 1.6% of what the pipeline spent."""

    from tools.seed import purchase_confirmed, seed_catalog, seed_payments
    from workers import health
    from workers.kafka import admin_client, topic

    prefix = f"bench-e2e-{uuid.uuid4().hex[:6]}."
    use_prefix(prefix)
    payments = seed_payments(seed_catalog(n, courses=5), prefix="e2e")
    values = [(str(p.student_id).encode(), purchase_confirmed(p).to_json()) for p in payments]
    producer = bulk_producer(topic("purchase-confirmed"))  # ready (its producer id) before the clock starts
    procs = Processes({**env, "KAFKA_TOPIC_PREFIX": prefix, "CACHE_KEY_PREFIX": prefix}, log_dir)
    procs.start("web")
    wait_for_web(env["ADMIN_SERVICE_URL"])
    profile = None
    stages = {name: t for name, t in health.targets().items() if name != "dead_letters"}
    try:
        procs.start("relay", *stages, "dead_letters")  # every process of the Procfile: its memory is counted
        admin = admin_client()

        def joined() -> bool:  # every group Stable with a member: its consumer joined and got partitions
            return all(snap.state == "STABLE" and snap.members
                       for snap in (health.snapshot(t, client=admin) for t in stages.values()))

        wait_for(joined, 120, "consumer groups joined", interval=0.5)
        settled = quiet_database()  # the seeding's vacuum is the bench's work, not the pipeline's
        own = lambda: {name: procs.pid(name) for name in procs.procs}  # noqa: E731
        cpu = measure(own)
        memory = PeakMemory(own).start() if sample_memory else None
        started = time.monotonic()
        produce_seconds = produce_values(topic("purchase-confirmed"), values, producer)
        if profile_stage:
            profile = _profile(procs.pid(profile_stage), log_dir / f"profile-{profile_stage}.txt")

        students = (min(p.student_id for p in payments), max(p.student_id for p in payments))
        sessions_done, all_done = _wait_until_done(n, students, stages, admin, started)
        cpu_seconds = cpu()
        if memory:
            memory.stop()
        db_span = _database_span(students)
    finally:
        if profile:
            profile.wait(120)
        procs.stop()
    # The vacuum of the run's own rows, which autovacuum does minutes later (quiet_database pays it before the next
    # phase, so no run pays another's): reported beside the run's figures, not in them.
    vacuum_seconds = vacuum()
    return {"purchases": n, "seconds": round(all_done, 2), "per_second": round(n / all_done, 1),
            "produce_seconds": round(produce_seconds, 2), "sessions_done_seconds": round(sessions_done, 2),
            "db_span_seconds": round(db_span, 2), "per_second_db_span": round(n / db_span, 1),
            "waited_for_quiet_database_seconds": settled, "cpu_seconds": cpu_seconds,
            **({"memory": memory.result()} if memory else {}),
            "cpu_ms_per_purchase": {k: round(1000 * v / n, 3) for k, v in cpu_seconds.items()},
            "vacuum_after_ms_per_purchase": None if vacuum_seconds is None else round(1000 * vacuum_seconds / n, 3)}


THIS_RUN_SESSIONS = ("FROM training_sessions s JOIN trainer_allocations a ON a.id = s.allocation_id "
                     "WHERE a.student_id BETWEEN %s AND %s")


def _wait_until_done(
    n: int, students: tuple[int, int], stages: dict, admin: Any, started: float,
) -> tuple[float, float]:
    """Seconds from `started` until the run's 7 x n sessions are scheduled, and until the cache stage has no lag."""
    from django.db import connection

    from workers import health

    upstream = list(stages)[:list(stages).index("sessions")]  # the stages before it, in the registry's order

    def scheduled() -> bool:
        # The sessions group's lag first (asked of the broker: about 1.2 ms of this process's CPU), the database's
        # count only once it and the stages before it have none: a count every half second would take CPU from
        # the pipeline it measures, and the sessions stage alone catches up with its input several times a run
        # (7 counts of about 40 ms of PostgreSQL's CPU each in a run of 5 s, measured with pg_stat_statements).
        if health.snapshot(stages["sessions"], client=admin).lag != 0:  # one client: no new connection per look
            return False
        if any(health.snapshot(stages[name], client=admin).lag != 0 for name in upstream):
            return False
        with connection.cursor() as cur:
            cur.execute(f"SELECT count(*) {THIS_RUN_SESSIONS}", students)
            return cur.fetchone()[0] >= 7 * n

    # Looks every 0.1 s: each wait overshoots the moment it measures by half its interval on average (at 0.25
    # s the two waits added about 0.25 s to a 10 s run); a look at the lag is about 0.2 ms of CPU.
    wait_for(scheduled, 900, "sessions scheduled", interval=0.1)
    sessions_done = time.monotonic() - started
    wait_for(lambda: health.snapshot(stages["cache"], client=admin).lag == 0, 120, "cache caught up",
             interval=0.1)
    return sessions_done, time.monotonic() - started


def _database_span(students: tuple[int, int]) -> float:
    """Seconds from the run's first purchase row to its last session row, as the database stamped them."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"SELECT EXTRACT(EPOCH FROM (SELECT max(s.created_at) {THIS_RUN_SESSIONS}) - "
                    "(SELECT min(created_at) FROM student_course_purchases WHERE student_id BETWEEN %s AND %s))",
                    students + students)
        return float(cur.fetchone()[0])


# Eight runs in an order that cancels a drift that is linear or curved over them (each side's mean position is the
# same, and so is the mean of its squared positions). Four (off, on, on, off) read 0.847-1.032x over seven runs of
# `make bench`, for a lookup that costs about 0.4 us per event: the machine's noise between single runs.
KEY_ORDER_RUNS = ("off", "on", "on", "off", "on", "off", "off", "on")


def key_order_cost(n: int, env: dict[str, str], log_dir: Path) -> dict:
    """What key order (workers.ordering) costs end to end: the pipeline with every stage's ordering off
    (STAGE_ORDERING=<stage>=none, the code path before key order) against on, in the order of KEY_ORDER_RUNS so
    that a drift of the machine over the runs weighs on both alike. Nothing fails in these runs: the figure is the
    price of the lookup each batch makes when nothing is parked.

    These runs also sample the whole stack's memory (the sampler weighs on both sides alike): `memory` is the
    largest peak of them."""
    from workers.registry import stages

    off_env = {**env, "STAGE_ORDERING": ",".join(f"{s.name}=none" for s in stages())}
    runs: dict[str, list[float]] = {"off": [], "on": []}
    peaks = []
    for which in KEY_ORDER_RUNS:
        result = end_to_end(n, off_env if which == "off" else env, log_dir, sample_memory=True)
        runs[which].append(result["per_second"])
        peaks.append(result["memory"])
    off, on = (sum(runs[w]) / len(runs[w]) for w in ("off", "on"))
    return {"purchases": n, "order": "/".join(KEY_ORDER_RUNS), "off_per_second": runs["off"],
            "on_per_second": runs["on"], "ratio": round(on / off, 3),
            "memory": max(peaks, key=lambda peak: peak["peak_total_mib"])}


def _profile(pid: int, out: Path) -> subprocess.Popen:
    """py-spy, sampling the stage's process for 20 s; writes the top functions to `out`."""
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(pid), "--duration", "20", "--format", "raw",
         "--output", str(out.with_suffix(".folded")), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
