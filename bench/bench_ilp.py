"""ILP benchmarks (prints numbers; no asserts).

1. Proof time for S=3, N=6 and S=4, N=12, all costs 10 ms, one slow link (20 and 60 ms, first
   and last link), with HiGHS and with CBC, from the best heuristic and from the healthy ZB
   order (which forces a MILP search): goal < 60 s each (the artifact's formulation did not
   prove S=4, N=12 with one slow link in 9 minutes). ``--plain`` adds the unstrengthened
   model for comparison.
2. The heuristics' mean/max gap to the ILP over the fig19 quick set (``--full``: the whole
   fig19 grid, about 15 minutes).

Run: ``.venv/bin/python bench/bench_ilp.py [--full] [--solvers highs,cbc]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.planner.costs import StageCosts  # noqa: E402
from engine.planner.generators import generate  # noqa: E402
from engine.planner.ilp import solve_ilp  # noqa: E402
from engine.planner.ilp_model import build_instance  # noqa: E402
from engine.planner.ilp_solvers import available_solvers, solve  # noqa: E402
from engine.planner.simulate import simulate  # noqa: E402
from figures.fig19_solve import FULL, HEURISTICS, QUICK, gap_pct, solve_instance  # noqa: E402

PROOF_CASES = [
    (3, 6, (20.0, 0.0)),
    (3, 6, (0.0, 60.0)),
    (4, 12, (20.0, 0.0, 0.0)),
    (4, 12, (0.0, 0.0, 20.0)),
    (4, 12, (60.0, 0.0, 0.0)),
    (4, 12, (0.0, 0.0, 60.0)),
]


def bench_proofs(solvers: list[str], plain: bool) -> None:
    print("== proof time, costs 10 ms, one slow link (goal < 60 s) ==")
    print("start: 'best' = the better heuristic (usually proven by the bound alone); 'zb' =")
    print("the healthy ZB order, so the MILP must search; 'plain' = the unstrengthened model")
    print("seconds = wall time; cpu = this process's CPU time (CBC runs in a child process)")
    print(f"{'S':>2} {'N':>3} {'delays':<10} {'start':<6} {'solver':<6} {'T':>5} {'bound':>6} "
          f"{'proven':<6} {'seconds':>8} {'cpu':>6}  how")
    for S, N, delays in PROOF_CASES:
        costs = StageCosts.uniform(S, 10, 10, 10)
        zb = generate("zb", S, N, costs)
        for solver in solvers:
            for start, warm in (("best", None), ("zb", zb)):
                cpu = time.process_time()
                r = solve_ilp(S, N, costs, delays, time_limit_s=60, solver=solver,
                              warm_start=warm)
                _print_row(S, N, delays, start, solver, r.makespan, r.lower_bound,
                           r.proven_optimal, r.solve_seconds, time.process_time() - cpu,
                           r.solver_status)
        if plain:
            _bench_plain(S, N, costs, delays, zb, solvers[0])


def _bench_plain(S: int, N: int, costs: StageCosts, delays: tuple[float, ...], zb, solver: str
                 ) -> None:
    ub = simulate(zb, costs, delays).iteration_time
    t0, cpu = time.perf_counter(), time.process_time()
    inst = build_instance(S, N, costs, delays, ub, strengthen=False)
    out = solve(inst.model, solver, 60, None, 1 - 1e-6)
    proven = out.objective - out.bound < 1
    _print_row(S, N, delays, "plain", solver, out.objective, out.bound, proven,
               time.perf_counter() - t0, time.process_time() - cpu, out.status)


def _print_row(S, N, delays, start, solver, T, bound, proven, seconds, cpu, how) -> None:
    print(f"{S:>2} {N:>3} {','.join(f'{d:g}' for d in delays):<10} {start:<6} {solver:<6} "
          f"{T:>5.0f} {bound:>6.0f} {str(proven):<6} {seconds:>8.2f} {cpu:>6.2f}  {how}",
          flush=True)


def bench_gaps(full: bool) -> None:
    cfg = FULL if full else QUICK
    print(f"== heuristic gap to the ILP, fig19 {'full' if full else 'quick'} set "
          f"(ILP limit {cfg.time_limit_s:g} s) ==")
    rows = []
    t0 = time.perf_counter()
    for S, N in cfg.sizes:
        for b in cfg.granularities:
            for seed in range(cfg.repeats):
                rows.append(solve_instance(S, N, b, seed, cfg.time_limit_s))
    wall = time.perf_counter() - t0
    for name in HEURISTICS:
        gaps = [gap_pct(r[f"{name}_makespan"], r["ilp_makespan"]) for r in rows]
        ms = [r[f"{name}_runtime_ms"] for r in rows]
        print(f"{name:<11} gap mean {statistics.fmean(gaps):.3f}%  max {max(gaps):.3f}%  "
              f"worse than ILP on {sum(g > 1e-9 for g in gaps)}/{len(gaps)}  "
              f"runtime mean {statistics.fmean(ms):.2f} ms  max {max(ms):.2f} ms")
    bound_gaps = [gap_pct(r["ilp_makespan"], r["ilp_bound"]) for r in rows]
    ilp_s = [r["ilp_solve_s"] for r in rows]
    print(f"ILP         proven {sum(r['ilp_proven'] for r in rows)}/{len(rows)}  "
          f"bound gap mean {statistics.fmean(bound_gaps):.3f}% max {max(bound_gaps):.3f}%  "
          f"runtime mean {statistics.fmean(ilp_s):.2f} s  max {max(ilp_s):.2f} s")
    own_s = [r["search_solve_s"] for r in rows]
    own_gaps = [gap_pct(r["search_makespan"], r["ilp_makespan"]) for r in rows]
    print(f"MILP from pipemorph alone: proven {sum(r['search_proven'] for r in rows)}/{len(rows)}"
          f"  searched {sum(r['search_searched'] for r in rows)}  runtime mean "
          f"{statistics.fmean(own_s):.2f} s max {max(own_s):.2f} s  gap to ILP mean "
          f"{statistics.fmean(own_gaps):.3f}% max {max(own_gaps):.3f}%")
    print(f"(wall {wall:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole fig19 grid")
    parser.add_argument("--solvers", default=",".join(available_solvers()),
                        help="comma list of solvers for the proof benchmark")
    parser.add_argument("--plain", action="store_true",
                        help="also the unstrengthened model (up to 60 s per case)")
    args = parser.parse_args()
    bench_proofs([s for s in args.solvers.split(",") if s], args.plain)
    bench_gaps(args.full)


if __name__ == "__main__":
    main()
