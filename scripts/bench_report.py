#!/usr/bin/env python3
"""Turns bench_mlp's Google Benchmark JSON into the ratio report (python3 standard library only).

Usage: bench_report.py [--results DIR] [--command CMD] PASS.json [PASS.json ...]

Each JSON is one pass of bench_mlp (one thread count). For every pass it prints, and writes to
DIR/RESULTS.md, the machine facts that move the figures (CPU, OpenBLAS build and core, thread
counts, libtorch, dlib, load) and the tables: per workload the median step time of the floor,
wengert, libtorch and dlib, wengert/floor, wengert/libtorch and wengert/dlib, allocations per
step and peak memory; the OP chain in ns per op (no dlib there). The first pass is the primary one: its figures are checked against the
targets. A gnuplot PNG of the ratios (DIR/bench_ratios.png, log scale) is drawn when gnuplot is
installed.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys

# wengert/floor targets (step-interleaved medians, 1 thread; issue 15), the 2-thread pass's
# targets, and the OP chain's wengert/plain-loop targets. Each applies to both ways of running a
# step: recorded every step ("wengert") and recorded once then replayed ("replay").
RATIO_TARGETS = {"S0": 1.10, "S1": 1.10, "S2": 1.03, "S3": 1.02}
RATIO_TARGETS_2T = {"S2": 1.03, "S3": 1.03}
OP_TARGETS = {"1x1": 1.35, "8x8": 2.0}
MLP_CONTENDERS = ["floor", "wengert", "libtorch", "dlib"]
OP_CONTENDERS = ["plain", "wengert", "libtorch"]


def load_pass(path):
    with open(path) as f:
        data = json.load(f)
    ctx = data.get("context", {})
    runs = {}  # (kind, workload, contender) -> {"median": {...}, "cv": {...}}
    for b in data.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        name = re.sub(r"/real_time$", "", name)
        parts = name.split("/")
        if len(parts) != 3:
            continue
        key = tuple(parts)
        agg = b.get("aggregate_name") if b.get("run_type") == "aggregate" else "iteration"
        entry = runs.setdefault(key, {})
        if agg == "iteration":
            entry.setdefault("iterations", []).append(b)
        else:
            entry[agg] = b
    for entry in runs.values():
        if "median" not in entry and entry.get("iterations"):
            its = sorted(entry["iterations"], key=lambda r: r["real_time"])
            entry["median"] = its[len(its) // 2]
    return {"path": path, "context": ctx, "runs": runs}


def to_us(b):
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
    return b["real_time"] * scale


def fmt_time(us):
    if us is None:
        return "—"
    if us >= 1000:
        return f"{us / 1000:.3g} ms" if us < 1e5 else f"{us / 1000:.0f} ms"
    return f"{us:.3g} µs"


def fmt_mib(mib):
    if mib is None:
        return "—"
    if mib < 1:
        return f"{mib * 1024:.0f} KiB"
    return f"{mib:.1f} MiB"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.3f}" if r < 10 else f"{r:.0f}"


def median(p, kind, wl, who):
    e = p["runs"].get((kind, wl, who))
    return to_us(e["median"]) if e and "median" in e else None


def median_cpu(p, kind, wl, who):
    e = p["runs"].get((kind, wl, who))
    if not e or "median" not in e:
        return None
    b = e["median"]
    scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[b.get("time_unit", "ns")]
    return b["cpu_time"] * scale


def cv(p, kind, wl, who):
    e = p["runs"].get((kind, wl, who))
    if not e or "cv" not in e:
        return None
    return e["cv"]["real_time"] * 100.0  # a fraction in the JSON


def counter(p, kind, wl, who, name):
    e = p["runs"].get((kind, wl, who))
    if not e or "median" not in e:
        return None
    return e["median"].get(name)


def ratio(a, b):
    return a / b if a is not None and b else None


def describe(ctx, wl):
    m = re.match(r"\S+ \(([^)]*)\)", ctx.get(f"check_{wl}", ""))
    return m.group(1) if m else ""


def facts(p):
    c = p["context"]
    lines = [
        f"- CPU: {c.get('cpu_model', '?')}, {c.get('num_cpus', '?')} logical CPUs, "
        f"{c.get('mhz_per_cpu', '?')} MHz",
        f"- OpenBLAS: {c.get('blas_config', '?')}; core in use {c.get('blas_core', '?')}; "
        f"OPENBLAS_CORETYPE={c.get('OPENBLAS_CORETYPE', '?')}",
        f"- Threads: OPENBLAS_NUM_THREADS={c.get('OPENBLAS_NUM_THREADS', '?')} "
        f"(OpenBLAS reports {c.get('blas_threads', '?')}); {c.get('torch', 'libtorch ?')}; "
        f"OMP_WAIT_POLICY={c.get('OMP_WAIT_POLICY', '?')}; {c.get('dlib', 'dlib ?')}",
        f"- Build: {c.get('compiler', '?')}, -O3 -march=native, xsimd arch "
        f"{c.get('xsimd_arch', '?')}; Google Benchmark {c.get('library_version', '?')}"
        + (" (Debian's library reports a DEBUG build; it is the harness, not the code timed)"
           if c.get("library_build_type") == "debug" else ""),
        f"- Load average at the start of this pass: {c.get('loadavg_at_start', '?')}"
        + (f"; after it: {p['load_after']}" if p.get("load_after") else ""),
        f"- Run: {c.get('date', '?')}, {p['path']}",
    ]
    return lines


def mlp_rows(p):
    ctx = p["context"]
    rows = []
    for wl in ["S0", "S1", "S2", "S3"]:
        t = {who: median(p, "MLP", wl, who) for who in MLP_CONTENDERS}
        if all(v is None for v in t.values()):
            continue
        rows.append({
            "wl": wl, "desc": describe(ctx, wl), "t": t,
            "cv": {who: cv(p, "MLP", wl, who) for who in MLP_CONTENDERS},
            "wf": ratio(t["wengert"], t["floor"]), "wt": ratio(t["wengert"], t["libtorch"]),
            "wd": ratio(t["wengert"], t["dlib"]),
            # The step-interleaved run (MLP/<wl>/paired): medians of per-step times taken in
            # turns, so that a load change hits every contender alike.
            "p": {who: counter(p, "MLP", wl, "paired", f"{who}_us") for who in MLP_CONTENDERS},
            "pf": counter(p, "MLP", wl, "paired", "wengert/floor"),
            "pf_cpu": counter(p, "MLP", wl, "paired", "wengert/floor_cpu"),
            "pt": counter(p, "MLP", wl, "paired", "wengert/libtorch"),
            "pd": counter(p, "MLP", wl, "paired", "wengert/dlib"),
            "pr_us": counter(p, "MLP", wl, "paired", "replay_us"),
            "pr": counter(p, "MLP", wl, "paired", "replay/floor"),
            "allocs": {who: counter(p, "MLP", wl, who, "allocs_per_step") for who in MLP_CONTENDERS},
            "heap": {who: counter(p, "MLP", wl, who, "heap_peak_MiB") for who in MLP_CONTENDERS},
            "rss": {who: counter(p, "MLP", wl, who, "rss_peak_MiB") for who in MLP_CONTENDERS},
        })
    return rows


def op_rows(p):
    rows = []
    for side in ["1x1", "8x8"]:
        # 1,000 ops per iteration: µs per iteration = ns per op.
        ns = {who: median(p, "OP", side, who) for who in OP_CONTENDERS}
        if all(v is None for v in ns.values()):
            continue
        rows.append({
            "wl": side, "ns": ns, "cv": {who: cv(p, "OP", side, who) for who in OP_CONTENDERS},
            "wp": ratio(ns["wengert"], ns["plain"]), "wt": ratio(ns["wengert"], ns["libtorch"]),
            # step-interleaved (OP/<side>/paired): ns per op, real and CPU time
            "p": {who: counter(p, "OP", side, "paired", f"{who}_ns_per_op") for who in OP_CONTENDERS},
            "p_cpu": {who: counter(p, "OP", side, "paired", f"{who}_ns_per_op_cpu")
                      for who in OP_CONTENDERS},
            "pp": counter(p, "OP", side, "paired", "wengert/plain"),
            "pt": counter(p, "OP", side, "paired", "wengert/libtorch"),
            "pr_ns": counter(p, "OP", side, "paired", "replay_ns_per_op"),
            "pr": counter(p, "OP", side, "paired", "replay/plain"),
            "allocs": {who: counter(p, "OP", side, who, "allocs_per_step") for who in OP_CONTENDERS},
            "heap": {who: counter(p, "OP", side, who, "heap_peak_MiB") for who in OP_CONTENDERS},
        })
    return rows


def fmt_allocs(a):
    if a is None:
        return "—"
    return f"{a:.0f}" if a == int(a) else f"{a:.1f}"


def fmt_cv(c):
    return "" if c is None else f" ±{c:.0f}%" if c >= 1 else f" ±{c:.1f}%"


def md_tables(p, primary):
    out = []
    mrows, orows = mlp_rows(p), op_rows(p)
    one = thread_label(p) == "1"

    def verdict(x, ok):
        if not primary or x is None:
            return ""
        return " ✓" if ok(x) else " ✗"

    # Primary table: the step-interleaved run (times and ratios from the same measurement).
    out.append("| workload | floor | wengert | replay | libtorch | dlib | **wengert/floor** | "
               "**replay/floor** | target | **wengert/libtorch** | **wengert/dlib** | allocs/step "
               "(floor, wengert, libtorch, dlib) | peak heap (floor, wengert, libtorch, dlib) |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
               "| ---: |")
    targets = RATIO_TARGETS if one else RATIO_TARGETS_2T
    for r in mrows:
        tgt = targets.get(r["wl"])
        wf = fmt_ratio(r["pf"]) + verdict(r["pf"], lambda x: tgt is not None and x <= tgt)
        wr = fmt_ratio(r["pr"]) + verdict(r["pr"], lambda x: tgt is not None and x <= tgt)
        if one and r["pf_cpu"] is not None:
            wf += f" (CPU {fmt_ratio(r['pf_cpu'])})"
        wt = fmt_ratio(r["pt"]) + verdict(r["pt"], lambda x: x < 1)
        wd = fmt_ratio(r["pd"])
        allocs = ", ".join(fmt_allocs(r["allocs"][w]) for w in MLP_CONTENDERS)
        heap = ", ".join(fmt_mib(r["heap"][w]) for w in MLP_CONTENDERS)
        out.append(f"| {r['wl']}: {r['desc']} | {fmt_time(r['p']['floor'])} | "
                   f"{fmt_time(r['p']['wengert'])} | {fmt_time(r['pr_us'])} | "
                   f"{fmt_time(r['p']['libtorch'])} | "
                   f"{fmt_time(r['p']['dlib'])} | {wf} | {wr} | "
                   f"{'≤ ' + str(tgt) if tgt else '—'} | {wt} | {wd} | {allocs} | {heap} |")
    out.append("")
    # Cross-check: the same steps as separate benchmarks (each contender on its own).
    out.append("| separate benchmarks | floor | wengert | libtorch | dlib | wengert/floor | "
               "wengert/libtorch | wengert/dlib |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in mrows:
        out.append(
            f"| {r['wl']} | "
            + " | ".join(f"{fmt_time(r['t'][w])}{fmt_cv(r['cv'][w])}" for w in MLP_CONTENDERS)
            + f" | {fmt_ratio(r['wf'])} | {fmt_ratio(r['wt'])} | {fmt_ratio(r['wd'])} |")
    out.append("")
    out.append("| OP: 1,000 ops (tanh, ·w), record + backward | plain loop | wengert | replay | "
               "libtorch | **wengert/plain** | **replay/plain** | target | **wengert/libtorch** | "
               "allocs/step (wengert, libtorch) | separate benchmarks: plain, wengert, libtorch |")
    out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in orows:
        tgt = OP_TARGETS.get(r["wl"])

        def ns(v):
            return "—" if v is None else f"{v:.1f} ns/op"

        w = ns(r["p"]["wengert"])
        if one and r["p_cpu"]["wengert"] is not None:
            w += f" (CPU {r['p_cpu']['wengert']:.1f})"
        sep = ", ".join(("—" if r["ns"][c] is None else f"{r['ns'][c]:.1f}")
                        + fmt_cv(r["cv"][c]) for c in OP_CONTENDERS)
        ok = (lambda x: tgt is not None and x <= tgt) if one else (lambda x: False)
        out.append(
            f"| [{r['wl'].replace('x', ',')}] | {ns(r['p']['plain'])} | {w} | {ns(r['pr_ns'])} | "
            f"{ns(r['p']['libtorch'])} | {fmt_ratio(r['pp'])}{verdict(r['pp'], ok) if one else ''} | "
            f"{fmt_ratio(r['pr'])}{verdict(r['pr'], ok) if one else ''} | "
            f"{'≤ ' + str(tgt) if tgt and one else '—'} | "
            f"{fmt_ratio(r['pt'])}{verdict(r['pt'], lambda x: x < 1)} | "
            f"{fmt_allocs(r['allocs']['wengert'])}, {fmt_allocs(r['allocs']['libtorch'])} | "
            f"{sep} |")
    out.append("")
    out.append("| process peak RSS | floor | wengert | libtorch | dlib |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for r in mrows:
        out.append(f"| {r['wl']} | " + " | ".join(fmt_mib(r["rss"][w]) for w in MLP_CONTENDERS)
                   + " |")
    return out


def target_summary(p, targets=None):
    """Lines saying which targets the pass met (the primary pass, or with `targets` the 2-thread
    pass's wengert/floor targets only)."""
    lines = []
    if targets is not None:
        for r in mlp_rows(p):
            tgt = targets.get(r["wl"])
            if tgt is None:
                continue
            for key, what in (("pf", "wengert/floor"), ("pr", "replay/floor")):
                if r[key] is not None:
                    lines.append(f"- {thread_label(p)} threads, {r['wl']} {what} (target ≤ {tgt}): "
                                 f"{r[key]:.3f}, " + ("met" if r[key] <= tgt else "MISSED"))
        return lines
    for r in mlp_rows(p):
        tgt = RATIO_TARGETS.get(r["wl"])
        for key, sep, what, bound, ok in (
                ("pf", "wf", "wengert/floor", f"≤ {tgt}", lambda x: tgt is not None and x <= tgt),
                ("pt", "wt", "wengert/libtorch", "< 1", lambda x: x < 1)):
            if r[key] is None and r[sep] is None:
                continue
            line = f"- {r['wl']} {what} (target {bound}): "
            if r[key] is not None:
                line += f"{r[key]:.3f} step-interleaved, " + ("met" if ok(r[key]) else "MISSED")
            if r[sep] is not None:
                line += (f"; {r[sep]:.3f} in separate benchmarks, "
                         + ("met" if ok(r[sep]) else "missed"))
            lines.append(line)
        if r["pr"] is not None:
            lines.append(f"- {r['wl']} replay/floor (target ≤ {tgt}): {r['pr']:.3f} "
                         "step-interleaved, " + ("met" if r["pr"] <= tgt else "MISSED"))
        if r["pd"] is not None or r["wd"] is not None:
            line = f"- {r['wl']} wengert/dlib (no target; the Debian dlib peer): "
            parts = []
            if r["pd"] is not None:
                parts.append(f"{r['pd']:.3f} step-interleaved")
            if r["wd"] is not None:
                parts.append(f"{r['wd']:.3f} in separate benchmarks")
            lines.append(line + "; ".join(parts))
    for r in op_rows(p):
        tgt = OP_TARGETS.get(r["wl"])
        for key, what in (("pp", "wengert/plain loop"), ("pr", "replay/plain loop")):
            if r[key] is not None and tgt is not None:
                lines.append(f"- OP [{r['wl'].replace('x', ',')}] {what} (target ≤ {tgt}): "
                             f"{r[key]:.3f} step-interleaved, "
                             + ("met" if r[key] <= tgt else "MISSED"))
        t = r["pt"] if r["pt"] is not None else r["wt"]
        if t is not None:
            lines.append(f"- OP [{r['wl'].replace('x', ',')}] wengert/libtorch {t:.4f} "
                         "(target < 1): " + ("met" if t < 1 else "MISSED"))
    # What the floor allocates too is the BLAS library's (OpenBLAS's threaded GEMM driver
    # allocates a job buffer per call), not wengert's.
    bad = []
    for r in mlp_rows(p):
        a, f = r["allocs"]["wengert"], r["allocs"]["floor"] or 0
        if a is not None and a > f:
            bad.append(f"{r['wl']}: {a:g} (floor {f:g})")
    for r in op_rows(p):
        a = r["allocs"]["wengert"]
        if a:
            bad.append(f"OP {r['wl']}: {a:g}")
    lines.append("- wengert heap allocations per steady-state step (beyond the BLAS library's "
                 "own, which the floor shows too): "
                 + ("0 on every workload (met)" if not bad else "MISSED (" + ", ".join(bad) + ")"))
    return lines


def checks(p):
    c = p["context"]
    return [f"- {c[k]}" for k in sorted(c) if k.startswith("check_")]


def thread_label(p):
    c = p["context"]
    return c.get("bench_threads", c.get("OPENBLAS_NUM_THREADS", "?"))


def write_chart(passes, results):
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("bench_report: gnuplot not found; no chart", file=sys.stderr)
        return None
    groups = ["S0", "S1", "S2", "S3", "OP 1x1", "OP 8x8"]
    cols = []
    for p in passes:
        t = thread_label(p)
        vf, vt, vd, vr = {}, {}, {}, {}
        for r in mlp_rows(p):  # the step-interleaved ratios where measured (steadier)
            vr[r["wl"]] = r["pr"]
            vf[r["wl"]] = r["pf"] if r["pf"] is not None else r["wf"]
            vt[r["wl"]] = r["pt"] if r["pt"] is not None else r["wt"]
            vd[r["wl"]] = r["pd"] if r["pd"] is not None else r["wd"]
        for r in op_rows(p):
            vf["OP " + r["wl"]] = r["pp"] if r["pp"] is not None else r["wp"]
            vr["OP " + r["wl"]] = r["pr"]
            vt["OP " + r["wl"]] = r["pt"] if r["pt"] is not None else r["wt"]
        thr = f"{t} thread" + ("" if t == "1" else "s")
        cols.append((f"wengert/floor, {thr}", vf))
        cols.append((f"replay/floor, {thr}", vr))
        cols.append((f"wengert/libtorch, {thr}", vt))
        cols.append((f"wengert/dlib, {thr}", vd))
    dat = os.path.join(results, "bench_ratios.dat")
    with open(dat, "w") as f:
        f.write("group " + " ".join(f'"{name}"' for name, _ in cols) + "\n")
        for g in groups:
            vals = [v.get(g) for _, v in cols]
            f.write(f'"{g}" ' + " ".join("NaN" if x is None else f"{x:.6g}" for x in vals) + "\n")
    png = os.path.join(results, "bench_ratios.png")
    # floor ratios blue, replay purple, libtorch orange, dlib green; the first (primary) pass
    # dark, the next light
    colors = [["#1f6fb4", "#6a3d9a", "#d9541e", "#2e8b3e"],
              ["#8fbbe0", "#cab2d6", "#f0a47e", "#96d1a0"]]
    plots = ", ".join(
        f"'{dat}' using {i + 2}:xtic(1) title columnheader({i + 2}) "
        f"lc rgb '{colors[min(i // 4, 1)][i % 4]}'"
        for i in range(len(cols)))
    script = f"""
set terminal pngcairo size 1100,540 font ',10'
set output '{png}'
set title "wengert time (recorded every step, and replayed) relative to the hand-written OpenBLAS floor (plain loop for OP), to libtorch and to dlib\\n(step-interleaved medians; lower is better; log scale; dlib has no OP chain)"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set logscale y
set yrange [0.005:20]
set ytics (0.01, 0.03, 0.1, 0.3, 1, 1.5, 3, 10)
set grid ytics
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb 'black' lw 1.5
plot {plots}
"""
    gp = os.path.join(results, "bench_ratios.gp")
    with open(gp, "w") as f:
        f.write(script)
    try:
        subprocess.run([gnuplot, gp], check=True)
    except subprocess.CalledProcessError as e:
        print(f"bench_report: gnuplot failed: {e}", file=sys.stderr)
        return None
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsons", nargs="+")
    ap.add_argument("--results", default=".", help="directory for RESULTS.md and the chart")
    ap.add_argument("--command", default="bash scripts/bench.sh")
    a = ap.parse_args()
    passes = [load_pass(j) for j in a.jsons]
    for p in passes:
        t = thread_label(p)
        after = os.path.join(os.path.dirname(p["path"]), f"loadavg_{t}t_after.txt")
        if os.path.exists(after):
            p["load_after"] = open(after).read().strip()
    os.makedirs(a.results, exist_ok=True)
    png = write_chart(passes, a.results)

    md = ["# wengert benchmark results", "",
          "MLP training steps (forward, loss, backward, plain SGD; float32) and the tape-overhead "
          "chain, wengert side by side with a hand-written OpenBLAS step (*floor*: preallocated "
          "buffers, GEMMs with transpose flags, xsimd loops), libtorch and dlib, all measured in the "
          "same run by `benchmarks/bench_mlp`.", "",
          f"Produced by `{a.command}` on {datetime.date.today().isoformat()}. "
          "Ratios below 1 mean wengert is faster. The first table of each pass is the "
          "*step-interleaved* measurement (`MLP/<workload>/paired`): the contenders live "
          "side by side and take turns, a batch of steps each (≥ 50 µs, order rotating every "
          "round), and each figure is the median of that contender's per-step times (real "
          "time; in parentheses the ratio in CPU time of the benchmark thread, 1-thread pass "
          "only). A load change on the machine then hits every contender within the same "
          "round, which makes these ratios steady on a shared machine. The second table is the "
          "cross-check: each contender as its own benchmark, medians of randomly interleaved "
          "repetitions (± is the coefficient of variation across repetitions); under load "
          "these move by tens of percent from run to run.", ""]
    for i, p in enumerate(passes):
        t = thread_label(p)
        title = f"## {t} thread{'s' if t != '1' else ''}" + (" (primary)" if i == 0 else "")
        md += [title, ""] + facts(p) + [""] + md_tables(p, primary=(i == 0)) + [""]
    md += ["## Targets (primary pass)", ""] + target_summary(passes[0])
    for p in passes[1:]:
        if thread_label(p) == "2":
            md += target_summary(p, RATIO_TARGETS_2T)
    md += [""]
    md += ["## Correctness check (one step from identical parameters, max error relative to "
           "the floor's scale; for wengert and dlib also the losses over 5 steps and the "
           "weights after them)", ""] + checks(passes[0]) + [""]
    if png:
        md += ["## Chart", "", "![wengert/floor, wengert/libtorch and wengert/dlib](bench_ratios.png)",
               ""]
    md += ["## What is measured", "",
           "- Workloads: S0 batch 64, 3-4-3-1, tanh, sigmoid + binary cross-entropy (seed "
           "004's net); S1 batch 32, 64-64-64-10; S2 batch 128, 784-256-256-10; S3 batch 256, "
           "1024-1024-1024-10 (softmax cross-entropy); OP a chain of 1,000 tanh "
           "ops on [1,1] and [8,8] from 0.5 (the values stay normal floats, ≈ 0.039 at the end), "
           "recorded and backpropagated (µs per 1,000 ops = ns per op).",
           "- wengert: one tape reused across steps, `linear` + `tanh` per layer, the fused "
           "loss op, `backward`, `nn::SGD`. replay: the same, recorded at the first step and "
           "replayed (`Tape::replay`) at every later one; checked bit-identical to recording "
           "over 5 steps. libtorch: `addmm`, `tanh`, the functional loss, "
           "`loss.backward()`, SGD under `NoGradGuard`, gradients reset to undefined. dlib "
           "(Debian's 19.24, built for baseline x86-64; its translation unit is compiled without "
           "-march=native): `loss_multiclass_log<fc<htan<fc<htan<fc<input>>>>>>` "
           "(S0: `loss_binary_log` on ±1 labels), `compute_parameter_gradients` then "
           "`update_parameters` with one `sgd(0, 0)` solver per layer, no `dnn_trainer`; its "
           "bottom fc also computes the gradient with respect to the input batch (dlib always "
           "does), one GEMM the other contenders skip.",
           "- allocs/step: calls to malloc/calloc/realloc/aligned_alloc/posix_memalign/memalign "
           "in the whole process (operator new goes through malloc) per step, after 3 warm-up "
           "steps, averaged over 5. Not counted: memory a library maps itself with mmap "
           "(OpenBLAS's GEMM buffers).",
           "- In passes with more than one thread, OpenBLAS's threaded GEMM driver allocates "
           "a 512 KiB job buffer with malloc on every GEMM it splits across threads (seen in "
           "gdb: sgemm_thread_nn → malloc); the floor's count shows those, and wengert's "
           "equals it.",
           "- heap: high-water mark of net heap growth from the benchmark's start (setup "
           "included). Process peak RSS: VmHWM, reset at each benchmark's start (it includes "
           "the shared libraries, libtorch's among them, and the other contenders' data).",
           ""]
    text = "\n".join(md)
    with open(os.path.join(a.results, "RESULTS.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
