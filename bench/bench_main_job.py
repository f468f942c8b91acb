"""The main job, timed: ``pmctl run fig15`` then ``pmctl plot fig15`` on the embedded default,
as the README's first command runs them, into a fresh results folder.

    .venv/bin/python bench/bench_main_job.py [--quick] [--keep DIR]

Prints the wall time of each command against the goal (at most 8 minutes for both), and each
cell's iteration time next to the README table measured with the artifact's 15-iteration
shape (fault at 7) before the run shape became 8 iterations (fault at 2), with the relative
difference (goal: every number within 3%). Asserts nothing.
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
GOAL_S = 8 * 60
TOLERANCE = 0.03
# The README's fig15 table (2026-11-27, 15 iterations, fault at 7): delay ms -> method -> s.
BEFORE: dict[float, dict[str, float]] = {
    0: {"1f1b": 1.317, "zb": 1.155},
    20: {"1f1b": 1.579, "zb": 1.411, "pipemorph-cpu": 1.197, "pipemorph": 1.162},
    40: {"1f1b": 1.827, "zb": 1.677, "pipemorph-cpu": 1.288, "pipemorph": 1.173},
    60: {"1f1b": 2.090, "zb": 1.941, "pipemorph-cpu": 1.454, "pipemorph": 1.204},
    80: {"1f1b": 2.365, "zb": 2.196, "pipemorph-cpu": 1.602, "pipemorph": 1.214},
    100: {"1f1b": 2.607, "zb": 2.456, "pipemorph-cpu": 1.753, "pipemorph": 1.243},
    120: {"1f1b": 2.867, "zb": 2.732, "pipemorph-cpu": 1.911, "pipemorph": 1.291},
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
