"""End to end on 4 local stages (engine.forkrun, tiny preset, paced ops, gloo): traces with
several events, a NIC crash, and a time-based trace change the plan when they should.

Checked from the op log's iteration records (``fault``, ``link_delays_ms``, ``offload``, the
schedule) and its p2p events. One run per scenario, made on first use, shared by the tests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.healthy_plan import healthy_schedule
from engine.methods import METHODS, resolve_method
from engine.oplog import COMM_OPS, iteration_times_ms, read_records
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from engine.planner.ir import Schedule
from injector.control import ControlClient
from tests.jobs import run_job

ADAPT = METHODS["pipemorph"].adapt_generator  # the generator PipeMorph re-plans with

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

S, N = 4, 8
PACE = "10,12,6"  # F, B, W ms: each op at least this long, so iteration times have a floor
ZB = healthy_schedule(resolve_method("zb"), S, N)

# appear on 2_3, change its delay, move to 0_1, clear (two iterations each)
TIMELINE = "2;2_3;0.04\n4;2_3;0.02\n6;0_1;0.03\n8;;0\n"
TIMELINE_DELAYS_MS = {0: [0.0, 0.0, 0.0], 2: [0.0, 0.0, 40.0], 4: [0.0, 0.0, 20.0],
                      6: [30.0, 0.0, 0.0], 8: [0.0, 0.0, 0.0]}
NIC_AT = 4
NIC = f"2;2_3;0.03\n{NIC_AT};;inf\n"
# seconds from the start of iteration TIME_FAULT_AT: a snapshot at once, the next one well
# after it (an iteration takes >= N * (10 + 12 + 6) ms = 0.22 s, so 0.8 s is >= 3 iterations
# away, and reached by iteration TIME_FAULT_AT + 4 at the latest)
TIME_FAULT_AT, TIME_NEXT_S = 2, 0.8
TIME = f"0.0;2_3;0.04\n{TIME_NEXT_S};0_1,2_3;0.03,0.01\n"

#          method, trace, iterations, extra options, control plane
RUNS = {
    "timeline": ("pipemorph", TIMELINE, 10, [], False),
    "nic": ("pipemorph", NIC, 7, [], True),
    "nic-zb": ("zb", NIC, 7, [], True),
    "time": ("pipemorph", TIME, 9, ["--fault-at", str(TIME_FAULT_AT)], False),
}
@dataclass
class Run:
    name: str
    returncode: int
    stdout: str
    stderr: str
    out: Path
    control: ControlClient | None

    def __post_init__(self) -> None:
        self.records = read_records(self.out) if self.out.exists() else []

    def headers(self, it: int) -> list[dict]:
        """Every stage's iteration record of ``it``, by stage."""
        return sorted((r for r in self.records if r["kind"] == "iteration" and r["iter"] == it),
                      key=lambda r: r["stage"])

    def header(self, it: int) -> dict:
        return self.headers(it)[0]

    def iterations(self) -> list[int]:
        return sorted({r["iter"] for r in self.records if r["kind"] == "iteration"})

    def schedule(self, it: int) -> Schedule:
        return Schedule.from_lists(self.header(it)["schedule"], N)

    def planned(self, it: int) -> Schedule:
        """The schedule the planner gives for the delays and costs this iteration logged."""
        h = self.header(it)
        costs = StageCosts(**{k: tuple(v) for k, v in h["costs"].items()})
        return generate(ADAPT, S, N, costs, tuple(h["fault"]["planned_for_ms"]))

    def p2p(self, it: int) -> list[dict]:
        return [r for r in self.records
                if r["kind"] == "op" and r["iter"] == it and r["op"] in COMM_OPS]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request):
    """``runs(name)``: the finished job ``name`` of ``RUNS`` (made on first use)."""
    base = tmp_path_factory.mktemp("timelines")
    done: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name in done:
            return done[name]
        method, text, iterations, extra, with_control = RUNS[name]
        trace, out = base / f"{name}.trace", base / name
        trace.write_text(text)
        env: dict[str, str] = {}
        control_opts: list[str] = []
        if with_control:
            server = request.getfixturevalue("redis_server")
            control_opts = ["--control", server.url, "--run-id", name]
            env["PMCTL_CONTROL_PASSWORD_FILE"] = str(server.password_file)
        res = run_job(["--preset", "tiny", "--method", method, "--iterations", str(iterations),
                       "--microbatches", str(N), "--pace", PACE, "--delegates", "3",
                       "--trace", str(trace), "--out", str(out), "--timeout", "30",
                       *control_opts, *extra], nproc=S, timeout=240, env=env)
        control = None
        if with_control:
            server = request.getfixturevalue("redis_server")
            control = ControlClient(server.url, name, password=server.password)
        done[name] = Run(name, res.returncode, res.stdout, res.stderr, out, control)
        return done[name]

    return get


