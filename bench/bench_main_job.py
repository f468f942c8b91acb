"""The main job, timed: ``pmctl run fig15`` then ``pmctl plot fig15`` on the embedded default,
as the README's first command runs them, into a fresh results folder.

    .venv/bin/python bench/bench_main_job.py [--quick] [--keep DIR]

Prints the wall time of each command against the goal (at most 10 minutes for both on a 2-core
machine), and each cell's iteration time next to the README's fig15 table (2026-11-30), with
the relative difference (goal: every number within 3%). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 10 * 60
TOLERANCE = 0.03
# The README's fig15 table (2026-11-30, 8 iterations, fault at 2): delay ms -> method -> s.
BEFORE: dict[float, dict[str, float]] = {
    0: {"1f1b": 1.311, "zb": 1.141, "all-cpu": 1.149},
    20: {"1f1b": 1.582, "zb": 1.404, "pipemorph-cpu": 1.189, "pipemorph": 1.166, "pipemorph+": 1.160},
    40: {"1f1b": 1.835, "zb": 1.689, "pipemorph-cpu": 1.285, "pipemorph": 1.181, "pipemorph+": 1.172},
    60: {"1f1b": 2.094, "zb": 1.924, "pipemorph-cpu": 1.438, "pipemorph": 1.199, "pipemorph+": 1.200},
    80: {"1f1b": 2.356, "zb": 2.183, "pipemorph-cpu": 1.598, "pipemorph": 1.216, "pipemorph+": 1.208},
    100: {"1f1b": 2.610, "zb": 2.444, "pipemorph-cpu": 1.761, "pipemorph": 1.253, "pipemorph+": 1.243},
    120: {"1f1b": 2.875, "zb": 2.710, "pipemorph-cpu": 1.914, "pipemorph": 1.290, "pipemorph+": 1.296},
}


def timed(args: list[str], cwd: Path) -> float:
    """Runs ``pmctl ARGS`` in ``cwd`` (the default inventory: none there, so the built-in
    local cluster) and returns its wall time; a failure stops the bench."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pmctl", *args], cwd=cwd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        sys.exit(f"pmctl {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the 2-delay quick set")
    ap.add_argument("--keep", type=Path, help="run in this folder and keep it")
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="pmctl-main-job-"))
    work.mkdir(parents=True, exist_ok=True)
    quick = ["--quick"] if a.quick else []
    run_s = timed(["run", "fig15", *quick], work)
    plot_s = timed(["plot", "fig15", *quick], work)
    total = run_s + plot_s
    print(f"pmctl run fig15{' --quick' if a.quick else ''}: {run_s:.0f} s; plot: {plot_s:.1f} s; "
          f"total {total / 60:.1f} min (goal <= {GOAL_S / 60:.0f} min: {'met' if total <= GOAL_S else 'NOT met'})")
    cells = json.loads((work / "results/fig15/fig15.json").read_text())["cells"]
    print(f"\n{'delay':>6} {'method':<14} {'now s':>7} {'README s':>9} {'diff':>7}")
    worst = 0.0
    for c in cells:
        now = c["iteration_time_s"]
        delay_ms = round(float(c["delay_s"]) * 1000)
        before = BEFORE.get(delay_ms, {}).get(c["method"])
        if now is None or before is None:
            print(f"{delay_ms:>6} {c['method']:<14} {'n/a' if now is None else f'{now:.3f}':>7} {'-':>9}")
            continue
        diff = now / before - 1
        worst = max(worst, abs(diff))
        print(f"{delay_ms:>6} {c['method']:<14} {now:>7.3f} {before:>9.3f} {diff:>+7.1%}")
    print(f"\nlargest difference {worst:.1%} (goal <= {TOLERANCE:.0%}: {'met' if worst <= TOLERANCE else 'NOT met'})")
    if not a.keep:
        print(f"(results in {work})")


if __name__ == "__main__":
    main()
