"""Gunicorn hooks: `gunicorn -c python:settings.gunicorn ...`.

- Each worker is warmed before it takes traffic (enrollment/warmup.py says why).
- Prometheus multiprocess mode, only when PROMETHEUS_MULTIPROC_DIR is set: the directory is emptied when the
  master starts (stale files of an earlier run would be added to the new counters) and a dead worker's live
  gauges are dropped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROC_DIR:
    # Imported here, in the master, before any worker exists. `child_exit` runs inside the master's SIGCHLD
    # handler: importing the module there for the first worker that exits can be interrupted by the signal of the
    # next one, whose handler then finds a half-imported module ("partially initialized module
    # 'prometheus_client.multiprocess' has no attribute 'mark_process_dead'", seen when both workers stopped) and
    # that worker's live gauges were never dropped.
    from prometheus_client import multiprocess

# Seconds an idle keep-alive connection stays open (gunicorn's default is 2). A client that reuses a connection
# just as the server closes it gets "connection reset" instead of an answer, and a POST is not retried by HTTP
# clients: `make bench` saw 1-2 of 6,000 webhook requests fail so at 400 req/s, each time after a slow spell had
# left pooled connections idle for over 2 s. The server must outlast the client's (or the proxy's) idle timeout:
# 75 s is above the common 60 s of load balancers. Idle connections cost the gthread worker no thread, only a
# place in its poller (worker_connections).
keepalive = int(os.environ.get("WEB_KEEPALIVE_SECONDS", "75"))

# gunicorn's access log, one line per request: "-" (stdout, the default here), a file, or empty for none. It costs
# the web process about 0.2 ms of CPU per webhook request at 200 req/s (1.25-1.69 ms against 1.61-1.71 with it,
# bench/analysis.md): where a load balancer or proxy in front already logs every request, turn it off. Accepted
# payments are logged by the webhook itself at INFO with their ids, refusals by django.request at WARNING.
accesslog = os.environ.get("WEB_ACCESS_LOG", "-") or None

# Where each worker keeps its heartbeat file, which it touches (os.utime) on every turn of its main loop: in memory
# (/dev/shm) rather than gunicorn's default, the temporary directory, which is on the disk here, beside
# PostgreSQL's WAL. A touch there can wait for the file system's journal, and while it waits the worker's main
# loop accepts nothing and hands no keep-alive connection back to its threads (gunicorn's documentation warns of
# this, "Blocking OS calls"). WEB_WORKER_TMP_DIR overrides it; empty means gunicorn's default.
worker_tmp_dir = os.environ.get("WEB_WORKER_TMP_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else "") or None


def on_starting(server: Any) -> None:
    if MULTIPROC_DIR:
        path = Path(MULTIPROC_DIR)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # only prometheus_client's files, whatever else the folder holds
            stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    if MULTIPROC_DIR:
        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    from enrollment.warmup import warm_threads, warm_up

    warm_up()
    pool = getattr(worker, "tpool", None)  # the gthread worker's thread pool, created before this hook
    if pool is not None:
        warm_threads(pool, worker.cfg.threads)
