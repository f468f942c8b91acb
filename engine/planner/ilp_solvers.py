"""MILP back-ends for ``ilp``: HiGHS through ``highspy`` and CBC through PuLP.

Each returns the incumbent, its objective and the solver's best *dual bound*; whether
optimality was proven is decided by the caller from those two numbers, never from a status
string (PuLP reports "Optimal" after a time-limited CBC stop).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.planner.ilp_model import INF, MilpModel


@dataclass(frozen=True)
class SolverOutcome:
    """What a back-end found within its limit."""

    solver_name: str
    status: str  # the solver's own words, for the record
    values: list[float] | None  # incumbent column values, None when none was found
    objective: float  # incumbent objective (inf when none)
    bound: float  # best proven lower bound on the optimum
    seconds: float


def available_solvers() -> list[str]:
    """Back-ends importable here, best first."""
    names = []
    try:
        import highspy  # noqa: F401

        names.append("highs")
    except ImportError:
        pass
    try:
        import pulp

        if _bundled_cbc(pulp, msg=False).available():
            names.append("cbc")
    except ImportError:
        pass
    return names


def solve(
    model: MilpModel, solver: str, time_limit_s: float, start: list[float] | None,
    abs_gap: float,
) -> SolverOutcome:
    """Minimises ``model`` with ``solver`` ("highs" or "cbc"), stopping once the incumbent is
    within ``abs_gap`` of the bound (an integral-data proof) or at the time limit."""
    if solver == "highs":
        return _solve_highs(model, time_limit_s, start, abs_gap)
    if solver == "cbc":
        return _solve_cbc(model, time_limit_s, start, abs_gap)
    raise ValueError(f"unknown ILP solver {solver!r}: use auto, highs or cbc")


def _solve_highs(
    model: MilpModel, time_limit_s: float, start: list[float] | None, abs_gap: float
) -> SolverOutcome:
    import highspy
    import numpy as np

    with _stdout_silenced():  # HiGHS prints a banner on stdout (breaks `--json` output)
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", float(abs_gap))
    h.setOptionValue("threads", 1)  # deterministic, and kind to shared machines
    h.setOptionValue("random_seed", 0)
    n = model.num_cols
    empty_i = np.zeros(0, dtype=np.int32)
    h.addCols(
        n, np.array(model.col_cost, dtype=np.float64), _finite(model.col_lb),
        _finite(model.col_ub), 0, np.zeros(n, dtype=np.int32), empty_i, np.zeros(0),
    )
    ints = np.array([i for i, b in enumerate(model.col_int) if b], dtype=np.int32)
    if len(ints):
        h.changeColsIntegrality(len(ints), ints, np.ones(len(ints), dtype=np.uint8))
    starts, idx, vals, lo, hi = [], [], [], [], []
    for cols, coefs, rlo, rhi in model.rows:
        starts.append(len(idx))
        idx.extend(cols)
        vals.extend(coefs)
        lo.append(rlo)
        hi.append(rhi)
    h.addRows(
        len(lo), _finite(lo), _finite(hi), len(idx), np.array(starts, dtype=np.int32),
        np.array(idx, dtype=np.int32), np.array(vals, dtype=np.float64),
    )
    if start is not None:
        sol = highspy.HighsSolution()  # the dense form works on every highspy >= 1.7
        sol.col_value = list(start)
        h.setSolution(sol)
    t0 = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - t0
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    values = None
    objective = INF
    if info.primal_solution_status == 2:  # kSolutionStatusFeasible
        values = list(h.getSolution().col_value)
        objective = float(info.objective_function_value)
    bound = float(info.mip_dual_bound)
    return SolverOutcome("highs", status, values, objective, bound, seconds)


@contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Points file descriptor 1 at /dev/null for the block (C code bypasses sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _finite(values: list[float]):
    import numpy as np

    arr = np.array(values, dtype=np.float64)
    return np.clip(arr, -1e30, 1e30)


def _bundled_cbc(pulp: Any, **options: Any) -> Any:
    """PuLP's bundled CBC (deprecated in PuLP 3.3 in favour of a separate CBC install, but
    the one every PuLP < 4 ships)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pulp.PULP_CBC_CMD(**options)


_CBC_RESULT = re.compile(r"^Result - (.+)$", re.M)
_CBC_OBJ = re.compile(r"^Objective value:\s+(\S+)", re.M)
_CBC_BOUND = re.compile(r"^Lower bound:\s+(\S+)", re.M)


def _solve_cbc(
    model: MilpModel, time_limit_s: float, start: list[float] | None, abs_gap: float
) -> SolverOutcome:
    import pulp

    prob = pulp.LpProblem("pipeline_makespan", pulp.LpMinimize)
    cols = [
        pulp.LpVariable(
            f"c{i}", lowBound=None if lb == -INF else lb, upBound=None if ub == INF else ub,
            cat=pulp.LpInteger if integer else pulp.LpContinuous,
        )
        for i, (lb, ub, integer) in enumerate(zip(model.col_lb, model.col_ub, model.col_int))
    ]
    prob += pulp.lpSum(c * v for c, v in zip(model.col_cost, cols) if c)
    for r, (idx, coefs, lo, hi) in enumerate(model.rows):
        expr = pulp.lpSum(cols[i] * v for i, v in zip(idx, coefs))
        if lo == hi:
            prob += (expr == lo, f"r{r}")
        else:
            if lo != -INF:
                prob += (expr >= lo, f"r{r}l")
            if hi != INF:
                prob += (expr <= hi, f"r{r}u")
    if start is not None:
        for v, s in zip(cols, start):
            v.setInitialValue(round(s) if v.cat == pulp.LpInteger else s)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "cbc.log"
        cmd = _bundled_cbc(
            pulp,
            msg=False, timeLimit=time_limit_s, warmStart=start is not None, threads=1,
            logPath=str(log), gapAbs=abs_gap, gapRel=0.0,
        )
        t0 = time.perf_counter()
        prob.solve(cmd)
        seconds = time.perf_counter() - t0
        text = log.read_text() if log.exists() else ""
    result = _CBC_RESULT.search(text)
    status = result.group(1).strip() if result else pulp.LpStatus[prob.status]
    obj_m = _CBC_OBJ.search(text)
    has_solution = obj_m is not None and prob.sol_status in (1, 2)
    values = [v.varValue or 0.0 for v in cols] if has_solution else None
    objective = float(obj_m.group(1)) if has_solution else INF
    bound_m = _CBC_BOUND.search(text)
    if bound_m:
        bound = float(bound_m.group(1))
    elif status.startswith("Optimal"):
        # CBC proved it within the requested gap. Reported as the objective itself: the
        # caller rounds bounds up for integer data, and objective - gap would round to one
        # below the optimum (a proven optimum read back as unproven).
        bound = objective
    else:
        bound = -INF
    return SolverOutcome("cbc", status, values, objective, bound, seconds)