def finished(run: Run, iterations: int) -> Run:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.iterations() == list(range(iterations))
    return run


def test_every_stage_logs_the_same_fault_each_iteration(runs):
    """The broadcast: one decision per iteration, identical on every rank."""
    for name in ("timeline", "nic"):
        run = runs(name)
        for it in run.iterations():
            heads = run.headers(it)
            assert len(heads) == S
            assert all(h["fault"] == heads[0]["fault"] for h in heads), (name, it)
            assert all(h["schedule"] == heads[0]["schedule"] for h in heads), (name, it)


def test_multi_event_trace_injects_each_change_from_its_iteration(runs):
    run = finished(runs("timeline"), 10)
    for it in range(10):
        since = max(i for i in TIMELINE_DELAYS_MS if i <= it)
        h = run.header(it)
        assert h["link_delays_ms"] == TIMELINE_DELAYS_MS[since], it
        assert h["offload"] == (2 <= it < 8), it  # offload follows the fault at once
        injected = h["fault"]["injected"]
        assert injected["epoch"] == since // 2 and injected["since_iteration"] == (
            since if since else 0)
    # the delegates' sends carry the link's delay of that iteration, both ways, on that link only
    for it, delayed in ((3, {(2, 3, 40.0), (3, 2, 40.0)}), (5, {(2, 3, 20.0), (3, 2, 20.0)}),
                        (7, {(0, 1, 30.0), (1, 0, 30.0)})):
        sends = [r for r in run.p2p(it) if r["op"].startswith("SEND")]
        assert {(r["stage"], r["peer"], r["delay_ms"]) for r in sends if r["delay_ms"]} == delayed
        assert all(r["path"] == "delegate" for r in sends)
    assert not any(r["delay_ms"] for r in run.p2p(9)) and run.p2p(9)


def test_multi_event_trace_replans_from_the_iteration_after_each_change(runs):
    run = runs("timeline")
    planned_for = {3: [0.0, 0.0, 40.0], 4: [0.0, 0.0, 40.0], 5: [0.0, 0.0, 20.0],
                   6: [0.0, 0.0, 20.0], 7: [30.0, 0.0, 0.0], 8: [30.0, 0.0, 0.0]}
    for it in (0, 1, 2, 9):  # healthy basis: ZB (iteration 2 acts on what was known at 1)
        assert run.schedule(it) == ZB and run.header(it)["costs"] is None, it
    for it, delays in planned_for.items():
        h = run.header(it)
        assert h["generator"] == ADAPT and h["fault"]["planned_for_ms"] == delays, it
        assert run.schedule(it) == run.planned(it) != ZB, it
    # a slow last link: the stages before it hold more forwards in flight than ZB; the move
    # to the first link is a different plan
    w_last, wz = run.schedule(3).warmup(), ZB.warmup()
    assert w_last[S - 2] > wz[S - 2] and w_last[-1] == 1
    assert run.schedule(7) != run.schedule(3)
    assert not run.header(8)["offload"] and run.schedule(8) == run.schedule(7)  # one-iteration lag


