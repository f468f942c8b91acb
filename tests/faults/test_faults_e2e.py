"""End to end on 4 local stages (tiny preset, paced ops, gloo) with a real control plane.

One trace drives every run: link 2-3 slow (50 ms) from iteration 3, healthy from 6, down
(``inf``) from 8. Each run is made once per module and shared by the tests that read it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.healthy_plan import healthy_schedule
from engine.methods import METHODS, resolve_method
from engine.oplog import iteration_times_ms, read_records
from engine.planner.adapt import adapted_warmup
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import Schedule
from injector.control import ControlClient
from tests.jobs import run_job

ADAPT = METHODS["pipemorph"].adapt_generator  # the generator PipeMorph re-plans with

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

S, N, ITERS = 4, 8, 10
PACE = "10,12,6"  # F, B, W ms: each stage behaves like a dedicated device on 2 shared cores
DELAY_S, FAULT_AT, HEALTHY_AT, CRASH_AT = 0.05, 3, 6, 8
TRACE = f"{FAULT_AT};2_3;{DELAY_S}\n{HEALTHY_AT};;0\n{CRASH_AT};2_3;inf\n"
RUNS = {
    "zb": ("zb", []),
    "pipemorph": ("pipemorph", []),
    "pipemorph-cpu": ("pipemorph-cpu", []),
    "detect": ("pipemorph", ["--detect"]),
}


@dataclass
class Run:
    name: str
    returncode: int
    stdout: str
    stderr: str
    out: Path
    control: ControlClient

    @property
    def records(self) -> list[dict]:
        return read_records(self.out)

    def times(self) -> dict[int, float]:
        return iteration_times_ms(self.records)

    def header(self, it: int, stage: int = 0) -> dict:
        return next(
            r for r in self.records
            if r["kind"] == "iteration" and r["iter"] == it and r["stage"] == stage
        )

    def schedule(self, it: int) -> Schedule:
        return Schedule.from_lists(self.header(it)["schedule"], N)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, redis_server):
    """``runs(name)``: the finished torchrun job ``name`` of ``RUNS`` (made on first use)."""
    base = tmp_path_factory.mktemp("faults")
    trace = base / "link23.trace"
    trace.write_text(TRACE)
    done: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in done:
            method, extra = RUNS[name]
            out = base / name
            res = run_job(
                ["--preset", "tiny", "--method", method, "--iterations", str(ITERS),
                 "--microbatches", str(N), "--pace", PACE, "--trace", str(trace),
                 "--control", redis_server.url, "--run-id", name, "--out", str(out),
                 "--dump-grads", str(out / "grads"), "--timeout", "30", *extra],
                nproc=S, timeout=240, launcher="torchrun",
                env={"PMCTL_CONTROL_PASSWORD_FILE": str(redis_server.password_file)},
            )
            control = ControlClient(redis_server.url, name, password=redis_server.password)
            done[name] = Run(name, res.returncode, res.stdout, res.stderr, out, control)
        return done[name]

    return get


def mean(times: dict[int, float], its) -> float:
    return statistics.fmean(times[i] for i in its)


FAULTY = range(FAULT_AT + 1, HEALTHY_AT)  # fault in force and PipeMorph re-planned
HEALTHY = (1, 2, HEALTHY_AT + 1)


def test_zb_grows_by_at_least_the_delay_per_message(runs):
    zb = runs("zb")
    t = zb.times()
    last = S - 1
    for it in range(FAULT_AT, HEALTHY_AT):
        ops = [r for r in zb.records if r["kind"] == "op" and r["iter"] == it]
        sends = [r for r in ops if r["stage"] == last and r["op"] == "SEND_B"]
        assert len(sends) == N and all(r["delay_ms"] == DELAY_S * 1000 for r in sends)
        # inline: the last stage's compute blocks DELAY before each of its N gradient sends,
        # so its iteration holds all its compute plus N delays (head-of-line blocking)
        compute = sum(r["end_ms"] - r["start_ms"] for r in ops
                      if r["stage"] == last and r["op"] in ("F", "B", "W"))
        assert t[it] >= compute + N * DELAY_S * 1000.0, (it, t[it], compute)
    # against the healthy iterations (their times inflate when the host is busy, so a margin)
    growth = mean(t, range(FAULT_AT, HEALTHY_AT)) - min(t[i] for i in HEALTHY)
    assert growth >= 0.5 * N * DELAY_S * 1000.0, t
    assert all(zb.schedule(i) == zb.schedule(0) for i in range(CRASH_AT))  # never adapts


def test_pipemorph_replans_from_the_next_iteration_and_beats_zb(runs):
    pm, zb = runs("pipemorph"), runs("zb")
    healthy = healthy_schedule(resolve_method("zb"), S, N)
    assert pm.schedule(FAULT_AT) == healthy and pm.header(FAULT_AT)["offload"]
    for it in FAULTY:
        h = pm.header(it)
        assert h["generator"] == ADAPT == "pipemorph"  # the paper's rule
        assert h["fault"]["planned_for_ms"] == [0.0, 0.0, DELAY_S * 1000.0]
        costs = StageCosts(**{k: tuple(v) for k, v in h["costs"].items()})
        expected = generate(ADAPT, S, N, costs, (0.0, 0.0, DELAY_S * 1000.0))
        assert pm.schedule(it) == expected  # the planner's plan for the logged costs
        delays = (0.0, 0.0, DELAY_S * 1000.0)
        assert expected.warmup() == adapted_warmup(costs, delays, N)  # the paper's warm-up
        w, wz = expected.warmup(), healthy.warmup()
        assert w[2] > wz[2] and w[-1] == 1  # more in flight before the slow link 2-3
    # ZB pays the delay per message (N * delay), PipeMorph about once per direction; a busy
    # host inflates both runs' compute alike, so compare the difference, not the ratio
    tp, tz = pm.times(), zb.times()
    assert mean(tz, FAULTY) - mean(tp, FAULTY) >= 0.5 * N * DELAY_S * 1000.0, (tp, tz)


def test_pipemorph_cpu_lies_in_between(runs):
    tp, tc, tz = runs("pipemorph").times(), runs("pipemorph-cpu").times(), runs("zb").times()
    pm, cpu, zb = mean(tp, FAULTY), mean(tc, FAULTY), mean(tz, FAULTY)
    assert pm < cpu < zb, (pm, cpu, zb)
    assert runs("pipemorph-cpu").header(FAULT_AT + 1)["offload"]


def test_pipemorph_recovers_when_the_fault_clears(runs):
    pm = runs("pipemorph")
    healthy = healthy_schedule(resolve_method("zb"), S, N)
    assert not pm.header(HEALTHY_AT)["offload"]  # offload off at once
    after = pm.header(HEALTHY_AT + 1)
    assert pm.schedule(HEALTHY_AT + 1) == healthy and not after["offload"]
    assert after["link_delays_ms"] == [0.0, 0.0, 0.0] and after["costs"] is None
    t = pm.times()  # no delay paid any more (a busy host adds noise: half the fault's cost)
    assert t[HEALTHY_AT + 1] <= max(t[1], t[2]) + 0.5 * N * DELAY_S * 1000.0, t


def test_crash_pipemorph_continues_and_zb_fails_cleanly(runs):
    pm, zb = runs("pipemorph"), runs("zb")
    assert pm.returncode == 0, pm.stderr[-2000:]
    assert sorted(pm.times()) == list(range(ITERS))
    crash = pm.header(CRASH_AT + 1)["fault"]
    assert pm.header(CRASH_AT)["offload"] and pm.header(CRASH_AT + 1)["link_delays_ms"][2] is None
    assert any("is down" in n for n in crash["notes"])
    assert all(r["end_ms"] > 0 for r in pm.records if r["kind"] == "op" and r["iter"] == ITERS - 1)

    assert zb.returncode != 0
    assert "LinkDownError" in zb.stderr and "link 2 (2_3) is down" in zb.stderr
    errors = zb.control.errors()
    assert errors and errors[0]["stage"] == 2 and "is down" in errors[0]["message"]
    assert max(zb.times()) == CRASH_AT - 1  # nothing of the crashed iteration was completed


def test_gradients_under_the_changed_schedule_equal_zb(runs):
    torch = pytest.importorskip("torch")
    pm, zb = runs("pipemorph"), runs("zb")
    for it in (FAULT_AT, *FAULTY):  # delegate path, then the adapted schedule
        for stage in range(S):
            a = torch.load(pm.out / "grads" / f"it{it}_stage{stage}.pt")
            b = torch.load(zb.out / "grads" / f"it{it}_stage{stage}.pt")
            assert a["grads"].keys() == b["grads"].keys() and a["grads"]
            for name, g in a["grads"].items():
                assert torch.allclose(g, b["grads"][name], rtol=1e-4, atol=1e-6), (it, name)


def test_control_plane_sees_the_run(runs):
    pm = runs("pipemorph")
    beats = pm.control.heartbeats()
    assert sorted(beats) == list(range(S))
    assert all(b["phase"] == "done" and b["iteration"] == ITERS - 1 for b in beats.values())
    fault = pm.control.read_fault()
    assert fault.crashed and fault.links == ((2, 3),) and fault.since_iteration == CRASH_AT
    assert pm.control.errors() == []


def test_detect_finds_the_injected_link_and_replans_from_it(runs):
    d = runs("detect")
    assert d.returncode == 0, d.stderr[-2000:]
    for it in FAULTY:
        f = d.header(it)["fault"]
        assert f["plan_basis"] == "detected" and f["detected"]["slow_links"] == [2]
        assert f["detect_lag_iterations"] <= 2
        detected = f["detected_delay_ms"][0]
        assert abs(detected - DELAY_S * 1000.0) <= 0.2 * DELAY_S * 1000.0
        assert f["planned_for_ms"] == [0.0, 0.0, detected]
    before = d.header(FAULT_AT)["fault"]["detected"]
    assert before["slow_links"] == []  # nothing detected before the fault was measured
    published = d.control.read_detected()
    assert published is not None and published["iteration"] > FAULT_AT
    assert d.schedule(HEALTHY_AT + 1) == healthy_schedule(resolve_method("zb"), S, N)
    assert d.header(HEALTHY_AT + 1)["fault"]["detect_lag_iterations"] <= 2  # recovery seen
