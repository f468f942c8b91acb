"""Fig 15's quick cells with the p2p path before and after per-link groups, and under NCCL's
rules emulated: does the NCCL-safe path keep the numbers?

    .venv/bin/python bench/bench_p2p_nccl.py [--rounds 1] [--methods 1f1b,zb,pipemorph-cpu,pipemorph]
        [--delays 0.06,0.12] [--variants old,native,nccl]

Cells: 4 stages, cpu-small (paced ops), 8 iterations, the fault on link 2_3 from iteration 2
(fig15 --quick: each method at 60 and 120 ms, 1F1B and ZB with no fault). Each job runs on 4
local stages under engine.forkrun, as pmctl's local cluster does. Variants, interleaved per
cell so that the machine's load drifts over all of them alike:

- ``old``: this tree with the p2p path before per-link groups (the files
  ``engine/p2p/{inline,delegates,messages}.py``, ``engine/train.py`` and ``engine/config.py``
  as git's ``--old-rev``, default HEAD, has them), copied to a temporary directory;
- ``native``: this tree, ``--p2p-semantics native``;
- ``nccl``: this tree, ``--p2p-semantics nccl`` (the emulation's stream threads included).

Iteration time = the mean of the last 5 iterations (PAPER.md section 5's rule), per cell the
median over ``--rounds``. Prints a table and each variant's ratio to ``old``, next to the
README's fig15 numbers. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.oplog import iteration_times_ms, read_records  # noqa: E402

OLD_FILES = ("engine/p2p/__init__.py", "engine/p2p/inline.py", "engine/p2p/delegates.py",
             "engine/p2p/messages.py", "engine/train.py", "engine/config.py")
NEW_ONLY = ("engine/p2p/groups.py", "engine/p2p/nccl_rules.py", "engine/p2p/staging.py")
README_S = {("1f1b", 0.0): 1.330, ("zb", 0.0): 1.141, ("1f1b", 0.06): 2.085, ("zb", 0.06): 1.926,
            ("pipemorph-cpu", 0.06): 1.425, ("pipemorph", 0.06): 1.183, ("1f1b", 0.12): 2.882,
            ("zb", 0.12): 2.698, ("pipemorph-cpu", 0.12): 1.898, ("pipemorph", 0.12): 1.283}


def old_tree(rev: str, dest: Path) -> Path:
    """This tree's engine and injector with the p2p files as ``rev`` has them."""
    for pkg in ("engine", "injector"):
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for f in NEW_ONLY:
        (dest / f).unlink(missing_ok=True)
    for f in OLD_FILES:
        text = subprocess.run(["git", "show", f"{rev}:{f}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        (dest / f).write_text(text)
    # the old train.py imported calibrate_cuda_sleep from inline.py; keep it importable
    inline = dest / "engine/p2p/inline.py"
    if "def calibrate_cuda_sleep" not in inline.read_text():
        inline.write_text(inline.read_text() + "\nfrom engine.cuda_sleep import calibrate_cuda_sleep  # noqa: E402,F401\n")
    return dest


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cell(root: Path, extra: list[str], method: str, delay: float, out: Path) -> float:
    """One cell's iteration time in seconds (mean of the last 5 iterations)."""
    fault = ["--links", "2_3", "--delay", str(delay), "--fault-at", "2"] if delay else []
    cmd = [sys.executable, "-m", "engine.forkrun", "--master-port", str(_port()), "--nnodes", "1",
           "--nproc-per-node", "4", "-m", "engine.train", "--preset", "cpu-small", "--method", method,
           "--iterations", "8", *fault, "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    env.pop("PMCTL_P2P_SEMANTICS", None)  # each variant says what it runs
    p = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"{root} {method} {delay}: failed\n{p.stderr[-2000:]}")
    times = iteration_times_ms(read_records(out))
    last = [times[i] for i in sorted(times)[-5:]]
    return statistics.mean(last) / 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--methods", default="1f1b,zb,pipemorph-cpu,pipemorph")
    ap.add_argument("--delays", default="0.06,0.12")
    ap.add_argument("--variants", default="old,native,nccl")
    ap.add_argument("--old-rev", default="HEAD")
    a = ap.parse_args()
    methods, variants = a.methods.split(","), a.variants.split(",")
    delays = [float(d) for d in a.delays.split(",")]
    cells = [(m, 0.0) for m in methods if m in ("1f1b", "zb")] + [(m, d) for d in delays for m in methods]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots = {"old": old_tree(a.old_rev, work / "old") if "old" in variants else REPO,
                 "native": REPO, "nccl": REPO}
        extra = {"old": [], "native": ["--p2p-semantics", "native"], "nccl": ["--p2p-semantics", "nccl"]}
        got: dict[tuple[str, float, str], list[float]] = {}
        for r in range(a.rounds):
            for method, delay in cells:
                for v in variants:
                    out = work / f"{v}-{method}-{delay}-{r}"
                    t = run_cell(roots[v], extra[v], method, delay, out)
                    got.setdefault((method, delay, v), []).append(t)
                    print(f"round {r} {method:14s} {delay * 1000:5.0f} ms {v:7s} {t:.3f} s", flush=True)
    print(f"\n{'cell':24s} {'README':>7s} " + " ".join(f"{v:>8s}" for v in variants)
          + "".join(f" {v + '/old':>11s}" for v in variants if v != "old"))
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    for method, delay in cells:
        med = {v: statistics.median(got[(method, delay, v)]) for v in variants}
        row = f"{method + ' ' + format(delay * 1000, '.0f') + ' ms':24s} {README_S.get((method, delay), float('nan')):7.3f} "
        row += " ".join(f"{med[v]:8.3f}" for v in variants)
        if "old" in med:
            for v in variants:
                if v != "old":
                    ratios[v].append(med[v] / med["old"])
                    row += f" {med[v] / med['old']:11.3f}"
        print(row)
    for v, rs in ratios.items():
        if rs:
            print(f"{v}/old: median {statistics.median(rs):.3f}, range {min(rs):.3f}..{max(rs):.3f}")


if __name__ == "__main__":
    main()
