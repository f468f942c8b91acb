"""Orchestration speed: per-cell overhead on the local cluster and setup fan-out over SSH.

    .venv/bin/python bench/bench_orchestration.py [--engine real|fake] [--launcher L] [--repeat N] [--skip-ssh]

1. Per-cell overhead (goal <= 5 s): a real cell (tiny preset, 4 iterations, 60 ms on link
   2-3) on the embedded local cluster, per launcher (fork: the default, one torch import
   forked into four stages; torchrun: one agent for all four stages; direct: four stage
   processes, no agent), median of --repeat cells; overhead = cell wall time minus the
   training iterations' time (sum of the per-iteration times from the op logs). Also
   printed: pmctl's own share (prepare, Redis, collect, cleanup = wall time minus the
   stages' lifetime).
2. Setup over SSH (root only; goal 4 hosts <= 1.5x one host): ``pmctl setup`` (no-deploy
   fast path) against 1 and 4 network-namespace sshd hosts, median of 3 runs each.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.cellspec import CellSpec  # noqa: E402
from engine.presets import get_preset  # noqa: E402
from pmctl.launcher import LaunchOptions, run_cell  # noqa: E402
from pmctl.launchers import cell_fields  # noqa: E402


def cell_overhead(engine: str, launcher: str, work: Path, repeat: int) -> None:
    from engine.oplog import iteration_times_ms, read_records
    from pmctl.inventory import parse_inventory
    from pmctl.session import Session
    from tests.orchestration.support import fake_entry

    work.mkdir(parents=True, exist_ok=True)
    inv = parse_inventory(
        {"cluster": {"transport": "local", "stages": 4, "work_dir": str(work / "work"),
                     "python": sys.executable, "launcher": launcher}},
        work / "inventory.toml",
    )
    cell = CellSpec("bench", "zb", ((2, 3),), 0.06, fault_at=1, iterations=4, preset="tiny",
                    microbatches=get_preset("tiny").microbatches, **cell_fields(inv))
    entry = tuple(fake_entry(work).split()) if engine == "fake" else None
    rows: list[tuple[float, float, float, float, float]] = []
    for i in range(repeat):
        opts = LaunchOptions(work / f"results{i}", timeout_s=600, **({"engine_entry": entry} if entry else {}))
        with Session(inv) as session:
            t0 = time.monotonic()
            outcome = run_cell(session, cell, opts)
            call_s = time.monotonic() - t0
        if outcome.status != "done":
            print(f"cell failed: {outcome.reason}")
            return
        train_s = sum(iteration_times_ms(read_records(outcome.folder)).values()) / 1000.0
        rows.append((outcome.seconds, train_s, outcome.seconds - train_s,
                     outcome.seconds - outcome.follow_seconds, call_s - outcome.seconds))
    wall, train, over, own, png = (statistics.median(col) for col in zip(*rows))
    spread = f"{min(r[2] for r in rows):.2f}-{max(r[2] for r in rows):.2f}"
    print(f"{launcher} launcher ({engine} engine, 4 iterations, median of {repeat} cells)")
    print(f"  cell wall time        {wall:7.2f} s")
    print(f"  training iterations   {train:7.2f} s")
    print(f"  per-cell overhead     {over:7.2f} s  (range {spread}; goal <= 5 s)")
    print(f"  of which pmctl's own  {own:7.2f} s  (prepare, redis, collect, cleanup)")
    print(f"  timeline.png          {png:7.2f} s  (drawn after the cell)")


def setup_fanout(work: Path) -> None:
    from pmctl.deploy import setup_hosts
    from pmctl.inventory import load_inventory
    from pmctl.session import Session
    from tests.orchestration.support import build_netns_cluster, why_no_netns

    reason = why_no_netns()
    if reason:
        print(f"setup fan-out: skipped ({reason})")
        return
    with build_netns_cluster(work) as cluster:
        inv = load_inventory(cluster.inventory)
        times: dict[int, list[float]] = {1: [], 4: []}
        for _ in range(3):
            for n in (1, 4):
                sub = inv if n == 4 else inv.only(["h0"])
                t0 = time.monotonic()
                with Session(sub) as session:
                    results = setup_hosts(session)
                assert all(r.ok for r in results), [r.problem for r in results]
                times[n].append(time.monotonic() - t0)
    one, four = statistics.median(times[1]), statistics.median(times[4])
    print(f"setup, 1 host (ssh)     {one:7.2f} s  (median of 3)")
    print(f"setup, 4 hosts (ssh)    {four:7.2f} s  (median of 3)")
    print(f"ratio 4 / 1             {four / one:7.2f}    (goal <= 1.5)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("real", "fake"), default="real")
    ap.add_argument("--launcher", choices=("fork", "torchrun", "direct", "all"), default="all")
    ap.add_argument("--repeat", type=int, default=3, help="cells per launcher (median printed)")
    ap.add_argument("--skip-ssh", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pmctl-bench-") as tmp:
        os.environ["PMCTL_STATE_DIR"] = str(Path(tmp) / ".pmctl")  # leave the cwd's state alone
        for launcher in ("fork", "torchrun", "direct") if args.launcher == "all" else (args.launcher,):
            cell_overhead(args.engine, launcher, Path(tmp) / launcher, args.repeat)
        if not args.skip_ssh:
            setup_fanout(Path(tmp))


if __name__ == "__main__":
    main()
