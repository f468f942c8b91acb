"""Engine benchmark on 4 local stages (gloo, CPU): per-op times of a preset, iteration time
per method with no fault, peak RSS per stage, the all-cpu / zb overhead ratio, and ZB vs
PipeMorph under an inline delay on one link (the spec's ``--links/--delay/--fault-at``).

    .venv/bin/python bench/bench_engine.py [--preset cpu-small] [--iterations 10]
        [--delay 0.06] [--link 2_3] [--methods 1f1b,zb,...] [--skip-raw] [--skip-delay]
        [--interleaved-rounds 4]

Iteration time = mean of the last 5 iterations (the paper's cell value). The machine may be
shared, so separate jobs drift with its load; the *interleaved* section therefore runs the
variants to compare inside one job, one iteration each in turn (a plan script), and reports
per-variant medians: healthy ZB inline, healthy ZB on delegates (= all-cpu), and under the
delay ZB inline, ZB on delegates (= PipeMorph-CPU) and the adapted schedule on delegates
(= PipeMorph). Prints numbers only; the goals are for a human to read.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.oplog import iteration_times_ms, read_records, summarize  # noqa: E402
from engine.planner.costs import StageCosts  # noqa: E402
from engine.planner.generators import generate  # noqa: E402
from engine.presets import get_preset  # noqa: E402

METHODS = ("1f1b", "zb", "pipemorph-cpu", "pipemorph", "all-cpu")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(out: Path, args: list[str], timeout: float = 900) -> list[dict]:
    """One torchrun job of 4 stages; returns its op-log records."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
           "4", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_port()}", "-m",
           "engine.train", "--out", str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"job {' '.join(args)} failed:\n{p.stderr[-2000:]}")
    return read_records(out)


def op_medians(records: list[dict], skip_first: int = 1) -> dict[int, dict[str, float]]:
    """Per stage, the median duration (ms) of each compute op kind."""
    d: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["kind"] == "op" and r["iter"] >= skip_first and r["op"] in ("F", "B", "W", "BW"):
            d[r["stage"]][r["op"]].append(r["end_ms"] - r["start_ms"])
    return {s: {k: statistics.median(v) for k, v in ops.items()} for s, ops in sorted(d.items())}


def peak_rss(records: list[dict]) -> dict[int, float]:
    out: dict[int, float] = {}
    for r in records:
        if r["kind"] == "iteration":
            out[r["stage"]] = max(out.get(r["stage"], 0.0), r.get("max_rss_mb") or 0.0)
    return dict(sorted(out.items()))


def mean_iter(records: list[dict], since: int = 0) -> float:
    per = {k: v for k, v in iteration_times_ms(records).items() if k >= since}
    return summarize(per).mean_ms


