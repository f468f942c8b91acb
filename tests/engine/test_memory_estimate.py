"""The per-GPU memory estimate and both refusals, on CPU: the estimate's parameter counts,
saved activations and optimizer state against the real model and optimizer; the in-flight
depth of each schedule; the engine's refusal before it builds its model (a pretend device
size); and pmctl's refusal at plan time from the GPU sizes in ``pmctl setup``'s fact sheet."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from engine.config import parse_config
from engine.errors import EngineConfigError
from engine.healthy_plan import HealthyPlanSource
from engine.memory_estimate import (
    activation_bytes,
    estimate_stages,
    gpu_groups,
    inflight_depth,
    layer_params,
    over_budget,
    parse_bytes,
)
from engine.memory_guard import PRETEND_ENV, check_stage_memory
from engine.methods import METHODS
from engine.model import StageModule, build_layer
from engine.optim import AdamW
from engine.planner.simulate import peak_activations
from engine.presets import get_preset, resolve_split
from engine.stage import lm_loss
from engine.wgrad import WeightGradStore
from tests.jobs import run_job
from tests.orchestration.support import pmctl_env, run_pmctl


@pytest.mark.parametrize("name", ["tiny", "cpu-small"])
def test_parameter_counts_match_the_model(name):
    p = get_preset(name)
    split = resolve_split(p, 4, None)
    start = 0
    for s, count in enumerate(split):
        module = StageModule(p, split, s, 0, WeightGradStore())
        assert sum(layer_params(p, i) for i in range(start, start + count)) == \
            sum(t.numel() for t in module.parameters())
        start += count


def test_parameter_counts_of_a_gpu_preset_layer_by_layer():
    p = get_preset("gpu-mid")
    for i in (0, 1, p.num_layers - 1):
        assert layer_params(p, i) == sum(t.numel() for t in build_layer(p, i, 0).parameters())


def _saved_bytes(p, split, stage) -> int:
    """Bytes autograd keeps for one micro-batch's forward (unique storages, not parameters)."""
    module = StageModule(p, split, stage, 0, WeightGradStore())
    params = {t.untyped_storage().data_ptr() for t in module.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            saved[st.data_ptr()] = st.nbytes()
        return t

    g = torch.Generator().manual_seed(0)
    shape = (p.micro_batch, p.seq)
    x = (torch.randint(0, p.vocab, shape, generator=g) if stage == 0 else
         torch.randn(*shape, p.hidden, generator=g, requires_grad=True))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
        if stage == len(split) - 1:
            lm_loss(out, torch.randint(0, p.vocab, shape, generator=g))
    return sum(saved.values())


def test_activation_bytes_match_what_autograd_saves():
    # vocab != hidden so the head's log-softmax term is told apart from the blocks'
    p = replace(get_preset("cpu-small"), micro_batch=2, vocab=512)
    split = (3, 2, 3)
    start = 0
    for s, count in enumerate(split):
        est = activation_bytes(p, range(start, start + count), "float32")
        assert _saved_bytes(p, split, s) == pytest.approx(est, rel=0.03), s
        start += count


@pytest.mark.parametrize("dtype,per_param", [("float32", 8), ("float16", 12)])
def test_optimizer_state_matches_adamw(dtype, per_param):
    """fp32: two moments; fp16: an fp32 master copy and two fp32 moments."""
    p = get_preset("tiny")
    split = resolve_split(p, 4, None)
    module = StageModule(p, split, 1, 0, WeightGradStore()).to(getattr(torch, dtype))
    opt = AdamW(module.parameters(), lr=1e-3)
    for t in module.parameters():
        t.grad = torch.ones_like(t)
    opt.step()
    state = sum(v.numel() * v.element_size() for st in opt.state.values()
                for k, v in st.items() if k != "step")
    est = estimate_stages(p, split, dtype, "zb", 8, False)[1]
    assert state == est.optimizer == est.params * per_param


def test_inflight_depth_per_schedule():
    assert inflight_depth("1f1b", 4, 12, False) == [4, 3, 2, 1]  # S - s
    # the ZB family's healthy plan holds at most 2 x S in flight, so its F..W peak stays under N
    assert inflight_depth("zb", 4, 32, False) == [13, 14, 14, 15]
    assert inflight_depth("pipemorph", 4, 12, True) == [12] * 4  # the adapted warm-up's cap
    assert inflight_depth("pipemorph", 4, 12, False) == inflight_depth("zb", 4, 12, False)
    est = estimate_stages(get_preset("gpu-mid"), (2, 3, 3, 2), "float16", "1f1b", 12, False)
    assert [m.depth for m in est] == [5, 4, 3, 2]  # + the backward in progress


@pytest.mark.parametrize("method", sorted(METHODS))
def test_inflight_depth_is_the_peak_of_the_plan_the_engine_runs(method):
    for stages, n in ((2, 8), (4, 32)):
        plan = HealthyPlanSource(METHODS[method], stages, n).plan(0, None)
        assert inflight_depth(method, stages, n, False) == peak_activations(plan.schedule)


def test_gpu_groups_follow_the_engines_device_choice():
    assert gpu_groups(4, 1) == [[0, 1, 2, 3]]
    assert gpu_groups(4, 2) == [[0, 2], [1, 3]]
    assert gpu_groups(2, 8) == [[0], [1]]


def test_over_budget_is_one_line_at_the_exact_boundary():
    est = estimate_stages(get_preset("gpu-mid"), (2, 3, 3, 2), "float16", "zb", 12, False)
    need = est[0].total + est[1].total
    assert over_budget(est[:2], need, "GPU 0") is None
    line = over_budget(est[:2], need - 1, "GPU 0")
    assert line.startswith("GPU 0 has ") and "stage 0 " in line and "stage 1 " in line
    assert "\n" not in line


def test_parse_bytes():
    assert parse_bytes("24GiB") == 24 * 2**30
    assert parse_bytes("80 GB") == 80 * 10**9
    assert parse_bytes("1.5TiB") == int(1.5 * 2**40)
    assert parse_bytes("4096") == 4096
    with pytest.raises(ValueError, match="not a memory size"):
        parse_bytes("lots")


def _cfg(monkeypatch, rank: int):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    return parse_config(["--preset", "cpu-small", "--device", "cpu", "--method", "zb"])


def test_engine_guard_refuses_past_the_pretend_size(monkeypatch):
    cfg = _cfg(monkeypatch, 2)
    need = estimate_stages(cfg.preset, cfg.split, cfg.dtype, "zb", cfg.microbatches, False,
                           cuda=False)[2].total
    monkeypatch.setenv(PRETEND_ENV, str(need))
    check_stage_memory(cfg, torch.device("cpu"), 4)  # fits exactly
    monkeypatch.setenv(PRETEND_ENV, str(need - 1))
    with pytest.raises(EngineConfigError, match="pretend device of stage 2 has .* needs an estimated"):
        check_stage_memory(cfg, torch.device("cpu"), 4)
    monkeypatch.delenv(PRETEND_ENV)
    check_stage_memory(cfg, torch.device("cpu"), 1)  # a CPU stage without a pretend size: no check
    monkeypatch.setenv(PRETEND_ENV, "plenty")
    with pytest.raises(EngineConfigError, match=PRETEND_ENV):
        check_stage_memory(cfg, torch.device("cpu"), 4)


def test_engine_refuses_before_building_its_model(tmp_path):
    out = tmp_path / "log"
    res = run_job(["--preset", "tiny", "--device", "cpu", "--iterations", "1", "--out", str(out)],
                  nproc=2, timeout=90, env={PRETEND_ENV: "1MiB"})
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("engine: error:")]
    assert errors and "has 1.0 MiB but needs an estimated" in errors[0]
    assert not list(out.glob("stage*.jsonl"))  # refused before training


