"""The one prepared GPU check (issue 11): run once on a machine with a CUDA GPU, it writes one
JSON report and finishes in under 8 minutes on one H200 (16 cores).

    python bench/gpu_check.py [--out PATH] [--budget-s 450] [--work DIR] [--cpu-smoke]

Run it with a python that has a CUDA torch and the project's dependencies (``pip install -e
'.[engine]'``); the pmctl sections need ``redis-server`` on PATH. The report (``--out``,
default ``$OUT/gpu_check.json`` when OUT is set, else ``results/gpu_check.json``) holds one
object per section, each with ``ok``, ``seconds`` and ``error`` (a section that fails or runs
out of time is recorded and the next one runs), rewritten after every section:

- ``environment``: torch, CUDA, the GPUs and their memory, redis-server;
- ``gradients``: tiny in float64, 4 stages on the GPU, one job replaying every generator's
  schedule on both p2p paths: each parameter's gradient vs the unpipelined model on the CPU;
- ``fig15``: ``pmctl run fig15 --quick`` on a temporary inventory of 4 local stages sharing
  the GPU (preset gpu-mid): each cell's status and iteration times;
- ``overhead``: ``pmctl run fig20 --quick`` on the same cluster (its ZB cell is fig15's):
  healthy iteration time of all-cpu (every message through the delegates) over ZB inline;
- ``memory``: per cell and stage, ``engine.memory_estimate`` vs the stage's measured
  ``torch.cuda.max_memory_allocated`` (every pmctl stage runs through this script's
  ``--as-stage`` wrapper, which records it); ok only when every stage is measured and within
  its estimate (the worst ratio and its stage are recorded);
- ``nccl_semantics``: the stages share one GPU, so they talk over gloo: the NCCL rules
  (``--p2p-semantics nccl``) cannot apply here, and the report says so.

``--cpu-smoke`` runs the same plumbing on CPU in seconds (2 stages, tiny, few cells), for CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import torch  # noqa: E402
from check_harness import free_port, run_cmd, run_sections  # noqa: E402

from engine.cellspec import CellSpec  # noqa: E402
from engine.data import load_data  # noqa: E402
from engine.jsonio import write_json_atomic  # noqa: E402
from engine.memory_estimate import estimate_cell  # noqa: E402
from engine.model import build_full_model  # noqa: E402
from engine.oplog import iteration_times_ms, read_records, summarize  # noqa: E402
from engine.planner.costs import StageCosts  # noqa: E402
from engine.planner.generators import generate  # noqa: E402
from engine.presets import get_preset  # noqa: E402
from engine.stage import lm_loss  # noqa: E402

NCCL_SEMANTICS = "not applicable: stages sharing one GPU run over gloo"
GRAD_SEED, GRAD_MICROBATCHES = 5, 8


@dataclass(frozen=True)
class Mode:
    """What the check runs: the real one on CUDA, or the CPU smoke test of its plumbing."""

    name: Literal["cuda", "cpu-smoke"]
    device: Literal["cuda", "cpu"]
    stages: int
    preset: str  # of the pmctl cells
    grad_plans: tuple[tuple[str, bool], ...]  # (generator, offload) per replayed iteration
    cell_args: tuple[str, ...]  # spec flags for both pmctl runs (so fig20 reuses fig15's ZB)
    fig15_args: tuple[str, ...]
    fig20_args: tuple[str, ...]


CUDA = Mode("cuda", "cuda", 4, "gpu-mid",
            tuple((g, o) for g in ("1f1b", "zb", "greedy", "pipemorph") for o in (False, True)),
            ("--quick",), (), ())
SMOKE = Mode("cpu-smoke", "cpu", 2, "tiny", (("zb", False), ("pipemorph", True)),
             # one delegate: fig20's all-cpu cell and its artifact (k1) twin are then one cell
             ("--quick", "--iters", "2", "--fault-at", "1", "--microbatches", "4", "--delegates", "1"),
             ("--methods", "zb", "--links", "none"), ("--methods", "zb,all-cpu"))


@dataclass
class Context:
    """What the sections share."""

    mode: Mode
    work: Path
    cells: dict[str, dict[str, Any]]  # cell label -> what the pmctl sections saw of it


def _python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PMCTL_")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


# -- sections ---------------------------------------------------------------------------------


def environment(ctx: Context) -> dict[str, Any]:
    """Versions, the GPUs and their memory, and whether redis-server is there for pmctl."""
    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cpus": os.cpu_count(),
                           "redis_server": shutil.which("redis-server"),
                           "cuda_available": torch.cuda.is_available(), "gpus": []}
    if ctx.mode.device == "cuda":
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            out["gpus"].append({"name": torch.cuda.get_device_name(i), "total_bytes": total,
                                "free_bytes": free})
        out["ok"] = bool(out["gpus"])
    return out


def gradients(ctx: Context) -> dict[str, Any]:
    """Every replayed plan's gradients (one job, float64, lr 0) vs the unpipelined model."""
    s, n, work = ctx.mode.stages, GRAD_MICROBATCHES, ctx.work / "gradients"
    work.mkdir()
    uni = StageCosts.uniform(s, 1.0, 1.0, 1.0)
    slow = (0.0,) * (s - 2) + (4.0,)
    plans = [{"schedule": generate(g, s, n, uni, plan_delays=slow).to_lists(), "offload": o,
              "delays_s": [0.0] * (s - 1)} for g, o in ctx.mode.grad_plans]
    (work / "plans.json").write_text(json.dumps(plans))
    cmd = [sys.executable, "-m", "engine.forkrun", "--master-port", str(free_port()),
           "--nnodes", "1", "--nproc-per-node", str(s), "-m", "engine.train",
           "--device", ctx.mode.device, "--preset", "tiny", "--dtype", "float64", "--lr", "0",
           "--fixed-data", "--seed", str(GRAD_SEED), "--microbatches", str(n),
           "--iterations", str(len(plans)), "--plan-script", str(work / "plans.json"),
           "--delegates", "2", "--dump-grads", str(work / "grads"), "--out", str(work / "log")]
    rc = run_cmd(cmd, REPO, _python_env(), work / "job.stdout")
    if rc != 0:
        tail = (work / "job.stderr").read_text()[-1500:]
        return {"ok": False, "error": f"the job exited {rc}: {tail}"}
    p = get_preset("tiny")
    model = build_full_model(p, GRAD_SEED).double()
    data = load_data(p.vocab, p.seq, p.micro_batch, GRAD_SEED)
    for mb in range(n):
        x, y = data.batch(0, mb)
        (lm_loss(model(x), y) / n).backward()
    ref = {k: v.grad for k, v in model.named_parameters()}
    rows = []
    for it, (gen, offload) in enumerate(ctx.mode.grad_plans):
        got: dict[str, torch.Tensor] = {}
        for st in range(s):
            got.update(torch.load(work / "grads" / f"it{it}_stage{st}.pt", map_location="cpu")["grads"])
        same = got.keys() == ref.keys()
        worst = max(float((got[k] - ref[k]).abs().max()) for k in ref) if same else math.inf
        rows.append({"generator": gen, "offload": offload, "max_abs_diff": worst, "ok": worst < 1e-9})
    return {"ok": all(r["ok"] for r in rows), "plans": rows}


