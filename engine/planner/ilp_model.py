"""The makespan MILP, built solver-neutral (columns + sparse rows), pure.

Variables: a start time per op ``x[s,kind,j]`` (continuous), the makespan ``T``, and per stage
binary order variables ``y[A_i, B_j]`` = 1 iff op A of micro-batch i runs before op B of
micro-batch j, for the kind pairs (F,B), (F,W), (B,W) only.

Normal form (symmetry breaking): on each stage the ops of one kind run in micro-batch order.
Why this loses nothing: take any feasible schedule and, per stage and kind, give the k-th
executed op of that kind the micro-batch index k, keeping all start times. Every dependency
is a one-to-one matching between two slot sets (e.g. the F ends of stage s-1 and the F starts
of stage s) where each slot may start only after its partner's ready time; if *some*
bijection is feasible then the sorted one is too (the k-th earliest slot starts after k
partners are ready, hence after the k-th earliest ready time). Times, stage occupancy and
in-flight counts are unchanged, so the makespan and the activation cap are too. Hence the
same-kind order is fixed and only cross-kind pairs need binaries, which are then monotone:
``y[i,j] >= y[i+1,j]`` and ``y[i,j] <= y[i,j+1]``.

Activation cap K (``activations``: F +1, B and W -0.5 each; F(s,i) only with at most K-1
in flight): per F one row over the order variables, 2i - #B before F_i - #W before F_i <=
2K - 2, and its consequence B(s,i-K) before F(s,i), i.e. ``y[F_i, B_j] = 0`` for i >= j + K.

Strengthening: time windows from ``ilp_windows`` (variable bounds, tight per-pair big-M,
pairs whose order the windows decide are fixed), and per-op load rows that count, through
the order variables, how much work of the stage lies before / after the op.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.planner.costs import StageCosts
from engine.planner.ilp_windows import (
    B,
    F,
    OpKey,
    W,
    Windows,
    compute_windows,
    trivial_windows,
)

INF = float("inf")
PAIRS = ((F, B), (F, W), (B, W))  # (earlier-if-y=1 kind, other kind)


@dataclass
class MilpModel:
    """A MILP: minimise ``cost @ cols`` s.t. ``lo <= row @ cols <= hi`` and column bounds."""

    col_lb: list[float] = field(default_factory=list)
    col_ub: list[float] = field(default_factory=list)
    col_int: list[bool] = field(default_factory=list)
    col_cost: list[float] = field(default_factory=list)
    rows: list[tuple[list[int], list[float], float, float]] = field(default_factory=list)

    def add_col(self, lb: float, ub: float, integer: bool = False, cost: float = 0.0) -> int:
        self.col_lb.append(lb)
        self.col_ub.append(ub)
        self.col_int.append(integer)
        self.col_cost.append(cost)
        return len(self.col_lb) - 1

    def add_row(self, terms: dict[int, float], lo: float, hi: float = INF) -> None:
        idx = [c for c, v in terms.items() if v != 0.0]
        self.rows.append((idx, [terms[c] for c in idx], lo, hi))

    @property
    def num_cols(self) -> int:
        return len(self.col_lb)


# An order variable: a column index, or a fixed 0/1 decided before solving.
OrderVar = int | bool


@dataclass
class IlpInstance:
    """The MILP plus the maps back to ops, and the instance's windows."""

    model: MilpModel
    x: dict[OpKey, int]  # op -> start-time column
    makespan: int  # T column
    order: dict[tuple[int, int, int, int, int], OrderVar]  # (s, ka, i, kb, j) -> y
    windows: Windows
    upper_bound: float


class InfeasibleBound(ValueError):
    """The windows prove no schedule meets the upper bound (the bound was not a real makespan)."""


