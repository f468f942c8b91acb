"""In-process checks of the engine's pieces: B/W split, data, presets, wire format, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.config import parse_config
from engine.data import load_data, markov_stream
from engine.errors import EngineConfigError
from engine.model import StageModule, build_full_model
from engine.p2p.messages import MessageSpec, pack, unpack
from engine.presets import default_split, get_preset, resolve_split
from engine.stage import StageRunner, lm_loss
from engine.wgrad import WeightGradStore

REPO = Path(__file__).resolve().parents[2]


def _reference_grads(preset, seed, n):
    model = build_full_model(preset, seed).double()
    data = load_data(preset.vocab, preset.seq, preset.micro_batch, seed)
    for mb in range(n):
        x, y = data.batch(0, mb)
        (lm_loss(model(x), y) / n).backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_bw_split_in_one_process_matches_autograd():
    """Two stages driven by hand (F all, then B in reverse, W later) equal plain autograd."""
    p, seed, n = get_preset("tiny"), 3, 3
    split = (3, p.num_layers - 3)
    stores = [WeightGradStore(), WeightGradStore()]
    mods = [StageModule(p, split, s, seed, stores[s]).double() for s in range(2)]
    runners = [StageRunner(mods[s], stores[s], s == 0, s == 1, n) for s in range(2)]
    data = load_data(p.vocab, p.seq, p.micro_batch, seed)
    for mb in range(n):
        x, y = data.batch(0, mb)
        runners[1].forward(mb, runners[0].forward(mb, x, None), y)
    for mb in reversed(range(n)):
        g = runners[1].backward_input(mb, None)
        assert all(q.grad is None for q in mods[1].layers[str(p.num_layers - 1)].lm.parameters())
        runners[0].backward_input(mb, g)
    for mb in range(n):
        runners[1].backward_weight(mb)
        runners[0].backward_weight(mb)
    for r in runners:
        r.check_drained()
    ref = _reference_grads(p, seed, n)
    got = {k: v.grad for m in mods for k, v in m.named_parameters()}
    assert got.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-10, atol=1e-13, msg=k)


def test_undone_w_is_reported():
    p = get_preset("tiny")
    store = WeightGradStore()
    mod = StageModule(p, (p.num_layers,), 0, 0, store)
    r = StageRunner(mod, store, True, True, 1)
    x, y = load_data(p.vocab, p.seq, p.micro_batch, 0).batch(0, 0)
    r.forward(0, x, y)
    r.backward_input(0, None)
    with pytest.raises(RuntimeError, match="no W for \\[0\\]"):
        r.check_drained()


def test_data_is_deterministic_and_learnable():
    a, b = markov_stream(256, 5, 4096), markov_stream(256, 5, 4096)
    assert (a == b).all()
    assert not (a == markov_stream(256, 6, 4096)).all()
    # every token has at most 4 successors: the structure the model learns
    pairs = {(int(u), int(v)) for u, v in zip(a[:-1], a[1:])}
    succ: dict[int, set[int]] = {}
    for u, v in pairs:
        succ.setdefault(u, set()).add(v)
    assert max(len(s) for s in succ.values()) <= 4
    d = load_data(256, 16, 2, 1)
    x1, y1 = d.batch(3, 2)
    x2, y2 = d.batch(3, 2)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    assert not torch.equal(x1, d.batch(3, 1)[0])


def test_data_file_bytes(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"hello world " * 10)
    x, y = load_data(256, 8, 2, 0, str(f)).batch(0, 0)
    assert x.max() < 256 and torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(EngineConfigError, match="no such file"):
        load_data(256, 8, 2, 0, str(tmp_path / "missing"))


def test_splits():
    assert default_split(14, 4) == (3, 4, 4, 3)
    assert default_split(8, 4) == (2, 2, 2, 2)
    assert default_split(10, 4) == (2, 3, 3, 2)
    assert resolve_split(get_preset("ae-7b"), 4, None) == (3, 4, 4, 3)
    assert resolve_split(get_preset("tiny"), 2, "7,9") == (7, 9)
    assert resolve_split(get_preset("tiny"), 16, None) == (1,) * 16  # the tiny family reaches 16 stages
    with pytest.raises(EngineConfigError, match="summing to 16"):
        resolve_split(get_preset("tiny"), 2, "3,4")


def test_message_roundtrip_is_bit_exact():
    spec = MessageSpec((2, 3, 4), torch.float64)
    t = torch.randn(spec.shape, dtype=torch.float64)
    msg = unpack(pack(t, 12.5, 7, spec), spec)
    assert torch.equal(msg.tensor, t) and msg.sent_ms == 12.5 and msg.mb == 7
    with pytest.raises(ValueError, match="agreed"):
        pack(t.float(), 0.0, 0, spec)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--preset", "huge"], "unknown preset"),
        (["--method", "fast"], "unknown method"),
        (["--microbatches", "0"], "microbatches = 0"),
        (["--iterations", "x"], "not an integer"),
        (["--preset", "ae-7b", "--device", "cpu"], "CUDA only"),
        (["--split", "1,2"], "--split"),
        (["--pace", "1,2"], "pace '1,2'"),
        (["--bogus"], "unrecognized"),
        (["--trace", "/nonexistent/trace"], "cannot read it"),
        (["--stages", "8"], "WORLD_SIZE is 4"),
    ],
)
def test_bad_options_are_one_line_errors(args, needle, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(EngineConfigError) as info:
        parse_config(["--preset", "tiny", *args])
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_bad_option_exits_2_with_one_line_on_stderr():
    env = {**os.environ, "WORLD_SIZE": "4", "RANK": "0", "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "engine.train", "--preset", "huge"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown preset 'huge'" in lines[0], p.stderr


def test_missing_torchrun_is_a_clear_error():
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")}
    p = subprocess.run([sys.executable, "-m", "engine.train", "--preset", "tiny"], cwd=REPO,
                       env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "torchrun" in p.stderr and len(p.stderr.splitlines()) == 1


def test_healthy_plan_source_per_method():
    from engine.healthy_plan import HealthyPlanSource
    from engine.methods import resolve_method

    for name, offload, kinds in (("zb", False, {"F", "B", "W"}), ("1f1b", False, {"F", "BW"}),
                                 ("all-cpu", True, {"F", "B", "W"}),
                                 ("pipemorph", False, {"F", "B", "W"})):
        plan = HealthyPlanSource(resolve_method(name), 4, 8).plan(5, None)
        assert plan.offload is offload and plan.link_delays_s == (0.0, 0.0, 0.0)
        assert {op.kind.value for ops in plan.schedule.stages for op in ops} == kinds
    zb = HealthyPlanSource(resolve_method("zb"), 4, 12).plan(0, None).schedule
    assert zb.warmup() == [7, 5, 3, 1]  # PAPER.md section 2


def test_spec_fault_flags_take_the_fault_path(monkeypatch):
    from engine.fault_plan import make_plan_source
    from engine.methods import resolve_method
    from engine.plan_source import PlanContext
    from engine.planner.costs import StageCosts
    from injector.trace import parse_trace

    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg = parse_config(["--preset", "tiny", "--links", "2_3", "--delay", "0.06", "--fault-at", "3"])
    trace = parse_trace("3;2_3;0.06", 4)
    assert cfg.trace == trace and cfg.fault_at == 3
    costs = StageCosts.uniform(4, 30.0, 36.0, 18.0)

    def source(method: str):
        return make_plan_source(
            PlanContext(resolve_method(method), 4, 12, rank=0, delegates=4, trace=trace))

    src = source("pipemorph")
    before, at, after = src.plan(2, costs), src.plan(3, costs), src.plan(4, costs)
    assert not before.offload and at.offload and at.link_delays_s == (0.0, 0.0, 0.06)
    assert at.schedule == before.schedule  # re-planning lags one iteration
    assert after.schedule.warmup()[:3] == [9, 7, 5] and after.planned_costs == costs
    zb = source("zb").plan(4, costs)
    assert not zb.offload and zb.schedule == before.schedule
    for bad, words in ((["--links", "2_4"], "adjacent"), (["--links", "3_4"], "does not exist"),
                       (["--delay", "x"], "not a number"),
                       (["--links", "2_3", "--delay", "1", "--fault-at", "20"], "outside"),
                       (["--links", "2_3", "--trace", __file__], "either a trace")):
        with pytest.raises(EngineConfigError, match=words):
            parse_config(["--preset", "tiny", "--iterations", "10", *bad])


def test_bad_trace_is_rejected_before_launch(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    bad = tmp_path / "t.trace"
    bad.write_text("3;0_2;0.06\n")
    with pytest.raises(EngineConfigError, match="line 1"):
        parse_config(["--preset", "tiny", "--trace", str(bad)])


def test_automatic_delegates_follow_the_trace(tmp_path, monkeypatch):
    from engine.train import delegate_count

    monkeypatch.setenv("WORLD_SIZE", "4")
    trace = tmp_path / "t.trace"
    trace.write_text("3;2_3;0.06\n5;2_3;0.12\n7;;0\n")
    cfg = parse_config(["--preset", "tiny", "--method", "pipemorph", "--trace", str(trace)])
    assert delegate_count(cfg, tf_ms=30.0) == 5  # ceil(120 / 30) + 1
    assert delegate_count(cfg, tf_ms=1.0) == 8  # capped
    zb = parse_config(["--preset", "tiny", "--method", "zb", "--trace", str(trace)])
    assert delegate_count(zb, tf_ms=30.0) == 0  # never offloads: no pool
    fixed = parse_config(["--preset", "tiny", "--method", "zb", "--delegates", "3"])
    assert delegate_count(fixed, tf_ms=30.0) == 3
    healthy = parse_config(["--preset", "tiny", "--method", "all-cpu"])
    assert delegate_count(healthy, tf_ms=30.0) == 4


def test_only_complete_iterations_are_timed():
    from engine.oplog import iteration_times_ms

    def stage_records(stage: int, it: int, ops: list[str]) -> list[dict]:
        head = {"kind": "iteration", "iter": it, "stage": stage, "schedule": [["F0", "B0", "W0"]] * 2}
        return [head] + [
            {"kind": "op", "iter": it, "stage": stage, "op": op, "mb": 0, "start_ms": 10.0 * i,
             "end_ms": 10.0 * i + 5} for i, op in enumerate(ops)
        ]

    full = ["F", "B", "W"]
    records = (stage_records(0, 0, full) + stage_records(1, 0, full)
               + stage_records(0, 1, full) + stage_records(1, 1, ["F", "B"])  # stage 1 cut short
               + stage_records(0, 2, full))  # stage 1 never logged iteration 2
    assert iteration_times_ms(records) == {0: 25.0}


def test_adamw_keeps_half_precision_parameters_finite():
    import torch

    from engine.optim import AdamW

    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float16))
    opt = AdamW([p], lr=1e-3)
    for _ in range(3):  # zero and tiny gradients underflow fp16 Adam state (eps 1e-8 -> 0)
        p.grad = torch.tensor([0.0, 1e-3, 1e-5, 1.0], dtype=torch.float16)
        opt.step()
    assert p.dtype == torch.float16 and torch.isfinite(p).all()
    assert opt.state[p]["exp_avg_sq"].dtype == torch.float32
    assert p[3] < 1.0  # it did update