def interleaved(t: Path, preset: str, link: int, delay_s: float, rounds: int) -> None:
    """Runs the compared variants in turn inside one job; prints per-variant medians."""
    p = get_preset(preset)
    n, (f, b, w) = p.microbatches, p.pace_ms or (1.0, 1.0, 1.0)
    costs = StageCosts.uniform(4, f, b, w)
    delays = [0.0, 0.0, 0.0]
    delays[link] = delay_s
    planned = tuple(d * 1000.0 for d in delays)
    zb = generate("zb", 4, n, costs).to_lists()
    adapted = generate("pipemorph", 4, n, costs, plan_delays=planned).to_lists()
    variants = [
        ("zb, no fault", {"schedule": zb, "offload": False}),
        ("all-cpu, no fault", {"schedule": zb, "offload": True}),
        ("zb, delay", {"schedule": zb, "offload": False, "delays_s": delays}),
        ("pipemorph-cpu, delay", {"schedule": zb, "offload": True, "delays_s": delays}),
        ("pipemorph, delay", {"schedule": adapted, "offload": True, "delays_s": delays}),
    ]
    warm = [variants[0][1]]  # one warm-up iteration, not counted
    script = t / "interleaved.json"
    script.write_text(json.dumps(warm + [v for _ in range(rounds) for _, v in variants]))
    k = min(8, int(delay_s * 1000.0 // f) + 2)
    recs = run_job(t / "interleaved", ["--preset", preset, "--plan-script", str(script),
                                       "--delegates", str(k), "--iterations",
                                       str(1 + rounds * len(variants))])
    per = iteration_times_ms(recs)
    med = {}
    for i, (label, _) in enumerate(variants):
        vals = [per[1 + r * len(variants) + i] for r in range(rounds)]
        med[label] = statistics.median(vals)
        print(f"  {label:22s} median {med[label]:8.1f} ms  (" +
              " ".join(f"{v:.0f}" for v in vals) + ")")
    base = med["zb, no fault"]
    print(f"  all-cpu / zb = {med['all-cpu, no fault'] / base:.3f} (goal <= 1.03); "
          f"PipeMorph / ZB = {med['pipemorph, delay'] / med['zb, delay']:.3f}; "
          f"PipeMorph(delay) / ZB(no fault) = {med['pipemorph, delay'] / base:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--delay", type=float, default=0.06, help="seconds on --link")
    ap.add_argument("--link", default="2_3")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--skip-raw", action="store_true")
    ap.add_argument("--skip-delay", action="store_true")
    ap.add_argument("--interleaved-rounds", type=int, default=4, help="0 = skip")
    ap.add_argument("--only-interleaved", action="store_true")
    a = ap.parse_args()
    common = ["--preset", a.preset, "--iterations", str(a.iterations)]
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        print(f"# preset {a.preset}, 4 local stages, {os.cpu_count()} cores, "
              f"load {os.getloadavg()[0]:.1f}")
        if a.interleaved_rounds > 0:
            print(f"\ninterleaved in one job ({a.interleaved_rounds} rounds; delay "
                  f"{a.delay * 1000:.0f} ms on link {a.link}):")
            interleaved(t, a.preset, int(a.link.split("_")[0]), a.delay, a.interleaved_rounds)
        if a.only_interleaved:
            return
        if not a.skip_raw:
            recs = run_job(t / "raw", [*common, "--method", "zb", "--pace", "off"])
            print("\nraw op medians (ms, no pacing, 4 stages running):")
            for s, ops in op_medians(recs).items():
                print(f"  stage {s}: " + "  ".join(f"{k} {v:.1f}" for k, v in ops.items()))
        times: dict[str, float] = {}
        print("\nno fault: iteration time (mean of last 5, ms), peak RSS per stage (MiB):")
        for m in a.methods.split(","):
            recs = run_job(t / m, [*common, "--method", m])
            times[m] = mean_iter(recs)
            rss = peak_rss(recs)
            print(f"  {m:14s} {times[m]:8.1f}   rss " +
                  " ".join(f"{v:.0f}" for v in rss.values()))
            if m == "zb":
                print("  zb op medians (ms): " + "; ".join(
                    f"s{s} " + " ".join(f"{k} {v:.1f}" for k, v in ops.items())
                    for s, ops in op_medians(recs).items()))
        if "zb" in times and "all-cpu" in times:
            print(f"\nall-cpu / zb = {times['all-cpu'] / times['zb']:.3f} (goal <= 1.03)")
        if a.skip_delay:
            return
        since = 3
        inj = ["--links", a.link, "--delay", str(a.delay), "--fault-at", str(since)]
        print(f"\n{a.delay * 1000:.0f} ms on link {a.link} from iteration {since}:")
        delayed = {}
        for m in ("zb", "pipemorph-cpu", "pipemorph"):
            recs = run_job(t / f"d-{m}", [*common, "--method", m, *inj])
            delayed[m] = mean_iter(recs, since + 2)
            print(f"  {m:14s} {delayed[m]:8.1f} ms")
        if "zb" in times:
            print(f"  PipeMorph / ZB = {delayed['pipemorph'] / delayed['zb']:.3f}; "
                  f"PipeMorph(delay) / ZB(no fault) = {delayed['pipemorph'] / times['zb']:.3f}")


if __name__ == "__main__":
    main()
