"""Turn bench results into docs/benchmarks.md (tables + the hand-written analysis in bench/analysis.md) and a
PNG plot."""
from __future__ import annotations

from pathlib import Path

ANALYSIS = Path(__file__).resolve().parent / "analysis.md"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = results["stages"]
    names = list(stages)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = range(len(names))
    left.bar([x - 0.2 for x in xs], [stages[n]["batched"]["per_second"] for n in names], 0.4, label="batched (500)")
    left.bar([x + 0.2 for x in xs], [stages[n]["single"]["per_second"] for n in names], 0.4, label="one per txn")
    e2e = results["end_to_end"]["per_second"]
    left.axhline(e2e, color="black", linestyle="--", label=f"end to end {e2e}/s")
    left.set_xticks(list(xs), names)
    left.set_yscale("log")
    left.set_ylabel("events per second (log)")
    left.set_title("Throughput per stage")
    left.legend()
    web = results["webhook"]
    labels = ["p50", "p95", "p99", "max"]
    right.bar(labels, [web[f"{label}_ms"] for label in labels], color="tab:green")
    right.axhline(25, color="red", linestyle="--", label="target p99 25 ms")
    right.set_ylabel("ms")
    right.set_title(f"Webhook latency at {web['rate']} requests/s")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def _cancellations_row(r: dict) -> list[str]:
    if "cancellations" not in r:  # results of a run before the lifecycle
        return []
    c = r["cancellations"]
    return [f"| cancellations end to end, {c['cancellations']} refunds of finished enrollments (pre-produced "
            f"PURCHASE_CANCELLED) | **{c['per_second']}/s** ({c['seconds']} s until every allocation is released "
            "with its future sessions and the cache stage caught up) | — | — |"]


def _key_order_row(r: dict) -> list[str]:
    if "key_order" not in r:  # results of a run before key order
        return []
    k = r["key_order"]
    return [f"| key order's cost end to end, {k['purchases']} purchases, runs {k.get('order', 'off/on/on/off')} "
            f"(STAGE_ORDERING=none against the default) | off {', '.join(map(str, k['off_per_second']))}/s, on "
            f"{', '.join(map(str, k['on_per_second']))}/s: **{k['ratio']}x** | ≥ 0.9x | — |"]


def _cpu_note(ref: dict) -> str:
    """CPU microseconds per event of the stage and of the plain loop, where the run measured them."""
    stage, plain = ref["stage"].get("cpu_us_per_event"), ref["plain_loop"].get("cpu_us_per_event")
    if not stage or not plain:
        return ""
    parts = ", ".join(f"{name} {stage[name]} against {plain[name]}" for name in stage)
    return f"; CPU µs per event, stage against loop: {parts}"


def _webhook_row(web: dict, target: str) -> str:
    neighbour = ", next to a process spinning one core" if web.get("cpu_hog") else ""
    busy = web.get("cpu_ms_per_request", {}).get("machine_busy", "—")
    return (f"| webhook at {web['rate']} req/s{neighbour} ({web['requests']} requests from "
            f"{web.get('generator', 'vegeta')}, gunicorn 2 workers x 4 threads) | "
            f"p50 {web['p50_ms']} ms, p95 {web['p95_ms']} ms, **p99 {web['p99_ms']} ms**, {web['status_202']} of "
            f"{web['requests']} answered 202{_load_note(web)}; machine CPU {busy} ms per request | {target} | — |")


def _load_note(web: dict) -> str:
    """The generator's count, where it sent fewer than the schedule had (vegeta's pacer, in older results, stopped
    at the duration), the transport errors it saw (a request with no answer at all has no status), and how late it
    sent."""
    sent, errors = web.get("sent", web["requests"]), web.get("errors") or []
    parts = [f"{sent} sent"] if sent != web["requests"] else []
    parts += [f"errors: {'; '.join(errors[:3])}"] if errors else []
    late = web.get("send_late_ms")  # bench.loadgen: how late it sent, its own delay (not in the latencies)
    parts += [f"the generator sent p99 {late['p99']} ms, at most {late['max']} ms late"] if late else []
    return f" ({', '.join(parts)})" if parts else ""


def _vacuum_line(e2e: dict) -> list[str]:
    if e2e.get("vacuum_after_ms_per_purchase") is None:  # older results, or PostgreSQL on another machine
        return []
    return ["", f"The VACUUM (ANALYZE) of the run's own rows, run right after it (autovacuum's work, done by the bench "
            f"so that no phase pays another's: bench/common.py `quiet_database`): PostgreSQL "
            f"{e2e['vacuum_after_ms_per_purchase']} ms per purchase, not in the figures above."]


