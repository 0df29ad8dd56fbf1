"""`make bench`: every benchmark in one run on the local stack; writes docs/benchmarks.md,
bench/results/benchmarks.json and docs/benchmarks.png.

Scale with BENCH_E2E (default 20000 purchases), BENCH_STAGE (5000 batched) and BENCH_SINGLE (1000 one at a time).
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
    from bench import lifecycle, physical, pipeline, reference, stages

    print(f"deleted {drop_topics(keep=own)} topics of earlier bench runs", flush=True)

    n_e2e = int(os.environ.get("BENCH_E2E", 20000))
    n_stage = int(os.environ.get("BENCH_STAGE", 5000))
    n_single = int(os.environ.get("BENCH_SINGLE", 1000))
    n_cancel = int(os.environ.get("BENCH_CANCEL", 5000))
    results: dict = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    print("physical references ...", flush=True)
    results["kafka_raw"] = physical.kafka_raw()
    results["pgbench"] = physical.pgbench_inserts()
    print(results["kafka_raw"], results["pgbench"], flush=True)

    # A broker that started minutes ago (make bench starts the stack) spends 2-4x its steady CPU per request while
    # its JIT compiles its request paths; production brokers run for weeks. 30 s of webhook load first, before
    # every phase measured on the broker (a stage run right after a start paid 82 us of broker CPU per event, its
    # plain loop 4), kept in the results (webhook_warmup) but not a figure.
    print("warm-up: webhook load, 200 req/s for 30 s ...", flush=True)
    results["webhook_warmup"] = pipeline.webhook_load(env, LOGS, seconds=30)
    print({k: results["webhook_warmup"][k] for k in ("p99_ms", "cpu_ms_per_request")}, flush=True)

    web = pipeline.Processes(env, LOGS)
    web.start("web")
    pipeline.wait_for_web(env["ADMIN_SERVICE_URL"])
    results["stages"] = {}
    try:
        for name in stages.names():
            print(f"stage {name} ...", flush=True)
            results["stages"][name] = stages.compare(name, n_stage, n_single)
            print(results["stages"][name], flush=True)
        print(f"purchases stage against a plain psycopg loop, {n_e2e} events each ...", flush=True)
        results["purchases_reference"] = reference.compare(n_e2e)
        print(results["purchases_reference"], flush=True)
    finally:
        web.stop()
    print("webhook under load: 200 req/s, 400 req/s, 200 req/s next to a process spinning one core ...", flush=True)
    results["webhook"] = pipeline.webhook_load(env, LOGS)
    results["webhook_400"] = pipeline.webhook_load(env, LOGS, rate=400)
    results["webhook_hog"] = pipeline.webhook_load(env, LOGS, hog=True)
    for key in ("webhook", "webhook_400", "webhook_hog"):
        print(results[key], flush=True)
    drop_topics(keep=own)  # the phases before left theirs; the end-to-end run's memory peak is measured next
    slowest = min(results["stages"], key=lambda s: results["stages"][s]["batched"]["per_second"])
    print(f"end to end, {n_e2e} purchases ...", flush=True)
    results["end_to_end"] = pipeline.end_to_end(n_e2e, env, LOGS)
    print(results["end_to_end"], flush=True)
    print(f"key order: end to end off, on, on, off ({n_e2e} purchases each) ...", flush=True)
    results["key_order"] = pipeline.key_order_cost(n_e2e, env, LOGS)
    print(results["key_order"], flush=True)
    print(f"cancellations end to end, {n_cancel} refunds ...", flush=True)
    results["cancellations"] = lifecycle.cancellations_end_to_end(n_cancel, env, LOGS)
    print(results["cancellations"], flush=True)
    # Its own run: py-spy takes CPU from the pipeline it samples (8-11% of the end-to-end rate, measured).
    print(f"profile: end to end, {n_e2e} purchases, py-spy on the slowest stage ({slowest}) ...", flush=True)
    profiled = pipeline.end_to_end(n_e2e, env, LOGS, profile_stage=slowest)
    results["profile"] = {"stage": slowest, "per_second": profiled["per_second"],
                          "top_self_time_percent": top_frames(LOGS / f"profile-{slowest}.folded")}
    print(results["profile"], flush=True)

    drop_topics()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "benchmarks.json").write_text(json.dumps(results, indent=2))
    from bench.report import plot, write_markdown

    plot(results, ROOT / "docs" / "benchmarks.png")
    write_markdown(results, ROOT / "docs" / "benchmarks.md")
    print("wrote docs/benchmarks.md, docs/benchmarks.png, bench/results/benchmarks.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