def test_nic_crash_pipemorph_finishes_on_the_delegate_path(runs):
    run = finished(runs("nic"), 7)
    for it in range(NIC_AT, 7):
        h = run.header(it)
        assert h["offload"] and h["link_delays_ms"] == [None] * (S - 1), it
        assert h["fault"]["injected"]["nic_crash"] and h["fault"]["injected"]["links"] == ""
        events = run.p2p(it)
        # every stage sent and received, and every p2p event went through the delegates
        assert {r["stage"] for r in events} == set(range(S))
        assert events and all(r["path"] == "delegate" for r in events), it
    for it in range(NIC_AT + 1, 7):  # re-planned: every link as a crashed one
        f = run.header(it)["fault"]
        planned = f["planned_for_ms"]
        assert len(set(planned)) == 1 and planned[0] >= 30.0, it
        assert sum("is down" in n for n in f["notes"]) == S - 1
        assert run.schedule(it) == run.planned(it)
    assert run.schedule(NIC_AT + 1) != ZB
    published = run.control.read_fault()
    assert published.nic_crash and published.since_iteration == NIC_AT
    assert published.link_delays_s(S) == (float("inf"),) * (S - 1)
    assert run.control.errors() == []


def test_nic_crash_fails_zb_cleanly(runs):
    run = runs("nic-zb")
    assert run.returncode != 0
    # the stage whose inline send hit the down path says why, in one line
    reasons = [line for line in run.stderr.splitlines() if line.startswith("engine: stage")]
    assert any("LinkDownError" in r and "is down" in r for r in reasons), run.stderr[-3000:]
    assert max(iteration_times_ms(run.records)) == NIC_AT - 1  # nothing of the crash completed
    errors = run.control.errors()
    assert any("is down" in e["message"] for e in errors), errors


def test_time_trace_counts_from_fault_at_and_switches_once_between_iterations(runs):
    run = finished(runs("time"), 9)
    for it in range(9):  # every rank logs rank 0's snapshot (and its clock reading)
        heads = run.headers(it)
        assert len(heads) == S and all(h["fault"] == heads[0]["fault"] for h in heads), it
    for it in range(TIME_FAULT_AT):  # before the fault_at iteration: healthy, no trace clock
        h = run.header(it)
        assert "trace_s" not in h["fault"] and h["link_delays_ms"] == [0.0] * (S - 1)
        assert not h["offload"] and h["fault"]["injected"]["epoch"] == 0
    seconds = [run.header(it)["fault"]["trace_s"] for it in range(TIME_FAULT_AT, 9)]
    assert seconds[0] == 0.0 and all(a < b for a, b in itertools.pairwise(seconds)), seconds
    epochs = [run.header(it)["fault"]["injected"]["epoch"] for it in range(TIME_FAULT_AT, 9)]
    assert epochs == [1 if s < TIME_NEXT_S else 2 for s in seconds], (epochs, seconds)
    switch = TIME_FAULT_AT + epochs.index(2)  # first iteration of the second snapshot
    assert TIME_FAULT_AT < switch <= 7, seconds
    for it in range(TIME_FAULT_AT, 9):
        h = run.header(it)
        first = it < switch
        assert h["offload"]
        assert h["link_delays_ms"] == ([0.0, 0.0, 40.0] if first else [30.0, 0.0, 10.0]), it
        assert h["fault"]["injected"]["since_iteration"] == (TIME_FAULT_AT if first else switch)
    assert run.schedule(TIME_FAULT_AT) == ZB
    assert run.header(TIME_FAULT_AT + 1)["fault"]["planned_for_ms"] == [0.0, 0.0, 40.0]
    after = run.header(switch + 1)["fault"]
    assert after["planned_for_ms"] == [30.0, 0.0, 10.0]  # per-link delays reach the planner
    assert run.schedule(switch + 1) == run.planned(switch + 1) != run.schedule(switch)
