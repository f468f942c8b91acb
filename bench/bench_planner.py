"""Planner benchmarks: prints numbers, asserts nothing (speed goals from issue 2).

    .venv/bin/python bench/bench_planner.py [--quick] [--ilp SECONDS]

1. ``simulate`` (replay) time for (S,N) = (4,12), (16,64), (64,512) at op costs 10 and 1000
   (goals: (64,512) under 0.5 s; cost-1000 / cost-10 ratio under 1.5).
2. ``pipemorph`` planning time for S=8, N=32 (goal under 10 ms); ``pipemorph+`` too.
3. On seeded fig19-style instances (PAPER.md 3): how often the plain rule loses to the healthy
   ZB plan replayed under the same delays, and what ``pipemorph+`` buys.
4. With ``--ilp``: the heuristics' gap to the ILP on the small fig19 shapes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.planner.adapt import adapted_warmup  # noqa: E402
from engine.planner.costs import StageCosts  # noqa: E402
from engine.planner.generators import generate  # noqa: E402
from engine.planner.improve import improved_schedule  # noqa: E402
from engine.planner.instances import random_instance  # noqa: E402
from engine.planner.simulate import simulate  # noqa: E402

SHAPES = ((3, 6), (4, 12), (6, 18), (8, 32))
GRANULARITIES = (10, 15, 20, 25, 30)


def best_of(fn, repeats: int) -> float:
    """Best CPU time of this process over ``repeats`` calls: on a shared machine, wall time
    mostly measures the neighbours' load."""
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