def _fix_pairs(
    s: int, ka: int, kb: int, n: int, win: Windows, dur: tuple[float, float, float],
    ub: float, cap: int | None, eps: float,
) -> list[list[OrderVar | None]]:
    """Per (i, j): True/False when the order of A_i and B_j is decided, None when free."""
    head, tail = win.head, win.tail
    lst = {k: ub - tail[k] for k in ((s, ka, i) for i in range(n))}
    lst.update({k: ub - tail[k] for k in ((s, kb, j) for j in range(n))})
    # Structural: A_i precedes B_j when i <= j (F_i < F_j < ... < B_j, etc.).
    last_one = list(range(n))  # largest i fixed to 1 in column j
    first_zero = [n] * n  # smallest i fixed to 0 in column j
    for j in range(n):
        b = (s, kb, j)
        for i in range(n):
            a = (s, ka, i)
            if head[b] + dur[kb] > lst[a] + eps:  # B_j cannot come first
                last_one[j] = max(last_one[j], i)
            if head[a] + dur[ka] > lst[b] + eps:  # A_i cannot come first
                first_zero[j] = min(first_zero[j], i)
        if cap is not None and (ka, kb) == (F, B):
            first_zero[j] = min(first_zero[j], j + cap)  # F_i waits for B_{i-cap}
    for j in range(1, n):  # y=1 at (i, j-1) implies y=1 at (i, j)
        last_one[j] = max(last_one[j], last_one[j - 1])
    for j in reversed(range(n - 1)):  # y=0 at (i, j+1) implies y=0 at (i, j)
        first_zero[j] = min(first_zero[j], first_zero[j + 1])
    grid: list[list[OrderVar | None]] = [[None] * n for _ in range(n)]
    for j in range(n):
        if last_one[j] >= first_zero[j]:
            raise InfeasibleBound(f"stage {s}: no order meets the makespan bound {ub:g}")
        for i in range(n):
            if i <= last_one[j]:
                grid[i][j] = True
            elif i >= first_zero[j]:
                grid[i][j] = False
    return grid


def build_instance(
    num_stages: int,
    num_microbatches: int,
    costs: StageCosts,
    delays: tuple[float, ...],
    upper_bound: float,
    activation_cap: int | None = None,
    strengthen: bool = True,
    lower_bound: float | None = None,
) -> IlpInstance:
    """The MILP for the instance, with every window computed for makespan <= ``upper_bound``.
    ``lower_bound`` raises the makespan's floor above the windows' bound (one proven
    elsewhere). ``strengthen=False`` drops the windows and load rows (the plain disjunctive
    model, for checking that the strengthening is valid). Raises ``InfeasibleBound`` when the
    windows alone show that no schedule fits."""
    S, N = num_stages, num_microbatches
    if strengthen:
        win = compute_windows(S, N, costs, delays, activation_cap)
    else:
        win = trivial_windows(S, N, costs)
    ub = upper_bound
    eps = 1e-9 * max(1.0, ub)
    floor = max(win.lower_bound, lower_bound if lower_bound is not None else -INF)
    if floor > ub + eps:
        raise InfeasibleBound(f"lower bound {floor:g} exceeds the upper bound {ub:g}")
    m = MilpModel()
    tcol = m.add_col(floor, ub, cost=1.0)
    x = {k: m.add_col(win.head[k], max(win.head[k], ub - win.tail[k])) for k in win.head}
    order: dict[tuple[int, int, int, int, int], OrderVar] = {}
    for s in range(S):
        dur = (costs.tf[s], costs.tb[s], costs.tw[s])
        for ka, kb in PAIRS:
            grid = _fix_pairs(s, ka, kb, N, win, dur, ub, activation_cap, eps)
            for i in range(N):
                for j in range(N):
                    g = grid[i][j]
                    order[(s, ka, i, kb, j)] = m.add_col(0, 1, integer=True) if g is None else g
            _add_pair_rows(m, s, ka, kb, N, grid, order, x, win, dur, ub)
        if activation_cap is not None:
            _add_cap_rows(m, s, N, order, activation_cap)
        if strengthen:
            _add_load_rows(m, s, N, order, x, tcol, win.stage_start[s], dur)
    # T covers each kind's last op and its tail (the chains then cover every op).
    for s in range(S):
        for k in (F, B, W):
            last = (s, k, N - 1)
            m.add_row({tcol: 1.0, x[last]: -1.0}, win.tail[last])
    _add_precedence_rows(m, S, N, costs, delays, x)
    return IlpInstance(m, x, tcol, order, win, ub)


def _add_precedence_rows(
    m: MilpModel, S: int, N: int, costs: StageCosts, delays: tuple[float, ...],
    x: dict[OpKey, int],
) -> None:
    """Dependencies with link delays (PAPER.md 2) and the same-kind chains."""
    for s in range(S):
        tf, tb, tw = costs.tf[s], costs.tb[s], costs.tw[s]
        for j in range(N):
            if s > 0:
                m.add_row({x[(s, F, j)]: 1, x[(s - 1, F, j)]: -1}, costs.tf[s - 1] + delays[s - 1])
            if s == S - 1:
                m.add_row({x[(s, B, j)]: 1, x[(s, F, j)]: -1}, tf)
            else:
                m.add_row({x[(s, B, j)]: 1, x[(s + 1, B, j)]: -1}, costs.tb[s + 1] + delays[s])
            m.add_row({x[(s, W, j)]: 1, x[(s, B, j)]: -1}, tb)
            if j > 0:
                for k, d in ((F, tf), (B, tb), (W, tw)):
                    m.add_row({x[(s, k, j)]: 1, x[(s, k, j - 1)]: -1}, d)