INVENTORY = """[cluster]
name = "gpu"
transport = "local"
device = "cuda"
stages = 4
preset = "gpu-mid"
"""


def _dry_run(tmp_path: Path, gpu_memory: list[int] | None):
    (tmp_path / "inv.toml").write_text(INVENTORY)
    hosts = tmp_path / ".pmctl" / "hosts"
    hosts.mkdir(parents=True, exist_ok=True)
    facts = {"cuda_count": 1, "device": "cuda"}
    if gpu_memory is not None:
        facts["gpu_memory"] = gpu_memory
    (hosts / "stage0.json").write_text(json.dumps(facts))
    return run_pmctl(["run", "fig15", "--quick", "--dry-run", "--inventory", "inv.toml"],
                     tmp_path, pmctl_env(tmp_path), timeout=120)


def test_pmctl_refuses_a_cell_that_does_not_fit_the_recorded_gpu(tmp_path):
    """4 gpu-mid stages sharing one GPU need 6-10 GiB by the estimate (1F1B to ZB)."""
    r = _dry_run(tmp_path, [4 * 2**30])
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    line = r.stderr.strip()
    assert "\n" not in line and "on host stage0: GPU 0 has 4.0 GiB but needs an estimated" in line
    assert "(use more stages or GPUs" in line
    assert _dry_run(tmp_path, [141 * 2**30]).returncode == 0  # an H200
    assert _dry_run(tmp_path, None).returncode == 0  # no size recorded: the engine checks
