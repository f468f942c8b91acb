"""``pipemorph+``: the improved heuristic.

PipeMorph's rule fixes the warm-up from the delays alone; with unequal per-stage costs it
sometimes loses to the greedy plan. ``pipemorph+`` keeps the rule's policy (warm-up, wait for
the first B, then B > F > W) but searches the warm-up vector:

1. candidates: the rule's warm-up, the greedy plan under the plan delays, and the healthy ZB
   plan replayed under them (so it never loses to any of these);
2. a hill climb from the best warm-up over the moves "one stage +-1" and "Delta of one link
   +-1" (shifts every stage upstream of it), keeping warm-ups non-increasing in 1..N,
   taking the best move (least total warm-up among equals) while it lowers the time.

Each step is one policy simulation (O(ops log ops)); ``max_evals`` bounds the search. With an
activation cap K every candidate is planned under it and warm-ups stay at most K.

The guarantee is against the candidates as planned here, under ``activation_cap`` and the given
costs. The engine re-plans uncapped (as it runs the rule), so at runtime pipemorph+ is never
slower than the rule under the planned delays; its ``zb`` candidate is then the uncapped ZB,
not the engine's healthy plan (uniform costs, capped at 2 x S in flight), which is not compared.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.planner.adapt import adapted_warmup
from engine.planner.costs import StageCosts
from engine.planner.ir import Schedule
from engine.planner.policy import run_policy
from engine.planner.replay import replay


@dataclass(frozen=True)
class Improved:
    """The chosen schedule, its iteration time under the plan delays, and how it was found."""

    schedule: Schedule
    iteration_time: float
    source: str  # "pipemorph", "greedy", "zb" or "search"
    evaluations: int  # policy simulations run


def improved_schedule(
    num_stages: int,
    num_microbatches: int,
    costs: StageCosts,
    delays: tuple[float, ...],
    max_evals: int = 200,
    activation_cap: int | None = None,
) -> Improved:
    """The best schedule found for ``delays`` (inputs are assumed checked by the caller)."""
    S, N, cap = num_stages, num_microbatches, activation_cap
    top = N if cap is None else min(N, cap)  # the largest warm-up a stage may hold
    rule_w = tuple(min(w, top) for w in adapted_warmup(costs, delays, N))
    rule = run_policy(S, N, costs, delays, list(rule_w), cap)
    greedy = run_policy(S, N, costs, delays, activation_cap=cap)
    zb = run_policy(S, N, costs, (0,) * (S - 1), activation_cap=cap).schedule
    zb_time = max(e[-1] for e in replay(zb, costs, delays)[1])
    candidates = [
        (rule.iteration_time, sum(rule_w), "pipemorph", rule.schedule),
        (greedy.iteration_time, sum(greedy.schedule.warmup()), "greedy", greedy.schedule),
        (zb_time, sum(zb.warmup()), "zb", zb),
    ]
    # The search runs the rule's policy from the best of the three warm-ups.
    seen = {rule_w: rule.iteration_time}
    for sched in (greedy.schedule, zb):
        _evaluate(S, N, costs, delays, cap, _monotone(sched.warmup(), top), seen)
    w = min(seen, key=lambda x: (seen[x], sum(x)))
    while len(seen) < max_evals:
        moves = [m for m in _neighbours(w, top) if m not in seen][: max_evals - len(seen)]
        if not moves:
            break
        best_move = min(
            moves, key=lambda m: (_evaluate(S, N, costs, delays, cap, m, seen), sum(m))
        )
        if seen[best_move] >= seen[w]:
            break
        w = best_move
    if seen[w] < min(c[0] for c in candidates):
        searched = run_policy(S, N, costs, delays, list(w), cap).schedule
        candidates.append((seen[w], sum(w), "search", searched))
    time_, _, source, schedule = min(candidates, key=lambda c: (c[0], c[1]))
    return Improved(schedule, time_, source, len(seen) + 2)


def _evaluate(
    S: int,
    N: int,
    costs: StageCosts,
    delays: tuple[float, ...],
    cap: int | None,
    w: tuple[int, ...],
    seen: dict[tuple[int, ...], float],
) -> float:
    if w not in seen:
        seen[w] = run_policy(S, N, costs, delays, list(w), cap).iteration_time
    return seen[w]


def _neighbours(w: tuple[int, ...], N: int) -> list[tuple[int, ...]]:
    """Valid warm-ups (at most ``N``) one move away: one stage +-1, or one link's Delta +-1."""
    S = len(w)
    out = []
    for s in range(S):
        for d in (1, -1):
            one = list(w)
            one[s] += d
            upstream = [x + d if t <= s else x for t, x in enumerate(w)]
            for cand in (one, upstream):
                if _valid(cand, N):
                    out.append(tuple(cand))
    return list(dict.fromkeys(out))


def _valid(w: list[int], N: int) -> bool:
    return all(1 <= x <= N for x in w) and all(w[s] >= w[s + 1] for s in range(len(w) - 1))


def _monotone(w: list[int], N: int) -> tuple[int, ...]:
    """Makes a warm-up usable by the policy: in 1..``N`` and non-increasing downstream."""
    out = [min(max(x, 1), N) for x in w]
    for s in range(len(out) - 2, -1, -1):
        out[s] = max(out[s], out[s + 1])
    return tuple(out)
