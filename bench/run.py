"""`make bench`: every benchmark in one run on the local stack; writes docs/benchmarks.md,
bench/results/benchmarks.json and docs/benchmarks.png.

Scale with BENCH_E2E (default 20000 purchases), BENCH_STAGE (5000 batched), BENCH_SINGLE (1000 one at a time)
and BENCH_CANCEL (5000 refunds).
"""
from __future__ import annotations

import collections
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, drop_topics, machine, setup

RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "var" / "bench"


def top_frames(folded: Path, limit: int = 12) -> list[tuple[str, float]]:
    """The functions where the profiled process spent its samples (self time), from py-spy's folded output."""
    if not folded.exists():
        return []
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():  # a frame name with a line break in it (py-spy prints some names as read)
            continue
        leaf = stack.split(";")[-1]
        counts[leaf] += int(n)
        total += int(n)
    return [(frame, round(100 * n / total, 1)) for frame, n in counts.most_common(limit)] if total else []


def main() -> int:
    port = int(os.environ.get("BENCH_WEB_PORT", "8765"))
    os.environ["ADMIN_SERVICE_URL"] = f"http://127.0.0.1:{port}"
    os.environ["WEB_PORT"] = str(port)
    own = f"bench-{int(time.time())}."
    env = setup(own)
    print(f"deleted {drop_topics(keep=own)} topics of earlier bench runs", flush=True)

    sizes = {name: int(os.environ.get(f"BENCH_{name.upper()}", default))
             for name, default in (("e2e", 20000), ("stage", 5000), ("single", 1000), ("cancel", 5000))}
    results: dict = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    physical_references(results, env)
    stage_phases(results, env, sizes)
    webhook_phases(results, env)
    drop_topics(keep=own)  # the phases before left theirs; the end-to-end runs' memory peak is measured next
    end_to_end_phases(results, env, sizes)
    drop_topics()
    write_results(results)
    return 0


def physical_references(results: dict, env: dict[str, str]) -> None:
    """What the broker and PostgreSQL do at all, then the broker's warm-up."""
    from bench import physical, webhook

    print("physical references ...", flush=True)
    results["kafka_raw"] = physical.kafka_raw()
    results["pgbench"] = physical.pgbench_inserts()
    print(results["kafka_raw"], results["pgbench"], flush=True)
    # A broker that started minutes ago (make bench starts the stack) spends 2-4x its steady CPU per request while
    # its JIT compiles its request paths (less since the stack's broker stops at C1: bench/analysis.md); production
    # brokers run for weeks. 30 s of webhook load first, before every phase measured on the broker (a stage run
    # right after a start paid 82 us of broker CPU per event, its plain loop 4), kept in the results
    # (webhook_warmup) but not a figure.
    print("warm-up: webhook load, 200 req/s for 30 s ...", flush=True)
    results["webhook_warmup"] = webhook.webhook_load(env, LOGS, seconds=30)
    print({k: results["webhook_warmup"][k] for k in ("p99_ms", "cpu_ms_per_request")}, flush=True)


def stage_phases(results: dict, env: dict[str, str], sizes: dict[str, int]) -> None:
    """Each stage alone, batched and one at a time, then the purchases stage against the plain loop."""
    from bench import pipeline, reference, stages

    web = pipeline.Processes(env, LOGS)
    web.start("web")
    pipeline.wait_for_web(env["ADMIN_SERVICE_URL"])
    results["stages"] = {}
    try:
        for name in stages.names():
            print(f"stage {name} ...", flush=True)
            results["stages"][name] = stages.compare(name, sizes["stage"], sizes["single"])
            print(results["stages"][name], flush=True)
        print(f"purchases stage against a plain psycopg loop, {sizes['e2e']} events each ...", flush=True)
        results["purchases_reference"] = reference.compare(sizes["e2e"])
        print(results["purchases_reference"], flush=True)
    finally:
        web.stop()


def webhook_phases(results: dict, env: dict[str, str]) -> None:
    from bench import webhook

    print("webhook under load: 200 req/s, 400 req/s, 200 req/s next to a process spinning one core ...", flush=True)
    results["webhook"] = webhook.webhook_load(env, LOGS)
    results["webhook_400"] = webhook.webhook_load(env, LOGS, rate=400)
    results["webhook_hog"] = webhook.webhook_load(env, LOGS, hog=True)
    for key in ("webhook", "webhook_400", "webhook_hog"):
        print(results[key], flush=True)


def end_to_end_phases(results: dict, env: dict[str, str], sizes: dict[str, int]) -> None:
    """The headline end-to-end run between two pgbench runs, key order's cost, cancellations, and a profiled run."""
    from bench import lifecycle, physical, pipeline

    n_e2e = sizes["e2e"]
    slowest = min(results["stages"], key=lambda s: results["stages"][s]["batched"]["per_second"])
    print(f"end to end, {n_e2e} purchases, between two pgbench runs ...", flush=True)
    results["end_to_end"], results["pgbench_around_end_to_end"] = physical.between_pgbench_runs(
        lambda: pipeline.end_to_end(n_e2e, env, LOGS))
    print(results["end_to_end"], results["pgbench_around_end_to_end"], flush=True)
    print(f"key order: end to end {', '.join(pipeline.KEY_ORDER_RUNS)} ({n_e2e} purchases each) ...", flush=True)
    results["key_order"] = pipeline.key_order_cost(n_e2e, env, LOGS)
    print(results["key_order"], flush=True)
    print(f"cancellations end to end, {sizes['cancel']} refunds ...", flush=True)
    results["cancellations"] = lifecycle.cancellations_end_to_end(sizes["cancel"], env, LOGS)
    print(results["cancellations"], flush=True)
    # Its own run: py-spy takes CPU from the pipeline it samples (8-11% of the end-to-end rate, measured).
    print(f"profile: end to end, {n_e2e} purchases, py-spy on the slowest stage ({slowest}) ...", flush=True)
    profiled = pipeline.end_to_end(n_e2e, env, LOGS, profile_stage=slowest)
    results["profile"] = {"stage": slowest, "per_second": profiled["per_second"],
                          "top_self_time_percent": top_frames(LOGS / f"profile-{slowest}.folded")}
    print(results["profile"], flush=True)


def write_results(results: dict) -> None:
    from bench.report import plot, write_markdown

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "benchmarks.json").write_text(json.dumps(results, indent=2))
    plot(results, ROOT / "docs" / "benchmarks.png")
    write_markdown(results, ROOT / "docs" / "benchmarks.md")
    print("wrote docs/benchmarks.md, docs/benchmarks.png, bench/results/benchmarks.json")

if __name__ == "__main__":
    sys.exit(main())