def _pmctl(ctx: Context, figure: str, extra: tuple[str, ...]) -> dict[str, Any]:
    """``pmctl run FIGURE --json`` on the check's inventory; each cell's outcome and times."""
    inv = ctx.work / "inventory.toml"
    if not inv.exists():
        inv.write_text(f'[cluster]\nname = "gpu-check"\ntransport = "local"\n'
                       f'device = "{ctx.mode.device}"\nstages = {ctx.mode.stages}\n'
                       f'preset = "{ctx.mode.preset}"\nlauncher = "fork"\n')
    stdout = ctx.work / f"pmctl-{figure}.jsonl"
    cmd = [sys.executable, "-m", "pmctl", "run", figure, *ctx.mode.cell_args, *extra, "--json",
           "--inventory", str(inv), "--results", str(ctx.work / "results"),
           "--engine-entry", f"{Path(__file__).resolve()} --as-stage"]
    env = {**_python_env(), "PMCTL_STATE_DIR": str(ctx.work / ".pmctl")}
    try:
        # on a timeout, pmctl stop (same state dir and inventory) ends its stages and Redis
        rc = run_cmd(cmd, ctx.work, env, stdout,
                     stop=[sys.executable, "-m", "pmctl", "stop", "--inventory", str(inv)])
    finally:
        events = [json.loads(ln) for ln in stdout.read_text().splitlines() if ln.startswith("{")]
        for e in (e for e in events if e.get("type") == "cell"):
            folder = Path(e["folder"])
            stats = summarize(iteration_times_ms(read_records(folder)))
            ctx.cells[e["cell"]] = {
                "status": e["status"], "folder": str(folder), "seconds": e["seconds"],
                "mean_ms": None if math.isnan(stats.mean_ms) else stats.mean_ms,
                "per_iteration_ms": {str(k): round(v, 2) for k, v in stats.per_iteration_ms.items()},
            }
    cells = {e["cell"]: ctx.cells[e["cell"]] for e in events if e.get("type") == "cell"}
    out: dict[str, Any] = {"exit_code": rc, "cells": cells, "ok": rc == 0 and bool(cells)}
    if rc != 0:
        out["error"] = (stdout.with_suffix(".stderr").read_text().strip().splitlines() or ["?"])[-1]
    return out


def fig15(ctx: Context) -> dict[str, Any]:
    """The quick Figure 15 cells through pmctl."""
    return _pmctl(ctx, "fig15", ctx.mode.fig15_args)