def bench_simulator(repeats: int) -> None:
    print("simulate (replay of the ZB order, one slow link), best CPU time of", repeats)
    print(f"{'S':>4} {'N':>5} {'ops':>7} {'cost 10 (s)':>12} {'cost 1000 (s)':>14} {'ratio':>6}")
    for S, N in ((4, 12), (16, 64), (64, 512)):
        row = []
        for unit in (10, 1000):
            costs = StageCosts.uniform(S, unit, unit, unit)
            sched = generate("zb", S, N, costs)
            delays = tuple(2 * unit if i == S // 2 else 0 for i in range(S - 1))
            row.append(best_of(lambda s=sched, c=costs, d=delays: simulate(s, c, d), repeats))
        ratio = row[1] / row[0]
        print(f"{S:>4} {N:>5} {3 * S * N:>7} {row[0]:>12.4f} {row[1]:>14.4f} {ratio:>6.2f}")


def bench_planning(repeats: int) -> None:
    rng = random.Random(0)
    inst = random_instance(8, 32, 20, rng)
    c, d = inst.costs, inst.delays
    print("\nplanning S=8, N=32 (fig19-style costs), best CPU time of", repeats)
    for name in ("zb", "pipemorph", "pipemorph+"):
        t = best_of(lambda n=name: generate(n, 8, 32, c, d), repeats if name != "pipemorph+" else 3)
        print(f"  {name:<11} {t * 1000:8.2f} ms")
    big = StageCosts.uniform(64, 10, 10, 10)
    t = best_of(lambda: generate("greedy", 64, 512, big, tuple([0] * 63)), 1)
    print(f"  greedy S=64, N=512: {t:.3f} s")


def bench_rule_vs_zb(repeats: int) -> None:
    n_b = len(GRANULARITIES)
    print(f"\nfig19 instances ({len(SHAPES)} shapes x {n_b} granularities x {repeats} seeds)")
    losses, total, gains, plus_ms, rule_ms = 0, 0, [], [], []
    per_shape: dict[tuple[int, int], list[int]] = {}
    for S, N in SHAPES:
        for b in GRANULARITIES:
            for seed in range(repeats):
                inst = random_instance(S, N, b, random.Random(f"{S}-{N}-{b}-{seed}"))
                c, d = inst.costs, inst.delays
                t0 = time.process_time()
                rule = simulate(generate("pipemorph", S, N, c, d), c, d).iteration_time
                rule_ms.append((time.process_time() - t0) * 1000)
                zb = simulate(generate("zb", S, N, c), c, d).iteration_time
                t0 = time.process_time()
                plus = improved_schedule(S, N, c, d).iteration_time
                plus_ms.append((time.process_time() - t0) * 1000)
                total += 1
                lost = rule > zb
                losses += lost
                per_shape.setdefault((S, N), [0, 0])
                per_shape[(S, N)][0] += lost
                per_shape[(S, N)][1] += 1
                gains.append((rule - plus) / rule)
                assert plus <= min(rule, zb)
    print(f"  plain rule slower than the healthy ZB plan replayed: {losses}/{total} "
          f"({losses / total:.1%}); per shape: "
          + ", ".join(f"{s}: {lost}/{n}" for s, (lost, n) in per_shape.items()))
    print(f"  pipemorph+ vs the rule: mean gain {statistics.mean(gains):.2%}, "
          f"max {max(gains):.2%}, better on {sum(g > 0 for g in gains)}/{total}")
    print(f"  time per instance: rule {statistics.mean(rule_ms):.2f} ms, "
          f"pipemorph+ {statistics.mean(plus_ms):.1f} ms (max {max(plus_ms):.0f} ms)")


def bench_rule_vs_zb_uniform_stages(count: int) -> None:
    """The rule against the healthy ZB plan when every stage has the same costs but F, B and
    W differ (tF, tB, tW each in [1, 20]; delays 0..60 on random links; N fits the warm-up)."""
    rng = random.Random(11)
    losses = 0
    for _ in range(count):
        S = rng.randint(2, 6)
        costs = StageCosts.uniform(S, rng.randint(1, 20), rng.randint(1, 20), rng.randint(1, 20))
        d = tuple(rng.choice([0, rng.randint(0, 60)]) for _ in range(S - 1))
        N = adapted_warmup(costs, d, 10**6)[0] + rng.randint(0, 8)
        rule = simulate(generate("pipemorph", S, N, costs, d), costs, d).iteration_time
        zb = simulate(generate("zb", S, N, costs), costs, d).iteration_time
        losses += rule > zb
    print(f"  equal stages, unequal tF/tB/tW: rule slower than ZB on {losses}/{count} "
          f"({losses / count:.1%})")


def bench_ilp_gap(limit_s: float, repeats: int) -> None:
    from engine.planner.ilp import solve_ilp

    print(f"\ngap to the ILP (time limit {limit_s:g} s), shapes (3,6) and (4,12)")
    gaps: dict[str, list[float]] = {"pipemorph": [], "pipemorph+": []}
    proven = 0
    runs = 0
    for S, N in SHAPES[:2]:
        for b in GRANULARITIES:
            for seed in range(repeats):
                inst = random_instance(S, N, b, random.Random(f"{S}-{N}-{b}-{seed}"))
                c, d = inst.costs, inst.delays
                plus = improved_schedule(S, N, c, d)
                res = solve_ilp(S, N, c, d, limit_s, warm_start=plus.schedule)
                runs += 1
                proven += res.proven_optimal
                rule = simulate(generate("pipemorph", S, N, c, d), c, d).iteration_time
                for name, t in (("pipemorph", rule), ("pipemorph+", plus.iteration_time)):
                    gaps[name].append((t - res.makespan) / res.makespan)
    print(f"  ILP proven optimal on {proven}/{runs}")
    for name, g in gaps.items():
        print(f"  {name:<11} mean gap {statistics.mean(g):.2%}, max {max(g):.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--ilp", type=float, metavar="SECONDS", help="also measure the gap to the ILP")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    bench_simulator(repeats)
    bench_planning(repeats * 4)
    bench_rule_vs_zb(2 if args.quick else 5)
    bench_rule_vs_zb_uniform_stages(100 if args.quick else 500)
    if args.ilp:
        bench_ilp_gap(args.ilp, 1 if args.quick else 2)


if __name__ == "__main__":
    main()
