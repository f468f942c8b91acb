"""Fig-15-like sweep on the embedded local cluster: iteration time vs slow-link delay.

Four stages on this machine (gloo, cpu-small: paced op times like the A10's), one slow link
(2-3 by default), the artifact's delays 20..120 ms, the methods of fig 15, with a real
password-protected Redis control plane. Prints iteration time per method per delay and the
ratios PipeMorph/ZB and PipeMorph(delay)/ZB(no fault), against the goals (<= 0.5 at the
largest delay; within 15% of no fault).

Two modes:
- ``timeline`` (default, one run per method): healthy for ``--warmup`` iterations, then each
  delay for ``--per-delay`` iterations; a delay's value is the median of its block without
  the first iteration (PipeMorph re-plans from the block's second iteration). The median,
  not the mean, because on a shared host one iteration in which a stage lost its core can
  be hundreds of ms long (the contention line of each run says how often ops overran).
- ``cells`` (the artifact's way, one run per method and delay): 15 iterations, the fault from
  iteration 7, the mean of the last 5.

Usage: .venv/bin/python bench/bench_faults.py [--delays 0.06,0.12] [--methods zb,pipemorph]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.oplog import iteration_times_ms, read_records  # noqa: E402
from injector.redis_server import RedisServer  # noqa: E402

GOAL_RATIO = 0.5
GOAL_NOFAULT = 1.15
MAX_OVERRUN = 0.10  # above this fraction of overrun ops a run does not emulate devices
OVERRUNS: dict[str, float] = {}  # run name -> fraction of ops >10% over their pace


def timeline_trace(link: str, delays: list[float], warmup: int, per_delay: int) -> str:
    """One line per delay block (the timeline mode's trace)."""
    return "".join(f"{warmup + i * per_delay};{link};{d}\n" for i, d in enumerate(delays))


def contention(records: list[dict]) -> tuple[str, float]:
    """How far compute ops overran their pace targets, and the fraction >10% over.

    On a shared CPU an op padded to its target only takes the target while the host has a
    core free for it; overruns mean the stages competed for cores, so the measured times are
    not those of dedicated devices and the comparison between methods blurs."""
    heads = [r for r in records if r["kind"] == "iteration" and r.get("pace_ms")]
    if not heads:
        return "unpaced", 0.0
    parts, over, total = [], 0, 0
    for kind, target in zip("FBW", heads[0]["pace_ms"]):
        d = sorted(r["end_ms"] - r["start_ms"] for r in records
                   if r["kind"] == "op" and r["op"] == kind)
        if d and target:
            n_over = sum(x > 1.1 * target for x in d)
            over, total = over + n_over, total + len(d)
            parts.append(f"{kind} median {statistics.median(d):.0f}/{target:.0f} ms")
    frac = over / total if total else 0.0
    return f"{', '.join(parts)}; {frac:.0%} of ops >10% over their pace", frac


def run_engine(args, method: str, trace: Path, iterations: int, out: Path, server) -> dict:
    """One torchrun job; returns its per-iteration times (ms) and notes its contention."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", str(args.stages), "-m", "engine.train",
        "--preset", args.preset, "--method", method, "--iterations", str(iterations),
        "--trace", str(trace), "--control", server.url, "--run-id", out.name,
        "--out", str(out), *(["--detect"] if args.detect else []),
        *(["--pace", args.pace] if args.pace else []),
        *(["--microbatches", str(args.microbatches)] if args.microbatches else []),
        *(["--delegates", str(args.delegates)] if args.delegates else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "PMCTL_CONTROL_PASSWORD_FILE": str(server.password_file)}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{method}: engine failed with exit {proc.returncode}")
    records = read_records(out)
    text, frac = contention(records)
    OVERRUNS[out.name] = frac
    sys.stderr.write(f"  {out.name}: {time.monotonic() - t0:.0f} s; {text}\n")
    return iteration_times_ms(records)


def sweep_timeline(args, work: Path, server) -> dict[str, dict[float, float]]:
    trace = work / "timeline.trace"
    trace.write_text(timeline_trace(args.link, args.delays, args.warmup, args.per_delay))
    iterations = args.warmup + args.per_delay * len(args.delays)
    results: dict[str, dict[float, float]] = {}
    for method in args.methods:
        t = run_engine(args, method, trace, iterations, work / method, server)
        row = {0.0: statistics.median(t[i] for i in range(1, args.warmup))}
        for k, d in enumerate(args.delays):
            start = args.warmup + k * args.per_delay
            row[d] = statistics.median(t[i] for i in range(start + 1, start + args.per_delay))
        results[method] = row
    return results


def sweep_cells(args, work: Path, server) -> dict[str, dict[float, float]]:
    results: dict[str, dict[float, float]] = {}
    for method in args.methods:
        row = {}
        for d in [0.0, *args.delays]:
            trace = work / f"{d}.trace"
            trace.write_text(f"7;{args.link};{d}\n" if d else "")
            t = run_engine(args, method, trace, 15, work / f"{method}-{d}", server)
            row[d] = statistics.fmean(t[i] for i in sorted(t)[-5:])
        results[method] = row
    return results


def report(results: dict[str, dict[float, float]], delays: list[float]) -> None:
    """The table and the ratios against the goals."""
    cols = [0.0, *delays]
    print(f"{'method':<16}" + "".join(f"{d * 1000:>9.0f}ms" for d in cols))
    for method, row in results.items():
        print(f"{method:<16}" + "".join(f"{row[d] / 1000:>10.3f}s" for d in cols))
    if "pipemorph" not in results or "zb" not in results:
        return
    pm, zb = results["pipemorph"], results["zb"]
    print(f"{'PipeMorph/ZB':<16}" + "".join(f"{pm[d] / zb[d]:>11.2f}" for d in cols))
    print(f"{'PM(d)/ZB(0)':<16}" + "".join(f"{pm[d] / zb[0.0]:>11.2f}" for d in cols))
    worst = max(delays)
    ratio, nofault = pm[worst] / zb[worst], pm[worst] / zb[0.0]
    print(f"goal PipeMorph/ZB <= {GOAL_RATIO} at {worst * 1000:.0f} ms: {ratio:.2f} "
          f"{'PASS' if ratio <= GOAL_RATIO else 'FAIL'}")
    print(f"goal PipeMorph within {GOAL_NOFAULT - 1:.0%} of no fault at {worst * 1000:.0f} ms: "
          f"{nofault:.2f} {'PASS' if nofault <= GOAL_NOFAULT else 'FAIL'}")
    blurred = {k: v for k, v in OVERRUNS.items() if v > MAX_OVERRUN}
    if blurred:
        runs = ", ".join(f"{k} {v:.0%}" for k, v in blurred.items())
        print(f"UNRELIABLE: ops overran their pace targets ({runs} of ops >10% over): the "
              "stages competed for CPU cores (see the load average); rerun on an idle host")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("timeline", "cells"), default="timeline")
    p.add_argument("--methods", default="1f1b,zb,pipemorph-cpu,pipemorph")
    p.add_argument("--delays", default="0.02,0.04,0.06,0.08,0.10,0.12", help="seconds")
    p.add_argument("--link", default="2_3")
    p.add_argument("--preset", default="cpu-small")
    p.add_argument("--stages", type=int, default=4)
    p.add_argument("--pace", default=None, help="F,B,W ms targets (default: the preset's)")
    p.add_argument("--microbatches", type=int, default=None, help="default: the preset's")
    p.add_argument("--warmup", type=int, default=4, help="healthy iterations (timeline)")
    p.add_argument("--per-delay", type=int, default=4, help="iterations per delay (timeline)")
    p.add_argument("--delegates", type=int, default=0, help="per direction; 0 = automatic")
    p.add_argument("--detect", action="store_true", help="PipeMorph plans from measurements")
    p.add_argument("--keep", default=None, help="keep the op logs in this directory")
    args = p.parse_args()
    args.methods = [m for m in args.methods.split(",") if m]
    args.delays = [float(d) for d in args.delays.split(",") if d]
    if args.warmup < 2 or args.per_delay < 2:
        raise SystemExit("--warmup and --per-delay must be >= 2")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp, RedisServer() as server:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sweep = sweep_timeline if args.mode == "timeline" else sweep_cells
        results = sweep(args, work, server)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    report(results, args.delays)


if __name__ == "__main__":
    main()
