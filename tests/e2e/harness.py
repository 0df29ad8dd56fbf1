"""Run the real pipeline for a test: every process of the Procfile as a subprocess, against the test database
and a topic prefix of the test's own."""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from django.conf import settings
from django.db import connection

from workers.kafka import admin_client, topic
from workers.kafka import group_lag as kafka_group_lag
from workers.registry import stages

ROOT = Path(__file__).resolve().parents[2]


def stage_groups() -> dict[str, tuple[str, list[str]]]:
    """Registered stage name -> (its consumer group, its base topics), from settings.PIPELINE_STAGES."""
    return {stage.name: (stage.group_id, list(stage.topics)) for stage in stages()}


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([a-z_]+):\s*(.+)$", line)
        if match:
            entries[match.group(1)] = match.group(2)
    return entries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pipeline:
    """The Procfile's processes, started with the environment of the current test."""

    def __init__(self, log_dir: Path, **extra_env: str) -> None:
        db = connection.settings_dict
        self.web_port = free_port()
        self.web_url = f"http://127.0.0.1:{self.web_port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "settings",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "KAFKA_TOPIC_PREFIX": settings.KAFKA_TOPIC_PREFIX,
            "CACHE_KEY_PREFIX": settings.CACHES["default"].get("KEY_PREFIX", ""),
            "ADMIN_SERVICE_URL": self.web_url,
            "WEB_PORT": str(self.web_port),
            "WEB_WORKERS": "2",
            "RETRY_BASE_SECONDS": "0.2",
            "RETRY_MAX_SECONDS": "2",
            "ALLOCATION_API_TIMEOUT_SECONDS": "5",
            "WORKER_BATCH_WAIT_SECONDS": "0.05",
            "LOG_LEVEL": "INFO",
            **{f"{name.upper()}_METRICS_PORT": "0" for name in ("relay", "dead_letters", *stage_groups())},
            **extra_env,
        }
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands = procfile()

    def start(self, *names: str) -> None:
        for name in names or self.commands:
            log = open(self.log_dir / f"{name}.log", "ab")
            self.processes[name] = subprocess.Popen(
                ["bash", "-c", f"exec {self.commands[name]}"], cwd=ROOT, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        if "web" in (names or self.commands):
            try:
                self.wait_for_web()
            except BaseException:
                self.stop()
                raise

    def wait_for_web(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.web_url + "/api/students/0/home", timeout=5)
                return
            except requests.RequestException:
                assert self.processes["web"].poll() is None, self.log("web")
                time.sleep(0.1)
        raise AssertionError("web did not start: " + self.log("web"))

    def stop(self, *names: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        for name in names or list(self.processes):
            proc = self.processes.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def running(self, name: str) -> bool:
        return name in self.processes and self.processes[name].poll() is None

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def wait_until(condition: Callable[[], object], timeout: float, message: str = "", interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {message}")
        time.sleep(interval)


def group_lag(group: str, base_topics: list[str]) -> int:
    """Messages the stage group has not committed yet, over every partition of its topics."""
    return sum(kafka_group_lag(topic(group), [topic(t) for t in base_topics]).values())


def rewind_groups_to_start() -> None:
    """Set every stage group's committed offsets back to 0 (the groups must have no live members)."""
    client = admin_client()
    metadata = client.list_topics(timeout=10)
    requests_ = []
    for group, base_topics in stage_groups().values():
        names = [topic(t) for t in base_topics]
        tps = [TopicPartition(n, p, 0) for n in names for p in metadata.topics[n].partitions]
        requests_.append(ConsumerGroupTopicPartitions(topic(group), tps))
    for request in requests_:  # the admin API takes one group per call
        for future in client.alter_consumer_group_offsets([request]).values():
            future.result(timeout=30)


def shell(command: str) -> str:
    return subprocess.run(shlex.split(command), cwd=ROOT, capture_output=True, text=True, check=True).stdout
