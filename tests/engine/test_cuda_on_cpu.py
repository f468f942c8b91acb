"""What only runs on CUDA, checked on CPU: no engine module touches CUDA when it is imported;
the sleep kernel's calibration and the inline path's delay-to-cycles conversion, with an
injected clock; and the prepared GPU script's plumbing (``bench/gpu_check.py --cpu-smoke``)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cuda_sleep import (
    MIN_ELAPSED_MS,
    START_CYCLES,
    WARMUP_CYCLES,
    CudaSleepCalibrationError,
    delay_cycles,
    measure_cycles_per_ms,
)

REPO = Path(__file__).resolve().parents[2]

# A fresh interpreter: every CUDA entry point raises and is recorded, then every module of the
# engine package is imported; finally one deliberate call proves the trap catches.
IMPORT_TRAP = r"""
import importlib, json, pkgutil
import torch

calls = []

def trap(name):
    def call(*args, **kwargs):
        calls.append(name)
        raise RuntimeError(f"CUDA touched: {name}")
    return call

torch.cuda._lazy_init = trap("torch.cuda._lazy_init")
if hasattr(torch._C, "_cuda_init"):
    torch._C._cuda_init = trap("torch._C._cuda_init")
for fn in ("is_available", "device_count", "current_device", "mem_get_info", "get_device_name",
           "synchronize", "set_device"):
    setattr(torch.cuda, fn, trap("torch.cuda." + fn))

import engine
names = sorted(m.name for m in pkgutil.walk_packages(engine.__path__, "engine."))
for name in names:
    importlib.import_module(name)
at_import = list(calls)
try:
    torch.cuda.current_device()
except RuntimeError:
    pass
print(json.dumps({"modules": names, "at_import": at_import, "after": calls[len(at_import):]}))
"""


def test_no_engine_module_touches_cuda_at_import():
    r = subprocess.run([sys.executable, "-c", IMPORT_TRAP], cwd=REPO, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"engine.train", "engine.cuda_sleep", "engine.memory_guard", "engine.p2p.inline",
            "engine.p2p.delegates", "engine.clock"} <= set(out["modules"])
    assert out["at_import"] == []
    assert out["after"] == ["torch.cuda.current_device"]  # the trap works


class FakeGpu:
    """A sleep kernel at a fixed clock, timed by a timer of limited resolution."""

    def __init__(self, cycles_per_ms: float, resolution_ms: float = 0.0) -> None:
        self.rate = cycles_per_ms
        self.resolution = resolution_ms
        self.launched: list[int] = []
        self.timed: list[int] = []

    def sleep(self, cycles: int) -> None:
        self.launched.append(cycles)

    def elapsed_ms(self, fn) -> float:
        before = len(self.launched)
        fn()
        cycles = sum(self.launched[before:])
        self.timed.append(cycles)
        ms = cycles / self.rate
        return ms - ms % self.resolution if self.resolution else ms


def test_calibration_measures_the_clock_after_one_untimed_warmup():
    gpu = FakeGpu(1.41e6)  # an H200-like 1.41 GHz
    assert measure_cycles_per_ms(gpu.sleep, gpu.elapsed_ms) == pytest.approx(1.41e6)
    assert gpu.launched[0] == WARMUP_CYCLES and gpu.timed == [START_CYCLES]


def test_calibration_retries_with_more_cycles_when_the_timer_reads_too_little():
    # a coarse 10 ms timer reads 0 for 10M cycles at 1.5 GHz (6.7 ms), 60 ms for 100M (66.7 ms)
    gpu = FakeGpu(1.5e6, resolution_ms=10.0)
    rate = measure_cycles_per_ms(gpu.sleep, gpu.elapsed_ms)
    assert gpu.timed == [START_CYCLES, 10 * START_CYCLES]
    assert rate == pytest.approx(10 * START_CYCLES / 60.0)


@pytest.mark.parametrize("reading", [0.0, -1.0, math.nan, MIN_ELAPSED_MS / 2])
def test_calibration_refuses_a_timer_that_never_reads_a_duration(reading):
    with pytest.raises(CudaSleepCalibrationError, match="could not be calibrated"):
        measure_cycles_per_ms(lambda c: None, lambda fn: (fn(), reading)[1])


def test_delay_to_cycles_as_the_inline_path_sleeps():
    assert delay_cycles(0.06, 1.5e6) == 90_000_000  # 60 ms at 1.5 GHz
    assert delay_cycles(0.0005, 1.41e6) == 705_000
    assert delay_cycles(0.0, 1.5e6) == 0
    with pytest.raises(ValueError, match="down link"):
        delay_cycles(math.inf, 1.5e6)
    with pytest.raises(ValueError, match="calibrate"):
        delay_cycles(0.01, 0.0)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (pmctl run)")
def test_gpu_check_cpu_smoke_writes_its_report(tmp_path):
    """The prepared GPU script's every section, on CPU in seconds: 2 stages, tiny, 2 cells."""
    out = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu-smoke", "--out", str(out),
                        "--work", str(tmp_path / "work")],
                       cwd=REPO, capture_output=True, text=True, timeout=180)
    report = json.loads(out.read_text())
    sections = report["sections"]
    assert r.returncode == 0, (r.stdout[-2000:], {k: v["error"] for k, v in sections.items()})
    assert set(sections) == {"environment", "gradients", "fig15", "overhead", "memory"}
    assert report["ok"] and all(s["ok"] and s["error"] is None for s in sections.values())
    assert report["nccl_semantics"].startswith("not applicable")
    assert [p["max_abs_diff"] < 1e-9 for p in sections["gradients"]["plans"]] == [True, True]
    (label, cell), = sections["fig15"]["cells"].items()
    assert label.split("/")[-3:-1] == ["zb", "none"] and cell["status"] == "done"
    assert cell["mean_ms"] > 0 and len(cell["per_iteration_ms"]) == 2
    (ratio,) = sections["overhead"]["all_cpu_over_zb"].values()
    assert ratio > 0
    rows = sections["memory"]["stages"]
    assert sorted((r["cell"].split("/")[1], r["stage"]) for r in rows) == [
        ("all-cpu", 0), ("all-cpu", 1), ("zb", 0), ("zb", 1)]
    assert all(r["estimate_allocated"] > 0 and r["measured_max_allocated"] is None for r in rows)
