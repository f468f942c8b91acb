"""The inline path's injected delay on CUDA: ``torch.cuda._sleep(cycles)``, a kernel that spins
on the compute stream for a number of GPU clock cycles, so the delay blocks the stream (the
head-of-line blocking of the paper) without blocking the host thread.

``_sleep`` counts cycles, not time, so each stage measures once how many cycles make a
millisecond (``calibrate_cuda_sleep``). The measurement logic (``measure_cycles_per_ms``)
takes the sleep and the timer as arguments, so it is checked on CPU with an injected clock;
only ``calibrate_cuda_sleep`` touches CUDA, and only when called (never at import).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

WARMUP_CYCLES = 1_000  # the first launch pays module loading; keep it out of the measurement
START_CYCLES = 10_000_000  # ~5-10 ms on current GPUs (1-2 GHz)
MIN_ELAPSED_MS = 1.0  # below this, timer resolution dominates: measure again with more cycles
MAX_ATTEMPTS = 4  # x10 cycles each: up to 1e10 cycles, seconds even on the fastest clocks

Sleep = Callable[[int], None]  # spins the device for this many cycles (asynchronously)
ElapsedMs = Callable[[Callable[[], None]], float]  # runs the callable, returns its device ms


class CudaSleepCalibrationError(RuntimeError):
    """The timer never measured a usable duration for the sleep kernel."""


def measure_cycles_per_ms(sleep: Sleep, elapsed_ms: ElapsedMs,
                          start_cycles: int = START_CYCLES) -> float:
    """Cycles per millisecond of ``sleep``: one warm-up launch, then timed launches with 10x
    more cycles each until the timer reads at least ``MIN_ELAPSED_MS`` (a 0 or tiny reading is
    timer resolution, not a real rate; dividing by it would turn every delay into a hang)."""
    sleep(WARMUP_CYCLES)
    cycles = start_cycles
    readings = []
    for _ in range(MAX_ATTEMPTS):
        ms = elapsed_ms(lambda c=cycles: sleep(c))
        readings.append(ms)
        if math.isfinite(ms) and ms >= MIN_ELAPSED_MS:
            return cycles / ms
        cycles *= 10
    raise CudaSleepCalibrationError(
        f"torch.cuda._sleep could not be calibrated: the timer read {readings} ms for "
        f"{start_cycles}..{cycles // 10} cycles (need >= {MIN_ELAPSED_MS} ms)")


def delay_cycles(delay_s: float, cycles_per_ms: float) -> int:
    """Sleep-kernel cycles for a delay of ``delay_s`` seconds (0 for no delay)."""
    if delay_s <= 0:
        return 0
    if not math.isfinite(delay_s):
        raise ValueError(f"a delay of {delay_s} s has no sleep length (an infinite delay is a down link)")
    if cycles_per_ms <= 0:
        raise ValueError(f"{cycles_per_ms} cycles per ms: calibrate_cuda_sleep() first")
    return int(round(delay_s * 1000.0 * cycles_per_ms))


def _cuda_elapsed_ms(fn: Callable[[], None]) -> float:
    """Device time of ``fn``'s kernels on the current stream (CUDA events)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end))


def calibrate_cuda_sleep() -> float:
    """GPU clock cycles per millisecond for ``torch.cuda._sleep`` on the current device."""
    return measure_cycles_per_ms(torch.cuda._sleep, _cuda_elapsed_ms)
