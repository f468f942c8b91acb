"""User-defined experiment files (``pmctl run PATH.toml``): validation (one line naming the file
and the key), the cells a file yields, the precedence of flags over file over inventory, and
the generic plot on synthetic op logs. Pure: nothing runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from injector.trace import trace_hash
from pmctl.errors import UserError
from pmctl.experiment_file import (
    Experiment,
    is_experiment_file,
    load_experiment,
    plot_experiment,
)
from pmctl.inventory import Inventory, parse_inventory
from pmctl.matrix import Selection, SpecOptions
from tests.figures.fig_synthetic import write_cell

GOOD = """\
name = "eight-stages"
preset = "tiny"
stages = 8
microbatches = 16
iterations = 8
fault_at = 3
methods = ["zb", "pipemorph"]
links = ["6_7", "0_1,6_7"]
delays_ms = [0, 60]
traces = ["moving.trace"]
"""
MOVING = "3;6_7;0.06\n5;0_1;0.03\n7;;0\n"


def local_inv(tmp_path: Path, **cluster: Any) -> Inventory:
    return parse_inventory(
        {"cluster": {"name": "local", "transport": "local", "device": "cpu", "stages": 4, **cluster}},
        tmp_path / "inventory.toml",
    )


def ssh_inv(tmp_path: Path) -> Inventory:
    hosts = [{"name": f"h{i}", "address": f"10.0.0.{i + 1}"} for i in range(4)]
    return parse_inventory({"cluster": {"name": "vms", "transport": "ssh"}, "hosts": hosts},
                           tmp_path / "vms.toml")


def write(tmp_path: Path, text: str, files: dict[str, str] | None = None) -> Path:
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


def load(path: Path, inv: Inventory, opts: SpecOptions | None = None, sel: Selection | None = None) -> Experiment:
    return load_experiment(path, inv, opts or SpecOptions(), sel or Selection())


def test_is_experiment_file() -> None:
    assert is_experiment_file("exps/eight.toml") and is_experiment_file("E.TOML")
    assert not is_experiment_file("fig15") and not is_experiment_file("all")


# -- bad files: one line naming the file and the key -------------------------------------------

SMALL = 'name = "x"\nmethods = ["zb"]\n'
BAD = {
    "unknown key": (SMALL + 'colour = "red"\n', {}, "colour", "allowed: name"),
    "inventory key": (SMALL + "stages_per_host = 2\n", {}, "stages_per_host", "inventory"),
    "missing name": ('methods = ["zb"]\n', {}, "name", "missing"),
    "missing methods": ('name = "x"\n', {}, "methods", "missing"),
    "bad name": ('name = "../up"\nmethods = ["zb"]\n', {}, "name", "letters, digits"),
    "figure name": ('name = "fig15"\nmethods = ["zb"]\n', {}, "name", "figure"),
    "bad link for the stages": (SMALL + 'links = ["4_5"]\ndelays_ms = [60]\n', {}, "links[0]", "4 stages"),
    "not adjacent": (SMALL + 'links = ["0_2"]\ndelays_ms = [60]\n', {}, "links[0]", "adjacent"),
    "missing trace file": (SMALL + 'traces = ["gone.trace"]\n', {}, "traces[0]", "not found"),
    "bad trace line": (SMALL + 'traces = ["t.trace"]\n', {"t.trace": "3;2_3;0.06\n4;2_3\n"}, "traces[0]", "line 2"),
    "trace link for the stages": (SMALL + 'traces = ["t.trace"]\n', {"t.trace": "3;5_6;0.06\n"}, "traces[0]", "line 1"),
    "negative delay": (SMALL + 'links = ["2_3"]\ndelays_ms = [60, -5]\n', {}, "delays_ms[1]", "negative"),
    "delay not a number": (SMALL + 'links = ["2_3"]\ndelays_ms = ["60"]\n', {}, "delays_ms[0]", "not a number"),
    "delays without links": (SMALL + "delays_ms = [60]\n", {}, "delays_ms", "no links"),
    "links without delays": (SMALL + 'links = ["2_3"]\n', {}, "delays_ms", "missing"),
    "unknown method": ('name = "x"\nmethods = ["zb", "zbb"]\n', {}, "methods[1]", "unknown method"),
    "fault_at outside": (SMALL + 'links = ["2_3"]\ndelays_ms = [60]\niterations = 4\nfault_at = 4\n', {},
                         "fault_at", "outside"),
    "iterations below fault_at": (SMALL + 'links = ["2_3"]\ndelays_ms = [60]\niterations = 2\n', {},
                                  "iterations", "outside"),
    "wrong type int": (SMALL + 'iterations = "8"\n', {}, "iterations", "integer"),
    "wrong type bool": (SMALL + "seed = true\n", {}, "seed", "integer"),
    "wrong type list": ('name = "x"\nmethods = "zb"\n', {}, "methods", "list of strings"),
    "stages too few": (SMALL + "stages = 1\n", {}, "stages", ">= 2"),
    "unknown preset": (SMALL + 'preset = "huge"\n', {}, "preset", "unknown preset"),
    "preset needs cuda": (SMALL + 'preset = "gpu-mid"\n', {}, "preset", "CUDA"),
    "bad pace": (SMALL + 'pace = "fast"\n', {}, "pace", "pace"),
    "not toml": (SMALL + "iterations = \n", {}, "", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_file_one_line_naming_file_and_key(tmp_path: Path, case: str) -> None:
    text, files, key, words = BAD[case]
    path = write(tmp_path, text, files)
    with pytest.raises(UserError) as info:
        load(path, local_inv(tmp_path))
    line = info.value.line()
    assert "\n" not in line
    assert line.startswith(f"{path}: {key}"), line
    assert words in line, line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "none.toml", local_inv(tmp_path))


def test_stages_unreachable_on_ssh_inventory(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL + "stages = 8\n")
    with pytest.raises(UserError) as info:
        load(path, ssh_inv(tmp_path))
    line = info.value.line()
    assert line.startswith(f"{path}: stages") and "run 4 stages" in line and "remove stages" in line
    # The same stage count as the hosts is fine.
    ok = load(write(tmp_path, SMALL + "stages = 4\n"), ssh_inv(tmp_path))
    assert ok.stages == 4 and ok.cells[0].launcher == "torchrun"


# -- a good file -------------------------------------------------------------------------------


def test_good_file_cells(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, {"moving.trace": MOVING})
    exp = load(path, local_inv(tmp_path))
    assert exp.name == "eight-stages" and exp.path == path and exp.stages == 8
    h = trace_hash(MOVING)
    results = tmp_path / "results"
    folders = [p.folder.relative_to(results).as_posix() for p in exp.planned(results)]
    expected = [f"eight-stages/{m}/{rest}" for m in ("zb", "pipemorph")
                for rest in ("none/0", "6_7/0.06", "0_1,6_7/0.06", f"trace/{h}")]
    assert folders == expected
    for c in exp.cells:
        assert (c.figure, c.stages, c.stages_per_host, c.preset, c.microbatches, c.iterations, c.fault_at) == (
            "eight-stages", 8, 1, "tiny", 16, 8, 3)
        assert (c.device, c.launcher) == ("cpu", "fork")
    traced = [c for c in exp.cells if c.trace]
    assert all(c.trace == h and c.trace_text == MOVING and c.links == () for c in traced)
    assert exp.trace_names == {h: "moving.trace"}
    faulty = [c for c in exp.cells if c.links]
    assert {(c.links, c.delay_s) for c in faulty} == {(((6, 7),), 0.06), (((0, 1), (6, 7)), 0.06)}
    assert all(p.root == results for p in exp.planned(results))


def test_healthy_cells_deduplicated_and_crash(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL + 'links = ["none", "2_3", "3_2"]\ndelays_ms = [0, 0.0, inf]\n')
    exp = load(path, local_inv(tmp_path))
    assert [(c.links, c.delay_s) for c in exp.cells] == [((), 0.0), (((2, 3),), math.inf)]
    assert exp.planned(tmp_path)[1].folder == tmp_path / "x" / "zb" / "2_3" / "inf"


def test_only_methods_gives_healthy_cells(tmp_path: Path) -> None:
    exp = load(write(tmp_path, 'name = "x"\nmethods = ["ZB-CPU-ReSchedule", "pipemorph", "1f1b"]\n'),
               local_inv(tmp_path))
    assert [(c.method, c.healthy) for c in exp.cells] == [("pipemorph", True), ("1f1b", True)]
    # no fault, no fault start to check: 2 iterations are fine (the figures' fig20 agrees)
    short = load(write(tmp_path, 'name = "x"\nmethods = ["zb"]\niterations = 2\n'), local_inv(tmp_path))
    assert [c.iterations for c in short.cells] == [2]


def test_traces_only_gives_trace_cells(tmp_path: Path) -> None:
    time_trace = "0.0;2_3;0.04\n1.5;0_1,2_3;0.03,0.01\n"
    exp = load(write(tmp_path, SMALL + 'traces = ["t.trace", "same.trace"]\n',
                     {"t.trace": time_trace, "same.trace": time_trace}), local_inv(tmp_path))
    assert [(c.method, c.trace) for c in exp.cells] == [("zb", trace_hash(time_trace))]
    assert exp.trace_names == {trace_hash(time_trace): "t.trace"}


def test_selection_filters_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, {"moving.trace": MOVING})
    inv = local_inv(tmp_path)
    only = load(path, inv, sel=Selection(methods=("zb",), delays=("60",)))
    assert [(c.method, c.links) for c in only.cells] == [("zb", ((6, 7),)), ("zb", ((0, 1), (6, 7)))]
    healthy = load(path, inv, sel=Selection(links=("none",)))
    assert [c.method for c in healthy.cells] == ["zb", "pipemorph"] and all(c.healthy for c in healthy.cells)
    traces = load(path, inv, sel=Selection(methods=("pipemorph",)))
    assert len(traces.cells) == 4
    with pytest.raises(UserError) as info:
        load(path, inv, sel=Selection(delays=("120",)))
    assert str(path) in info.value.line() and "--delays" in info.value.line()


# -- precedence: flags > file > inventory > defaults -------------------------------------------


def test_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL + 'preset = "tiny"\niterations = 6\nfault_at = 2\npace = "off"\nseed = 3\n')
    inv = local_inv(tmp_path, preset="cpu-small", microbatches=6)
    c = load(path, inv).cells[0]
    # file over inventory (preset), inventory over default (microbatches), file-only keys
    assert (c.preset, c.microbatches, c.iterations, c.fault_at, c.pace, c.seed, c.stages) == (
        "tiny", 6, 6, 2, "off", 3, 4)
    # flags over file
    flags = SpecOptions(preset="cpu-small", stages=6, microbatches=4, iterations=10, fault_at=5, delegates=2)
    c = load(path, inv, flags).cells[0]
    assert (c.preset, c.stages, c.microbatches, c.iterations, c.fault_at, c.delegates) == (
        "cpu-small", 6, 4, 10, 5, 2)
    # nothing anywhere: the defaults (micro-batches: the preset's)
    c = load(write(tmp_path, SMALL), local_inv(tmp_path)).cells[0]
    assert (c.preset, c.microbatches, c.stages, c.delegates, c.pace) == ("cpu-small", 12, 4, 0, "preset")


def test_file_stages_grow_the_local_cluster_and_flag_wins(tmp_path: Path) -> None:
    path = write(tmp_path, SMALL + 'stages = 8\nlinks = ["6_7"]\ndelays_ms = [60]\n')
    assert load(path, local_inv(tmp_path)).stages == 8
    # --stages 6 wins over the file, so the file's 6_7 no longer exists
    with pytest.raises(UserError, match=r"links\[0\].*6 stages"):
        load(path, local_inv(tmp_path), SpecOptions(stages=6))
    # a flag that breaks the spec is named as the flag
    with pytest.raises(UserError, match=r"fault_at \(from --fault-at\)"):
        load(path, local_inv(tmp_path), SpecOptions(fault_at=9))


# -- the plot ----------------------------------------------------------------------------------

PLOT = """\
name = "mini"
methods = ["zb", "pipemorph"]
links = ["2_3"]
delays_ms = [0, 60]
traces = ["moving.trace"]
iterations = 8
"""
TRACE4 = "3;2_3;0.06\n6;;0\n"


def test_plot_experiment(tmp_path: Path) -> None:
    exp = load(write(tmp_path, PLOT, {"moving.trace": TRACE4}), local_inv(tmp_path))
    results = tmp_path / "results"
    times = {
        ("zb", False): [1400.0 + 10 * i for i in range(8)],
        ("zb", True): [2100.0 + 10 * i for i in range(8)],
        ("pipemorph", False): [1400.0 + 10 * i for i in range(8)],
    }
    missing_cell = None
    for c in exp.cells:
        if c.method == "pipemorph" and c.links:
            missing_cell = c  # never run
            continue
        per_it = [1400.0 + (300.0 if 3 <= i < 6 else 0.0) for i in range(8)] if c.trace else times[(c.method, bool(c.links))]
        write_cell(results, c, per_it, with_timeline=True)
    assert missing_cell is not None

    report = plot_experiment(exp, results)
    out = results / "mini"
    for suffix in ("png", "pdf", "json"):
        assert (out / f"mini.{suffix}").stat().st_size > 0
    data = json.loads((out / "mini.json").read_text())
    assert data["figure"] == "mini" and len(data["cells"]) == len(exp.cells) == 6
    keys = {"method", "links", "delay_s", "trace", "stages", "preset", "microbatches", "device",
            "status", "iteration_time_s", "std_s"}
    assert all(keys <= d.keys() for d in data["cells"])
    by = {(d["method"], d["links"], d["trace"]): d for d in data["cells"]}
    assert by[("zb", "none", "")]["iteration_time_s"] == pytest.approx(1.45)  # mean of the last 5
    assert by[("zb", "2_3", "")]["delay_s"] == 0.06 and by[("zb", "2_3", "")]["iteration_time_s"] == pytest.approx(2.15)
    gone = by[("pipemorph", "2_3", "")]
    assert gone["status"] == "missing" and gone["iteration_time_s"] is None
    traced = by[("pipemorph", "none", trace_hash(TRACE4))]
    assert traced["trace_file"] == "moving.trace" and traced["status"] == "done"
    assert [p["time_s"] for p in traced["per_iteration_s"]] == pytest.approx(
        [1.4, 1.4, 1.4, 1.7, 1.7, 1.7, 1.4, 1.4])
    assert report.missing == ["pipemorph 2_3 0.06: missing - not run"]
    assert report.cells == data["cells"] and report.figure == "mini"
    assert len(report.rows) == 6 and all(len(r) == len(report.columns) for r in report.rows)


def test_plot_experiment_with_nothing_run(tmp_path: Path) -> None:
    exp = load(write(tmp_path, PLOT, {"moving.trace": TRACE4}), local_inv(tmp_path))
    report = plot_experiment(exp, tmp_path / "results")
    assert len(report.missing) == 6
    data = json.loads((tmp_path / "results" / "mini" / "mini.json").read_text())
    assert all(d["iteration_time_s"] is None and d["status"] == "missing" for d in data["cells"])
