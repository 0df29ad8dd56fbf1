"""The short chaos run (bench/chaos.py --short) as part of the suite: 300 enrollments while consumers and the
relay are SIGKILLed and restarted, the broker and PostgreSQL restart, Redis stops, and the allocation API fails
or hangs for a share of calls; every invariant must hold afterwards."""
import json
import subprocess

import pytest
from django.db import connections

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_short_chaos_run_keeps_every_invariant(tmp_path):
    report_path = tmp_path / "chaos.json"
    try:
        run = subprocess.run([str(ROOT / ".venv/bin/python"), "bench/chaos.py", "--short", "--report",
                              str(report_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        connections.close_all()  # PostgreSQL restarted under us: reconnect on next use
    report = json.loads(report_path.read_text())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert report["ok"] and all(report["checks"].values()), report["checks"]
    kinds = {fault["fault"] for fault in report["faults"]}
    assert {"SIGKILL", "restart Kafka broker", "restart PostgreSQL", "stop Redis"} <= kinds
    assert report["sender"]["gave_up"] == 0