def _headroom_rows(r: dict) -> list[str]:
    """Issue 19's figures: rows only for what this run measured (older results lack them)."""
    rows = []
    e2e = r["end_to_end"]
    busy = e2e.get("cpu_ms_per_purchase", {}).get("machine_busy")
    if busy is not None:
        start_tps = r["pgbench"]["insert_tps"]
        around = r.get("pgbench_around_end_to_end")  # taken beside the run (bench.physical.between_pgbench_runs)
        reference = (f"the mean of pgbench just before and after it ({around['before']:,} and {around['after']:,} "
                     f"tps; {start_tps:,} at the start of the run: {round(e2e['per_second'] / start_tps, 3)}x)"
                     if around else "the same run's pgbench")  # older results have only the start-of-run figure
        ratio = round(e2e["per_second"] / (around or r["pgbench"])["insert_tps"], 3)
        rows.append(f"| end to end against {reference}, and machine CPU per purchase | **{ratio}x**, **{busy} ms** "
                    "| ≥ 0.3x, ≤ 1.2 ms | — |")
    if "purchases_reference" in r:
        ref = r["purchases_reference"]
        runs = (f" (runs {ref['order']}: stage {' and '.join(map(str, ref['stage_per_second']))}/s, loop "
                f"{' and '.join(map(str, ref['plain_loop_per_second']))}/s; means:)" if "order" in ref else "")
        rows.append(f"| purchases stage against a plain batched psycopg loop (bench/reference.py), {ref['events']} "
                    f"events each{runs} | {ref['stage']['per_second']}/s against {ref['plain_loop']['per_second']}/s:"
                    f" **{ref['ratio']}x**{_cpu_note(ref)} | ≥ 1.0x | — |")
    for key, target in (("webhook_400", "p99 < 50 ms"), ("webhook_hog", "p99 < 25 ms")):
        if key in r:
            rows.append(_webhook_row(r[key], target))
    # Sampled in key order's end-to-end runs (bench.pipeline.end_to_end says why); older results have it in
    # the headline run.
    key_order = r.get("key_order", {})
    runs = len(key_order.get("off_per_second", [])) + len(key_order.get("on_per_second", []))
    mem, during = ((key_order["memory"], f"key order's {runs} end-to-end runs, the largest") if "memory" in key_order
                   else (e2e.get("memory"), "the end-to-end run"))
    if mem:
        parts = ", ".join(f"{name} {mib:g}" for name, mib in mem["by_component_mib"].items())
        rows.append(f"| memory, peak during {during} (PSS summed over every process: {parts} MiB) | "
                    f"**{mem['peak_total_mib']:g} MiB** | < 1,536 MiB | — |")
    return rows


def write_markdown(r: dict, path: Path) -> None:
    m, k, pg, e2e, web = r["machine"], r["kafka_raw"], r["pgbench"], r["end_to_end"], r["webhook"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {r['when']}: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
        f"{m['os']}, Python {m['python']}. Broker, PostgreSQL, Redis, the web app, the consumers and the load "
        "generator all share these cores. One run; the VM is noisy (expect ±30%), so compare figures of one run.",
        "Raw figures: `bench/results/benchmarks.json`.",
        "",
        "![throughput and latency](benchmarks.png)",
        "",
        "## Headline",
        "",
        "| what | measured | target | physical reference (same run) |",
        "|---|---|---|---|",
        f"| end to end, {e2e['purchases']} pre-produced purchases | **{e2e['per_second']}/s** "
        f"({e2e['seconds']} s to the last session and cache invalidation) | 1,000/s | "
        f"Kafka consume {k['consume_per_second']:,}/s, produce {k['produce_per_second']:,}/s; "
        f"pgbench single-row INSERT {pg['insert_tps']:,} tps |",
        *_cancellations_row(r),
        *_key_order_row(r),
        _webhook_row(web, "p99 < 25 ms, ≤ 3 ms CPU"),
        *_headroom_rows(r),
        "",
        "## Per stage: batched versus one event per transaction (same run)",
        "",
        "| stage | batched events/s | one-at-a-time events/s | ratio | vs pgbench INSERT tps |",
        "|---|---|---|---|---|",
    ]
    for name, s in r["stages"].items():
        lines.append(f"| {name} | {s['batched']['per_second']} ({s['batched']['events']} events) | "
                     f"{s['single']['per_second']} ({s['single']['events']} events) | **{s['ratio']}x** | "
                     f"{round(s['batched']['per_second'] / pg['insert_tps'], 2)}x |")
    lines += [
        "",
        f"End to end, measured on the database clock (first purchase to last session): "
        f"{e2e['db_span_seconds']} s, {e2e['per_second_db_span']} purchases/s.",
        "",
        "## Where the CPU went (CPU ms per purchase end to end, per request for the webhook)",
        "",
        "Read from /proc for each process tree during the measured interval (bench/cpu.py). `machine_busy` is the",
        "whole machine, the load generator and everything else included; two cores give 2,000 ms of CPU per",
        "second, so 1,000 purchases/s leave 2.0 ms per purchase for everything.",
        "",
        "| component | end to end, ms per purchase | webhook, ms per request |",
        "|---|---|---|",
        *[f"| {name} | {e2e.get('cpu_ms_per_purchase', {}).get(name, '—')} | "
          f"{web.get('cpu_ms_per_request', {}).get(name, '—')} |"
          for name in dict.fromkeys([*e2e.get("cpu_ms_per_purchase", {}), *web.get("cpu_ms_per_request", {})])],
        *_vacuum_line(e2e),
        "",
        f"## Profile of the slowest stage ({r['profile']['stage']}, py-spy, self time)",
        "",
        "From a run of its own after the others (the profiler takes CPU from the pipeline it samples): "
        f"{r['profile'].get('per_second', '—')} purchases/s with py-spy attached.",
        "",
        "| function | % of samples |",
        "|---|---|",
        *[f"| `{frame}` | {pct} |" for frame, pct in r["profile"]["top_self_time_percent"]],
        "",
    ]
    if ANALYSIS.exists():
        lines.append(ANALYSIS.read_text())
    path.write_text("\n".join(lines) + "\n")
