"""Pipelines of 4, 8 and 16 stages on the embedded local cluster, through pmctl as a user runs
them: one experiment file per stage count (tiny preset, ZB and PipeMorph, a delay on the last
link), ``pmctl run`` then ``pmctl plot --json``.

    .venv/bin/python bench/bench_stages.py [--stages 4,8,16] [--delay-ms 60] [--keep DIR]

Prints per stage count and method the iteration time (mean of the last 5 iterations), the
PipeMorph / ZB ratio and each cell's wall time. The stages share this machine's cores, so
absolute times grow with the stage count; the point is that every size runs. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENT = """name = "stages-{s}"
preset = "tiny"
stages = {s}
microbatches = {n}
iterations = 8
fault_at = 2
methods = ["zb", "pipemorph"]
links = ["{a}_{b}"]
delays_ms = [{d}]
"""


def pmctl(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmctl", *args], cwd=cwd, capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="4,8,16")
    ap.add_argument("--delay-ms", type=float, default=60.0)
    ap.add_argument("--keep", type=Path)
    a = ap.parse_args()
    work = a.keep or Path(tempfile.mkdtemp(prefix="pmctl-stages-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{'stages':>6} {'method':<10} {'iteration s':>11} {'wall s':>7}")
    for s in (int(x) for x in a.stages.split(",")):
        path = work / f"stages-{s}.toml"
        # 2 x S micro-batches keep every stage busy in the steady state
        path.write_text(EXPERIMENT.format(s=s, n=2 * s, a=s - 2, b=s - 1, d=a.delay_ms))
        t0 = time.monotonic()
        r = pmctl(["run", str(path)], work)
        wall = time.monotonic() - t0
        if r.returncode != 0:
            print(f"{s:>6} failed: {r.stderr.strip()[-300:]}")
            continue
        cells = json.loads(pmctl(["plot", str(path), "--json"], work).stdout)["cells"]
        times = {c["method"]: c["iteration_time_s"] for c in cells}
        for m, t in times.items():
            print(f"{s:>6} {m:<10} {t:>11.3f} {wall / len(times):>7.1f}")
        if times.get("zb") and times.get("pipemorph"):
            print(f"{s:>6} pipemorph / zb = {times['pipemorph'] / times['zb']:.2f}")
    print(f"(results in {work})")


if __name__ == "__main__":
    main()
