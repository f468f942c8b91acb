"""PipeMorph re-plans with the paper's rule (PAPER.md 3), PipeMorph+ with ours, and the op log's
iteration record names the generator of every iteration's schedule.

The pure decisions run through ``engine.adapter.Adapter``; one real engine job per method (4
local stages, tiny preset, paced ops, a slow last link from iteration 2) checks what the
stages log.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.adapter import Adapter, Basis
from engine.methods import METHODS, resolve_method
from engine.oplog import IterationRecord, read_records, read_typed
from engine.planner.adapt import adapted_warmup
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.simulate import simulate
from injector.trace import HEALTHY, Fault
from tests.jobs import run_job

S, N = 4, 12
PROFILED = StageCosts((10.0, 11.0, 11.0, 12.0), (12.0,) * 4, (6.0,) * 4)
SLOW = Fault(((2, 3),), (0.03,), since_iteration=2)  # 30 ms on the last link


def rule(tf: list[float], delays_ms: list[float], n: int) -> list[int]:
    """The paper's warm-up written out: w_{S-1} = 1, w_s = w_{s+1} + ceil(c_s / tF[s]) + 2,
    capped at the micro-batches."""
    w = [1] * len(tf)
    for s in range(len(tf) - 2, -1, -1):
        w[s] = w[s + 1] + math.ceil(delays_ms[s] / tf[s] - 1e-9) + 2
    return [min(x, n) for x in w]


def test_registry_pipemorph_is_the_paper_rule_and_pipemorph_plus_is_ours():
    pm, plus = METHODS["pipemorph"], METHODS["pipemorph+"]
    assert (pm.adapt_generator, plus.adapt_generator) == ("pipemorph", "pipemorph+")
    assert plus.label == "PipeMorph+ (ours)" and plus.artifact_name is None
    assert (plus.offload, plus.healthy_schedule) == (pm.offload, pm.healthy_schedule) == ("on-fault", "zb")
    assert resolve_method("PipeMorph+ (ours)") is plus and resolve_method("pipemorph+") is plus
    assert resolve_method("ZB-CPU-ReSchedule") is pm  # the artifact's PipeMorph is the rule
    assert len({m.color for m in METHODS.values()}) == len({m.marker for m in METHODS.values()}) == len(METHODS)


def test_adapter_plans_the_rule_for_pipemorph_and_ours_for_pipemorph_plus():
    delays = (0.0, 0.0, 30.0)
    pm = Adapter(METHODS["pipemorph"], S, N)
    healthy = pm.plan(2, SLOW, Basis((0.0,) * 3, "injected"), PROFILED)
    assert healthy.generator == "zb" and healthy.schedule == pm.healthy and healthy.offload
    plan = pm.plan(3, SLOW, Basis((0.0, 0.0, 0.03), "injected"), PROFILED)
    assert plan.generator == "pipemorph" and "generator" not in plan.fault
    assert plan.schedule.warmup() == rule(list(PROFILED.tf), list(delays), N) == [10, 8, 6, 1]
    assert plan.schedule == generate("pipemorph", S, N, PROFILED, delays)
    plus = Adapter(METHODS["pipemorph+"], S, N).plan(3, SLOW, Basis((0.0, 0.0, 0.03), "injected"), PROFILED)
    assert plus.generator == "pipemorph+" and plus.schedule == generate("pipemorph+", S, N, PROFILED, delays)
    assert plus.offload and plus.fault["planned_for_ms"] == plan.fault["planned_for_ms"] == list(delays)
    # ours is never slower than the rule under the delays it planned for
    ours, paper = (simulate(p.schedule, PROFILED, delays).iteration_time for p in (plus, plan))
    assert ours <= paper + 1e-9
    back = pm.plan(6, HEALTHY, Basis((0.0,) * 3, "injected"), PROFILED)
    assert back.generator == "zb" and back.schedule == pm.healthy


def test_the_rule_says_when_the_cap_at_n_bites():
    # 100 ms on link 0-1 asks w_0 = 5 + 10 + 2 = 17 > N = 12: capped, and the plan says so
    fault = Fault(((0, 1),), (0.1,), since_iteration=2)
    plan = Adapter(METHODS["pipemorph"], S, N).plan(3, fault, Basis((0.1, 0.0, 0.0), "injected"), PROFILED)
    assert plan.schedule.warmup()[0] == N == adapted_warmup(PROFILED, (100.0, 0.0, 0.0), N)[0]
    assert any("exceeds N=12" in n for n in plan.fault["notes"])


def test_old_logs_keep_their_generator_in_the_fault_view():
    old = {"kind": "iteration", "iter": 3, "stage": 0, "schedule": [], "offload": True,
           "fault": {"generator": "pipemorph+", "planned_for_ms": [0.0, 0.0, 30.0]}}
    rec = IterationRecord.from_json(old)
    assert rec.generator is None and rec.schedule_generator == "pipemorph+"
    assert "generator" not in rec.to_json()  # read back as written
    new = IterationRecord.from_json({**old, "generator": "pipemorph", "fault": {}})
    assert new.schedule_generator == "pipemorph" and new.to_json()["generator"] == "pipemorph"


# -- the engine's op logs -------------------------------------------------------------------

PACE = "10,12,6"  # F, B, W ms: a dedicated device per stage on 2 shared cores
DELAY_S, FAULT_AT, ITERS = 0.03, 2, 4


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """``logged(method)``: stage 0's iteration records of a real 4-stage job of ``method``."""
    base = tmp_path_factory.mktemp("paper_rule")
    done: dict[str, dict[int, IterationRecord]] = {}

    def get(method: str) -> dict[int, IterationRecord]:
        if method not in done:
            out = base / method.replace("+", "_plus")
            res = run_job(["--preset", "tiny", "--method", method, "--stages", str(S),
                           "--iterations", str(ITERS), "--microbatches", str(N), "--pace", PACE,
                           "--links", "2_3", "--delay", str(DELAY_S), "--fault-at", str(FAULT_AT),
                           "--out", str(out), "--timeout", "30"], nproc=S, timeout=180)
            assert res.returncode == 0, res.stderr[-3000:]
            heads = read_typed(Path(out))[1]
            assert {h.stage for h in heads} == set(range(S))
            # the name is on every iteration record itself, as the stages wrote it
            raw = [r for r in read_records(Path(out)) if r["kind"] == "iteration"]
            assert len(raw) == S * ITERS and all(isinstance(r["generator"], str) for r in raw)
            # every stage logs the same generator for the same iteration
            for it in range(ITERS):
                assert len({h.generator for h in heads if h.iteration == it}) == 1
            done[method] = {h.iteration: h for h in heads if h.stage == 0}
        return done[method]

    return get


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_engine_pipemorph_logs_the_paper_rule_warmup(logged):
    heads = logged("pipemorph")
    assert [heads[i].generator for i in range(ITERS)] == ["zb"] * (FAULT_AT + 1) + ["pipemorph"] * (ITERS - FAULT_AT - 1)
    for it in range(FAULT_AT + 1, ITERS):  # re-planned from the iteration after the fault
        h = heads[it]
        tf, delays = h.costs["tf"], h.fault["planned_for_ms"]
        assert delays == [0.0, 0.0, DELAY_S * 1000.0]
        warmup = [sum(1 for _ in _leading_forwards(ops)) for ops in h.schedule]
        assert warmup == rule(tf, delays, N), (warmup, tf)
        assert warmup[2] > 3  # the stage before the slow link holds extra forwards


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_engine_pipemorph_plus_names_its_generator(logged):
    heads = logged("pipemorph+")
    assert [heads[i].generator for i in range(ITERS)] == ["zb"] * (FAULT_AT + 1) + ["pipemorph+"] * (ITERS - FAULT_AT - 1)
    h = heads[ITERS - 1]
    costs = StageCosts(**{k: tuple(v) for k, v in h.costs.items()})
    planned = generate("pipemorph+", S, N, costs, tuple(h.fault["planned_for_ms"]))
    assert h.schedule == planned.to_lists() and h.offload


def _leading_forwards(ops: list[str]):
    for op in ops:
        if not op.startswith("F"):
            return
        yield op
