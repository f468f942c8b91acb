"""Simulator knobs (PAPER.md 7): compute stragglers, GPipe, activation caps, schedule files.

Properties on seeded random instances, then ``pmctl simulate`` through a real subprocess.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest

from engine.planner.activations import inflight_peaks
from engine.planner.costs import StageCosts
from engine.planner.errors import PlanningError
from engine.planner.generators import GENERATORS, generate
from engine.planner.instances import random_instance
from engine.planner.ir import OpKind
from engine.planner.schedule_file import parse_schedule_text
from engine.planner.simulate import simulate

# Generators whose plan depends on the cap only where it binds (pipemorph+ searches, and
# its search visits capped candidates, so a loose cap may still change what it finds).
EXACT = ("1f1b", "zb", "greedy", "pipemorph", "gpipe")


def instances(count: int, seed: str):
    rng = random.Random(seed)
    for _ in range(count):
        S, N = rng.randint(2, 5), rng.randint(1, 10)
        yield random_instance(S, N, rng.choice([5, 10, 20]), rng)


def pmctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pmctl", "simulate", *args], capture_output=True, text=True, timeout=120
    )


# --- activation cap -----------------------------------------------------------------------


def test_a_cap_that_never_binds_changes_nothing():
    for inst in instances(25, "cap-loose"):
        S, N, c, d = inst.num_stages, inst.num_microbatches, inst.costs, inst.delays
        for name in EXACT:
            free = generate(name, S, N, c, d)
            loose = math.ceil(max(inflight_peaks(free)))
            assert generate(name, S, N, c, d, activation_cap=loose) == free, (name, inst)
            assert generate(name, S, N, c, d, activation_cap=loose + 3) == free, (name, inst)


def test_every_generator_keeps_every_stage_under_the_cap():
    for inst in instances(12, "cap-tight"):
        S, N, c, d = inst.num_stages, inst.num_microbatches, inst.costs, inst.delays
        for name in GENERATORS:
            for cap in (1, 2, 3):
                sched = generate(name, S, N, c, d, activation_cap=cap)
                r = simulate(sched, c, d)  # validates: every op once, no deadlock
                assert max(r.peak_inflight) <= cap, (name, cap, inst)
                assert r.peak_inflight == inflight_peaks(sched)


def test_cap_accounting_counts_b_and_w_as_halves():
    # ZB on S=4, N=12, equal costs: stage 0 holds 7 forwards, then B/F pairs (+0.5 each)
    # until W's free the rest: 9.5 in flight by the cap's measure, 12 between F and W.
    c = StageCosts.uniform(4, 10, 10, 10)
    r = simulate(generate("zb", 4, 12, c), c, (0, 0, 0))
    assert r.peak_inflight == [9.5, 8.5, 7.5, 6.5]
    assert r.peak_activations == [12, 12, 12, 12]
    capped = simulate(generate("zb", 4, 12, c, activation_cap=8), c, (0, 0, 0))
    assert max(capped.peak_inflight) == 8
    # 1F1B's full backward frees a whole micro-batch: warm-up min(S-1-s, K-1).
    one = generate("1f1b", 4, 12, c, activation_cap=2)
    assert one.warmup() == [2, 2, 2, 1] and inflight_peaks(one) == [2, 2, 2, 1]


def test_a_cap_below_one_is_refused():
    c = StageCosts.uniform(3, 1, 1, 1)
    for bad in (0, -1):
        with pytest.raises(PlanningError, match="activation cap"):
            generate("zb", 3, 4, c, activation_cap=bad)


def test_tighter_caps_cost_time_on_the_zb_anchor():
    c = StageCosts.uniform(4, 10, 10, 10)
    times = [simulate(generate("zb", 4, 12, c, activation_cap=k), c, (0, 0, 0)).iteration_time
             for k in (1, 2, 4, 8)]
    assert times == sorted(times, reverse=True) and times[0] > times[-1]
    # Cap 1: stage 0 starts micro-batch j+1 only after W j (B leaves half of j in flight), so
    # each micro-batch takes the F wave, the B wave and stage 0's W.
    assert times[0] == 12 * (4 * 10 + 4 * 10 + 10)


# --- GPipe ----------------------------------------------------------------------------------


def test_gpipe_runs_all_forwards_then_all_b_then_all_w():
    sched = generate("gpipe", 3, 5, StageCosts.uniform(3, 3, 2, 1))
    for ops in sched.stages:
        assert [op.kind for op in ops] == [OpKind.F] * 5 + [OpKind.B] * 5 + [OpKind.W] * 5
        assert [op.mb for op in ops] == list(range(5)) * 3


def test_gpipe_meets_the_textbook_formula_with_uniform_costs():
    """(N + S - 1)(tF + tB) for the forward and backward waves, then stage 0's N deferred W's,
    plus every link's delay once each way."""
    rng = random.Random("gpipe")
    for _ in range(30):
        S, N = rng.randint(1, 6), rng.randint(1, 12)
        tf, tb, tw = (rng.randint(1, 9) for _ in range(3))
        delays = tuple(rng.randint(0, 5) for _ in range(S - 1))
        c = StageCosts.uniform(S, tf, tb, tw)
        r = simulate(generate("gpipe", S, N, c, delays), c, delays)
        assert r.iteration_time == (N + S - 1) * (tf + tb) + N * tw + 2 * sum(delays)


