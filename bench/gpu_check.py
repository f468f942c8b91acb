"""The engine's one-shot GPU check (issue 3, "GPU"): 4 stages on the local GPU(s).

    .venv/bin/python bench/gpu_check.py [--out DIR]

1. tiny, float64, one job replaying every generator's schedule on both p2p paths: every
   parameter's gradient vs the unpipelined model computed on the CPU;
2. gpu-mid (fp16): op medians per stage (CUDA events) and iteration time, zb inline vs
   all-cpu (delegates through pinned host memory).
Several stages on one GPU cannot share NCCL; the engine then stages inline p2p through host
memory over gloo (see engine/README.md). Prints numbers and PASS/FAIL lines only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from bench_engine import run_job  # noqa: E402

from engine.data import load_data  # noqa: E402
from engine.model import build_full_model  # noqa: E402
from engine.oplog import iteration_times_ms, summarize  # noqa: E402
from engine.planner.costs import StageCosts  # noqa: E402
from engine.planner.generators import generate  # noqa: E402
from engine.presets import get_preset  # noqa: E402
from engine.stage import lm_loss  # noqa: E402


def gradient_check(t: Path) -> bool:
    n, seed, uni = 8, 5, StageCosts.uniform(4, 1.0, 1.0, 1.0)
    slow = (0.0, 0.0, 4.0)
    plans = [{"schedule": generate(g, 4, n, uni, plan_delays=slow).to_lists(), "offload": o}
             for g in ("1f1b", "zb", "greedy", "pipemorph") for o in (False, True)]
    (t / "plans.json").write_text(json.dumps(plans))
    run_job(t / "g", ["--device", "cuda", "--preset", "tiny", "--dtype", "float64", "--lr", "0",
                      "--fixed-data", "--seed", str(seed), "--microbatches", str(n),
                      "--iterations", str(len(plans)), "--plan-script", str(t / "plans.json"),
                      "--delegates", "2", "--dump-grads", str(t / "grads")])
    p = get_preset("tiny")
    model = build_full_model(p, seed).double()
    data = load_data(p.vocab, p.seq, p.micro_batch, seed)
    for mb in range(n):
        x, y = data.batch(0, mb)
        (lm_loss(model(x), y) / n).backward()
    ref = {k: v.grad for k, v in model.named_parameters()}
    ok = True
    for it in range(len(plans)):
        got = {}
        for s in range(4):
            got.update(torch.load(t / "grads" / f"it{it}_stage{s}.pt")["grads"])
        worst = max(float((got[k] - ref[k]).abs().max()) for k in ref)
        good = got.keys() == ref.keys() and worst < 1e-9
        ok &= good
        print(f"  iteration {it} offload={plans[it]['offload']}: max |grad - ref| = "
              f"{worst:.2e} {'PASS' if good else 'FAIL'}")
    return ok


def op_times(t: Path, method: str) -> None:
    recs = run_job(t / method, ["--device", "cuda", "--preset", "gpu-mid", "--method", method,
                                "--iterations", "8"])
    d: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r["kind"] == "op" and r["iter"] >= 1 and r["op"] in ("F", "B", "W"):
            d[r["stage"]][r["op"]].append(r["end_ms"] - r["start_ms"])
    print(f"  {method}: iteration {summarize(iteration_times_ms(recs)).mean_ms:.1f} ms; " +
          "; ".join(f"s{s} " + " ".join(f"{k} {statistics.median(v):.1f}" for k, v in ops.items())
                    for s, ops in sorted(d.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible")
    print(f"# {torch.cuda.get_device_name()} x{torch.cuda.device_count()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(a.out or tmp)
        t.mkdir(parents=True, exist_ok=True)
        print("gradient check (tiny, float64, 4 stages):")
        ok = gradient_check(t)
        print("gpu-mid op medians (ms):")
        for m in ("zb", "all-cpu"):
            op_times(t, m)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
