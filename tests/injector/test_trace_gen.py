"""``injector.trace_gen`` and ``pmctl trace-gen``: deterministic by seed, the paper's
distribution, output the trace parser reads, the shipped dynamic trace, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from figures.dynamic import TRACE, TRACE_FILE, dynamic_trace
from injector.trace import parse_trace
from injector.trace_gen import TraceGenError, TraceGenSpec, generate, trace_text

REPO = Path(__file__).resolve().parents[2]


def test_same_seed_same_text_other_seed_other_text() -> None:
    spec = TraceGenSpec(seed=7, duration_s=30.0, min_gap_s=1.0)
    assert trace_text(spec) == trace_text(TraceGenSpec(seed=7, duration_s=30.0, min_gap_s=1.0))
    assert trace_text(spec) != trace_text(replace(spec, seed=8))


def test_output_parses_back_to_the_generated_snapshots() -> None:
    spec = TraceGenSpec(seed=3, duration_s=40.0, stages=8, min_gap_s=0.5, max_links=3)
    trace = generate(spec)
    parsed = parse_trace(trace_text(spec), 8)
    assert parsed.kind == "time" and len(parsed) == len(trace) > 20
    for want, got in zip(trace, parsed):
        assert (got.at_s, got.links, got.delays_s) == (want.at_s, want.links, want.delays_s)


def test_events_follow_the_settings() -> None:
    spec = TraceGenSpec(seed=11, duration_s=200.0, stages=6, links="1_2,3_4,4_5", max_links=2,
                        delay_ms=30.0, delay_std_ms=10.0, max_delay_ms=45.0, min_gap_s=0.5)
    trace = generate(spec)
    times = [f.at_s for f in trace]
    assert times[0] == 0.0 and times[-1] < 200.0
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(0.5 - 1e-9 <= g <= 1.0 + 1e-9 for g in gaps)  # U(MIN, 2 MIN)
    delays = [d for f in trace for d in f.delays_s]
    assert all(0 < d <= 0.045 for d in delays)  # clipped, and a 0 ms draw is left out
    assert all(1 <= len(f.links) <= 2 and set(f.links) <= {(1, 2), (3, 4), (4, 5)} for f in trace if f.links)
    mean_ms = 1000 * sum(delays) / len(delays)
    assert 25 < mean_ms < 33  # N(30, 10) clipped at 45: a little under 30
    assert {len(f.links) for f in trace} >= {1, 2}  # k varies: the straggler moves


def test_a_zero_delay_draw_leaves_a_healthy_line() -> None:
    spec = TraceGenSpec(seed=1, duration_s=10.0, delay_ms=0.0, delay_std_ms=0.0, min_gap_s=1.0)
    text = trace_text(spec)
    assert all(line.endswith(";;0") for line in text.splitlines() if not line.startswith("#"))
    assert all(f.healthy for f in parse_trace(text, 4))


@pytest.mark.parametrize(("field", "value", "words"), [
    ("links", "4_5", "does not exist with 4 stages"),
    ("max_links", 5, "max links = 5: must be 1..3"),
    ("min_gap_s", 0.0, "min gap"),
    ("duration_s", -1.0, "duration"),
    ("delay_std_ms", -2.0, "delay std"),
])
def test_bad_settings_are_one_line(field: str, value: object, words: str) -> None:
    with pytest.raises(TraceGenError, match=words) as exc:
        generate(replace(TraceGenSpec(), **{field: value}))
    assert "\n" not in str(exc.value)


def test_the_shipped_dynamic_trace_is_the_generators_output() -> None:
    assert TRACE_FILE.read_text(encoding="utf-8") == trace_text(TRACE) == dynamic_trace(4)
    trace = parse_trace(TRACE_FILE.read_text(encoding="utf-8"), 4)
    assert trace.kind == "time" and len(trace) >= 4
    assert len({f.links for f in trace}) > 1  # the slow link moves


def _pmctl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pmctl", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                                      "HOME": str(cwd)})


@pytest.mark.slow
def test_cli_writes_the_trace_and_refuses_bad_settings(tmp_path: Path) -> None:
    out = tmp_path / "t.trace"
    r = _pmctl("trace-gen", "--seed", "5", "--duration", "9", "--stages", "8", "--links", "0_1,6_7",
               "--min-gap", "1", "-o", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    want = trace_text(TraceGenSpec(seed=5, duration_s=9.0, stages=8, links="0_1,6_7", min_gap_s=1.0))
    assert out.read_text() == want
    assert want.splitlines()[0] == ("# pmctl trace-gen --seed 5 --duration 9 --stages 8 --links 0_1,6_7 "
                                    "--max-links 2 --delay-ms 30 --delay-std-ms 10 --min-gap 1")
    printed = _pmctl("trace-gen", "--seed", "5", "--duration", "9", "--stages", "8", "--links",
                     "0_1,6_7", "--min-gap", "1", cwd=tmp_path)
    assert printed.returncode == 0 and printed.stdout == want
    bad = _pmctl("trace-gen", "--links", "2_4", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "2_4" in bad.stderr and "adjacent" in bad.stderr