# --- compute stragglers ---------------------------------------------------------------------


def test_slowing_every_stage_by_f_scales_every_schedule_by_f():
    for inst in instances(10, "slow-all"):
        S, N, c = inst.num_stages, inst.num_microbatches, inst.costs
        healthy = (0,) * (S - 1)
        slow = c.slowed((3,) * S)
        for name in GENERATORS:
            base = simulate(generate(name, S, N, c), c, healthy).iteration_time
            assert simulate(generate(name, S, N, slow), slow, healthy).iteration_time == 3 * base


def test_each_slow_stage_uses_its_own_factor():
    c = StageCosts.uniform(4, 10, 20, 30).slowed((2, 1, 1.5, 1))
    assert c.tf == (20, 10, 15, 10) and c.tb == (40, 20, 30, 20) and c.tw == (60, 30, 45, 30)
    assert all(isinstance(x, int) for x in c.tf)  # whole results stay exact integers


def test_a_slower_stage_never_speeds_a_fixed_order_up():
    for inst in instances(10, "slow-one"):
        S, N, c, d = inst.num_stages, inst.num_microbatches, inst.costs, inst.delays
        order = generate("zb", S, N, c)
        base = simulate(order, c, d).iteration_time
        for s in range(S):
            factors = tuple(1.5 if t == s else 1 for t in range(S))
            assert simulate(order, c.slowed(factors), d).iteration_time >= base


def test_a_lone_slow_stage_just_runs_its_work_slower():
    c = StageCosts.uniform(1, 3, 4, 5)
    for name in GENERATORS:
        assert simulate(generate(name, 1, 7, c), c.slowed((2,)), ()).iteration_time == 7 * 24


# --- schedule files -------------------------------------------------------------------------


def test_printed_schedules_parse_back_and_replay_the_same():
    for inst in instances(6, "roundtrip"):
        S, N, c, d = inst.num_stages, inst.num_microbatches, inst.costs, inst.delays
        for name in GENERATORS:
            sched = generate(name, S, N, c, d)
            back = parse_schedule_text(sched.to_text(), "plan.txt")
            assert back == sched
            assert simulate(back, c, d).iteration_time == simulate(sched, c, d).iteration_time


