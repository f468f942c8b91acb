"""The cell spec: one dataclass -> the engine's argv -> parsed back into the same spec, for
every field; its hash is its identity; bad specs are one-line errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from engine.cellspec import CellSpec, SpecError, spec_fields, validate
from engine.config import parse_config
from engine.errors import EngineConfigError
from injector.trace import trace_hash

# Every field away from its default, so a field the argv forgets cannot pass by accident.
ODD = CellSpec(
    figure="eight-stages", method="pipemorph-cpu", links=((0, 1), (6, 7)), delay_s=0.0375,
    stages=8, stages_per_host=2, preset="tiny", device="cpu", microbatches=16, iterations=11,
    fault_at=4, delegates=3, pace="7.5,9,4", launcher="torchrun", seed=5,
)


def _env(monkeypatch, spec: CellSpec) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(spec.stages))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(spec.stages_per_host))


def test_every_field_round_trips_through_the_engine_argv(monkeypatch):
    defaults = CellSpec()
    for f in spec_fields():
        if f.name != "trace":  # a trace comes with its file: the next test
            assert getattr(ODD, f.name) != getattr(defaults, f.name) or f.name == "device", f.name
    _env(monkeypatch, ODD)
    cfg = parse_config([*ODD.to_argv(), "--out", "x"])
    assert cfg.spec == ODD
    assert (cfg.microbatches, cfg.iterations, cfg.fault_at, cfg.world) == (16, 11, 4, 8)
    assert cfg.pace_ms == (7.5, 9.0, 4.0) and cfg.delegates == 3
    assert cfg.trace is not None and cfg.trace.fault_at(4).link_delays_s(8)[6] == 0.0375


def test_a_trace_cell_round_trips_with_its_file(monkeypatch, tmp_path):
    text = "2;1_2;0.05\n5;;0\n"
    path = tmp_path / "t.trace"
    path.write_text(text)
    spec = dataclasses.replace(ODD, links=(), delay_s=0.0, trace=trace_hash(text), trace_text=text)
    _env(monkeypatch, spec)
    cfg = parse_config([*spec.to_argv(), "--trace", str(path)])
    assert cfg.spec == spec and cfg.spec.trace_text == text
    assert cfg.trace is not None and len(cfg.trace) == 2
    path.write_text(text + "7;2_3;0.01\n")  # the file changed since the spec was made
    with pytest.raises(EngineConfigError, match="content hash"):
        parse_config([*spec.to_argv(), "--trace", str(path)])
    with pytest.raises(EngineConfigError, match="give the trace file"):
        parse_config(spec.to_argv())


def test_json_round_trip_and_identity():
    assert CellSpec.from_json(json.loads(json.dumps(ODD.to_json()))) == ODD
    crash = dataclasses.replace(ODD, delay_s=math.inf)
    assert crash.to_json()["delay_s"] == "inf" and CellSpec.from_json(crash.to_json()) == crash
    hashes = {ODD.spec_hash}
    for f in spec_fields():  # every field is part of the identity
        value = getattr(ODD, f.name)
        other = {"figure": "x", "method": "zb", "links": ((2, 3),), "delay_s": 0.5, "trace": "ab",
                 "device": "cuda", "launcher": "fork", "pace": "off", "preset": "cpu-small"}
        changed = dataclasses.replace(ODD, **{f.name: other.get(f.name, value + 1 if isinstance(value, int) else value)})
        hashes.add(changed.spec_hash)
    assert len(hashes) == 1 + len(spec_fields())
    assert dataclasses.replace(ODD, trace_text="anything").spec_hash == ODD.spec_hash


@pytest.mark.parametrize(("changes", "words"), [
    ({"method": "fast"}, "unknown method"),
    ({"preset": "huge"}, "unknown preset"),
    ({"stages": 1}, "stages = 1"),
    ({"stages": 7}, "do not divide"),
    ({"stages": 40}, "fewer than 40 stages"),
    ({"links": ((7, 8),)}, "does not exist with 8 stages"),
    ({"fault_at": 11}, "outside 0..10"),
    ({"delegates": 65}, "at most 64"),
    ({"pace": "1,2"}, "pace"),
    ({"preset": "ae-7b"}, "CUDA only"),
    ({"trace": "abc"}, "either a trace or slow links"),
])
def test_bad_specs_are_one_line(changes, words):
    with pytest.raises(SpecError, match=words) as info:
        validate(dataclasses.replace(ODD, **changes))
    assert "\n" not in str(info.value)