def overhead(ctx: Context) -> dict[str, Any]:
    """Healthy all-cpu over ZB inline (Figure 20's cells; ZB's is fig15's, reused)."""
    out = _pmctl(ctx, "fig20", ctx.mode.fig20_args)
    healthy = {tuple(label.split("/")[-3:-1]): c["mean_ms"] for label, c in ctx.cells.items()}
    zb = healthy.get(("zb", "none"))
    out["zb_ms"] = zb
    # per all-cpu cell (fig20 has the automatic delegate count and the artifact's one)
    out["all_cpu_over_zb"] = {label: c["mean_ms"] / zb for label, c in out["cells"].items()
                              if label.split("/")[-3] == "all-cpu" and zb and c["mean_ms"]}
    out["ok"] = out["ok"] and bool(out["all_cpu_over_zb"])
    return out


def memory(ctx: Context) -> dict[str, Any]:
    """Per cell and stage: the estimate vs the measured peak the stage wrapper recorded."""
    rows = []
    for label, c in ctx.cells.items():
        folder = Path(c["folder"])
        if not (folder / "cell.json").exists():  # a cell that never started has no spec here
            continue
        spec = CellSpec.from_json(json.loads((folder / "cell.json").read_text())["spec"])
        for est in estimate_cell(spec):
            f = folder / f"stage{est.stage}.gpumem.json"
            got = json.loads(f.read_text()) if f.exists() else {}
            peak = got.get("max_allocated")
            rows.append({"cell": label, "stage": est.stage, "depth": est.depth,
                         "estimate_total": est.total, "estimate_allocated": est.allocated,
                         "measured_max_allocated": peak, "measured_max_reserved": got.get("max_reserved"),
                         "measured_over_estimate": peak / est.allocated if peak else None})
    return {**memory_verdict(rows, ctx.mode.device), "stages": rows}


def memory_verdict(rows: list[dict[str, Any]], device: str) -> dict[str, Any]:
    """``ok`` and the worst measured/estimate ratio (with its cell and stage). On CUDA every
    stage must be measured and within its estimate (ratio <= 1: the estimate is an upper bound,
    which the refusal relies on); on CPU nothing is measured, so rows suffice."""
    measured = [r for r in rows if r["measured_over_estimate"] is not None]
    worst = max(measured, key=lambda r: r["measured_over_estimate"], default=None)
    out: dict[str, Any] = {
        "ok": bool(rows), "error": None if rows else "no stage to compare",
        "worst_measured_over_estimate": worst["measured_over_estimate"] if worst else None,
        "worst_stage": f"{worst['cell']} stage {worst['stage']}" if worst else None}
    if device == "cpu" or not rows:
        return out
    if len(measured) < len(rows):
        out.update(ok=False, error=f"{len(rows) - len(measured)} stage(s) not measured")
    elif out["worst_measured_over_estimate"] > 1.0:
        out.update(ok=False, error=f"measured over estimate {out['worst_measured_over_estimate']:.3f}"
                   f" > 1 at {out['worst_stage']}: the estimate is not an upper bound")
    return out


# (name, function, seconds at most); all of them together also stay within --budget-s
SECTIONS = (("environment", environment, 30.0), ("gradients", gradients, 100.0),
            ("fig15", fig15, 270.0), ("overhead", overhead, 60.0), ("memory", memory, 20.0))


def as_stage(argv: list[str]) -> None:
    """One pmctl stage: ``engine.train`` as usual, then its peak GPU memory beside its op log."""
    import engine.train as train

    inner = train.run

    def run(cfg: Any, state: dict) -> None:
        inner(cfg, state)
        cuda = cfg.device == "cuda"
        write_json_atomic(Path(cfg.out) / f"stage{cfg.rank}.gpumem.json", {
            "device": cfg.device,
            "max_allocated": torch.cuda.max_memory_allocated() if cuda else None,
            "max_reserved": torch.cuda.max_memory_reserved() if cuda else None})

    train.run = run
    train.main(argv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--budget-s", type=float, default=450.0, help="all sections together")
    ap.add_argument("--work", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--cpu-smoke", action="store_true", help="the plumbing on CPU, in seconds")
    a = ap.parse_args(argv)
    mode = SMOKE if a.cpu_smoke else CUDA
    out = a.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT")
                    else REPO / "results" / "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"mode": mode.name, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "nccl_semantics": NCCL_SEMANTICS, "sections": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = a.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ctx = Context(mode, work, {})
        run_sections(SECTIONS, ctx, time.monotonic() + a.budget_s, out, report)
    report["ok"] = all(s["ok"] for s in report["sections"].values())
    write_json_atomic(out, report)
    print(f"report: {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--as-stage"]:
        as_stage(sys.argv[2:])
    else:
        sys.exit(main())