@pytest.mark.parametrize(
    "text,needle",
    [
        ("F0 B0 W0\nF0 X0 W0\n", "plan.txt:2: bad op 'X0'"),
        ("F0 W0 B0\nF0 B0 W0\n", "plan.txt:1: stage 0: W0 comes before its B0"),
        ("# comment\n\nF0 B0 F1 B1 W0 W1\nF0 F1 B0 B1 W0 W1\n", "plan.txt:3: schedule deadlocks"),
        ("F0 B0 W0\nF0 B0\n", "plan.txt:2: stage 1: W0 is missing"),
        ("\n# nothing\n", "plan.txt: no stages"),
    ],
)
def test_schedule_text_errors_name_the_file_and_line(text, needle):
    with pytest.raises(PlanningError) as err:
        parse_schedule_text(text, "plan.txt")
    assert needle in str(err.value) and "\n" not in str(err.value)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_slow_stages_scale_each_stage_by_its_own_factor():
    out = pmctl("--schedule", "1f1b", "--slow-stage", "2=1.5", "--slow-stage", "0=2", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    took = {(o["stage"], o["op"]): o["end"] - o["start"] for o in data["ops"]}
    assert took[(0, "F")] == 20 and took[(1, "F")] == 10 and took[(2, "F")] == 15
    assert took[(2, "BW")] == 30 and took[(3, "BW")] == 20
    assert data["slow_stages"] == [2, 1, 1.5, 1]
    healthy = json.loads(pmctl("--schedule", "1f1b", "--json").stdout)
    assert data["iteration_time"] > healthy["iteration_time"]


def test_cli_gpipe_and_activation_cap_report_peaks():
    data = json.loads(pmctl("--schedule", "gpipe", "--json").stdout)
    assert data["iteration_time"] == 15 * 20 + 12 * 10 and data["peak_inflight"] == [12] * 4
    out = pmctl("--schedule", "zb", "--activation-cap", "8", "--json")
    capped = json.loads(out.stdout)
    assert capped["activation_cap"] == 8 and max(capped["peak_inflight"]) == 8
    human = pmctl("--schedule", "zb", "--activation-cap", "8")
    assert human.returncode == 0, human.stderr
    assert "peak in flight" in human.stdout and "activation cap" in human.stdout


def test_cli_schedule_file_round_trip(tmp_path):
    planned = json.loads(pmctl("--schedule", "pipemorph", "--delay", "1_2=25", "--json").stdout)
    plan = tmp_path / "plan.txt"
    plan.write_text("\n".join(" ".join(ops) for ops in planned["order"]) + "\n")
    out = pmctl("--schedule-file", str(plan), "--delay", "1_2=25", "--json")
    assert out.returncode == 0, out.stderr
    replayed = json.loads(out.stdout)
    assert replayed["order"] == planned["order"]
    assert replayed["iteration_time"] == planned["iteration_time"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--slow-stage", "4=2"], "stage 4 is outside 0..3"),
        (["--slow-stage", "1=0"], "must be > 0"),
        (["--slow-stage", "1=-2"], "must be > 0"),
        (["--slow-stage", "1:2"], "expected STAGE=FACTOR"),
        (["--slow-stage", "1=fast"], "is not a number"),
        (["--slow-stage", "1=2", "--slow-stage", "1=3"], "given twice"),
        (["--activation-cap", "0"], "--activation-cap 0: must be >= 1"),
        (["--schedule-file", "/nonexistent/plan.txt"], "cannot read the schedule file"),
    ],
)
def test_cli_bad_knobs_are_one_line_and_exit_2(args, needle):
    out = pmctl(*args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert out.stdout == ""


def test_cli_schedule_file_errors(tmp_path):
    plan = tmp_path / "plan.txt"
    plan.write_text("F0 F1 B0 W0 B1 W1\nF0 B0 W0 F1 B1 W1\nF0 B0 W0 F1 Q1 W1\n")
    cases = [
        ([], f"{plan}:3: bad op 'Q1'"),
        (["--schedule", "zb"], "give one of them"),
    ]
    for extra, needle in cases:
        out = pmctl("--schedule-file", str(plan), *extra)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    plan.write_text("F0 F1 B0 W0 B1 W1\nF0 B0 F1 B1 W0 W1\n")
    for extra, needle in [(["--stages", "3"], "has 2 stage lines"),
                          (["--activation-cap", "1"], "over the activation cap 1"),
                          (["--plan-delay", "0_1=5"], "drop --plan-delay")]:
        out = pmctl("--schedule-file", str(plan), *extra)
        assert out.returncode == 2 and needle in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_the_ilp_counts_the_cap_as_the_generators_do():
    """Every capped generator's plan is feasible for the capped ILP, so its optimum is never
    slower (a stricter F..W count would make it lose to them), and it keeps the cap."""
    ilp = pytest.importorskip("engine.planner.ilp")
    rng = random.Random("ilp-cap")
    for _ in range(3):
        inst = random_instance(3, 4, 10, rng)
        c, d = inst.costs, inst.delays
        for cap in (1, 2):
            res = ilp.solve_ilp(3, 4, c, d, time_limit_s=20, activation_cap=cap)
            assert res.proven_optimal
            assert max(inflight_peaks(res.schedule)) <= cap
            best = min(
                simulate(generate(n, 3, 4, c, d, activation_cap=cap), c, d).iteration_time
                for n in ("zb", "pipemorph", "gpipe", "1f1b")
            )
            assert res.makespan <= best
    # Where the cap's half-counting lets B'd micro-batches wait for their W: ZB under a cap of 3
    # holds 4 between F and W on stage 0, and the ILP must count it the same way to match it.
    c = StageCosts.uniform(3, 10, 10, 30)
    zb = simulate(generate("zb", 3, 6, c, activation_cap=3), c, (0, 0))
    assert zb.peak_activations[0] == 4 and max(zb.peak_inflight) == 3
    res = ilp.solve_ilp(3, 6, c, (0, 0), time_limit_s=20, activation_cap=3)
    assert res.proven_optimal and res.makespan == zb.iteration_time == 320