def _add_pair_rows(
    m: MilpModel, s: int, ka: int, kb: int, N: int, grid: list[list[OrderVar | None]],
    order: dict[tuple[int, int, int, int, int], OrderVar], x: dict[OpKey, int], win: Windows,
    dur: tuple[float, float, float], ub: float,
) -> None:
    """Disjunctions of free pairs (tight big-M), decided pairs, monotonicity of the y's."""
    head, tail = win.head, win.tail
    da, db = dur[ka], dur[kb]
    for j in range(N):
        b = (s, kb, j)
        ones = [i for i in range(N) if grid[i][j] is True]
        if ones and max(ones) > j:  # decided beyond the structural i <= j: A_max before B_j
            m.add_row({x[b]: 1, x[(s, ka, max(ones))]: -1}, da)
        for i in range(N):
            if grid[i][j] is not None:
                continue
            a = (s, ka, i)
            y = order[(s, ka, i, kb, j)]
            m1 = (ub - tail[a]) + da - head[b]  # slack of "B_j after A_i" when y = 0
            m2 = (ub - tail[b]) + db - head[a]  # slack of "A_i after B_j" when y = 1
            m.add_row({x[b]: 1, x[a]: -1, y: -m1}, da - m1)  # y=1: B_j after A_i
            m.add_row({x[a]: 1, x[b]: -1, y: m2}, db)  # y=0: A_i after B_j
            if i + 1 < N and grid[i + 1][j] is None:
                m.add_row({y: 1, order[(s, ka, i + 1, kb, j)]: -1}, 0)
            if j + 1 < N and grid[i][j + 1] is None:
                m.add_row({order[(s, ka, i, kb, j + 1)]: 1, y: -1}, 0)
    for i in range(N):
        zeros = [j for j in range(N) if grid[i][j] is False]
        if zeros:  # B_max before A_i
            m.add_row({x[(s, ka, i)]: 1, x[(s, kb, max(zeros))]: -1}, db)


def _count(
    terms: dict[int, float], const: float, y: OrderVar, weight: float, positive: bool
) -> float:
    """Adds ``weight * y`` (or ``weight * (1 - y)``) to a linear form; returns the new constant."""
    if isinstance(y, bool):
        return const + weight * (y if positive else 1 - y)
    if positive:
        terms[y] = terms.get(y, 0.0) + weight
        return const
    terms[y] = terms.get(y, 0.0) - weight
    return const + weight


def _add_cap_rows(
    m: MilpModel, s: int, N: int, order: dict[tuple[int, int, int, int, int], OrderVar],
    cap: int,
) -> None:
    """Per F_i, in half micro-batches: 2i - (#B before F_i) - (#W before F_i) <= 2K - 2,
    written as sum over j of y[F_i, B_j] + y[F_i, W_j] <= 2K - 2 - 2i + 2N."""
    for i in range(N):
        terms: dict[int, float] = {}
        const = 0.0
        for kb in (B, W):
            for j in range(N):
                const = _count(terms, const, order[(s, F, i, kb, j)], 1.0, True)
        hi = 2 * cap - 2 - 2 * i + 2 * N - const
        if terms:
            m.add_row(terms, -INF, hi)
        elif hi < 0:  # every pair is fixed and breaks the cap: the bound cannot be met
            raise InfeasibleBound(f"stage {s}: F{i} exceeds the activation cap {cap}")


def _add_load_rows(
    m: MilpModel, s: int, N: int, order: dict[tuple[int, int, int, int, int], OrderVar],
    x: dict[OpKey, int], tcol: int, start: float, dur: tuple[float, float, float],
) -> None:
    """x_op >= stage start + work before the op; T >= x_op + work from the op on."""
    tf, tb, tw = dur
    total = N * (tf + tb + tw)
    for kind in (F, B, W):
        for n in range(N):
            before: dict[int, float] = {}
            c = n * dur[kind]  # same-kind ops before it
            for other in (F, B, W):
                if other == kind:
                    continue
                for o in range(N):
                    if (kind, other) in PAIRS:  # y = kind_n before other_o
                        c = _count(before, c, order[(s, kind, n, other, o)], dur[other], False)
                    else:  # y = other_o before kind_n
                        c = _count(before, c, order[(s, other, o, kind, n)], dur[other], True)
            head_row = {x[(s, kind, n)]: 1.0}
            for col, v in before.items():
                head_row[col] = head_row.get(col, 0.0) - v
            m.add_row(head_row, start + c)
            # Work from the op on = total - work before it.
            tail_row = {tcol: 1.0, x[(s, kind, n)]: -1.0}
            for col, v in before.items():
                tail_row[col] = tail_row.get(col, 0.0) + v
            m.add_row(tail_row, total - c)
