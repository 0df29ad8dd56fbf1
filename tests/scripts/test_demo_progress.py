"""`make demo`'s live progress line: shown from the first payment, with a rate over a sliding window (never the
"117096 enr/s" of a rate taken over no time at all)."""
import io
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from demo_progress import LiveProgress, status_line

COUNTS = {"payments": 0, "purchases_active": 0, "allocations_holding": 0, "enrolled": 0, "dead_letters": 0}


def test_the_first_frame_has_no_rate_and_later_ones_a_windowed_one():
    progress = LiveProgress(lambda: COUNTS, payments_planned=100)
    assert progress.rate(0.0, 0) is None  # one frame: no time has passed
    assert progress.rate(0.5, 300) is None  # under a second: still no rate
    for step in range(2, 21):  # then 100 enrollments a second, every half second
        rate = progress.rate(step * 0.5, 300 + (step - 1) * 50)
    assert rate == 100.0
    assert progress.rate(10.5, 1300) == 100.0  # over the last 5 s only: the burst at the start has left


def test_the_line_says_what_each_stage_has_done_and_the_expected_total_once_known():
    counts = {**COUNTS, "payments": 40, "purchases_active": 30, "allocations_holding": 25, "enrolled": 20,
              "dead_letters": 1}
    assert status_line(counts, 100, None) == ("payments 40/100 | purchased 30 | allocated 25 | enrolled 20 | "
                                              "- enr/s | dead letters 1")
    assert "enrolled 20/90 | 42 enr/s" in status_line({**counts, "expected": 90}, 100, 42.4)


def test_without_a_terminal_it_prints_lines_from_the_start():
    out = io.StringIO()
    progress = LiveProgress(lambda: {**COUNTS, "payments": 3}, payments_planned=10, out=out)
    progress.draw()
    assert out.getvalue() == "payments 3/10 | purchased 0 | allocated 0 | enrolled 0 | - enr/s | dead letters 0\n"
