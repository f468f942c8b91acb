"""The baselines as the artifact measured them, and PipeMorph+ drawn beside PipeMorph:

- fig15's 0 ms point of PipeMorph-CPU, PipeMorph and PipeMorph+ is the All-CPU no-fault cell
  with one delegate (the artifact's ``fig20/times.txt``), a cell shared with fig20, not a run
  of its own;
- fig20 draws All-CPU with 1 delegate (the artifact's) and with the spec's (ours) as two cells
  that differ only in ``delegates``;
- the ZB family's healthy plan holds at most 2 x S micro-batches in flight per stage;
- figs 15-18 have a PipeMorph+ series in their plot JSON; a PipeMorph result whose logs say it
  was planned by another generator is stale, never drawn as PipeMorph.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from fig_synthetic import cell_times_ms, write_cell, write_fig15_quick

from engine.healthy_plan import healthy_schedule
from engine.methods import METHODS
from engine.planner.activations import inflight_peaks
from engine.planner.costs import StageCosts
from engine.planner.generators import generate
from figures.cells import base_spec, cell_folder
from figures.fig15 import ZERO_MS
from figures.measured import nofault_cell, read_cell
from figures.registry import get_figure, plot_figure

BASE = base_spec()
ALL_CPU_K1 = [1500.0 + 10.0 * k for k in range(10)]  # apart from ZB's 1400 + 10 k


def _json(root: Path, fig: str) -> dict:
    return json.loads((root / fig / f"{fig}.json").read_text())


@pytest.fixture(scope="module")
def fig15_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fig15's quick cells (PipeMorph at 120 ms failed), the artifact's All-CPU at 1.57 s."""
    root = write_fig15_quick(tmp_path_factory.mktemp("results"))
    write_cell(root, nofault_cell(BASE, "all-cpu"), ALL_CPU_K1, with_timeline=True)
    plot_figure("fig15", root)
    return root


def test_fig15_zero_ms_is_the_artifacts_all_cpu_cell(fig15_root: Path) -> None:
    cells = get_figure("fig15").cells(BASE)
    healthy = [c for c in cells if c.healthy]
    k1 = nofault_cell(BASE, "all-cpu")
    assert (k1.figure, k1.delegates) == ("fig20-k1", 1) and k1 in healthy
    assert k1 in get_figure("fig20").cells(BASE)  # one cell for both figures
    # no 0 ms run of the offloading methods: they share that cell
    assert {c.method for c in healthy} == {"1f1b", "zb", "all-cpu"}
    numbers = _json(fig15_root, "fig15")
    assert numbers["zero_ms"] == ZERO_MS and "all-cpu no-fault, as the artifact" in ZERO_MS
    for method in ("pipemorph-cpu", "pipemorph", "pipemorph+"):
        zero = numbers["series"][method][0]
        assert zero["delay_ms"] == 0 and zero["cell"] == "fig20-k1/all-cpu/none/0"
        assert zero["iteration_time_s"] == pytest.approx(1.57)  # mean of its last 5
    for method in ("1f1b", "zb"):
        assert numbers["series"][method][0]["cell"] == f"fig20/{method}/none/0"
        assert numbers["series"][method][0]["iteration_time_s"] == pytest.approx(1.47)


def test_fig15_series_has_pipemorph_plus_beside_pipemorph(fig15_root: Path) -> None:
    series = _json(fig15_root, "fig15")["series"]
    assert set(series) == {"1f1b", "zb", "pipemorph-cpu", "pipemorph", "pipemorph+"}
    plus = series["pipemorph+"]
    assert [p["delay_ms"] for p in plus] == [0, 60, 120]
    assert [p["cell"] for p in plus[1:]] == ["fig15/pipemorph+/2_3/0.06", "fig15/pipemorph+/2_3/0.12"]
    assert all(p["status"] == "done" for p in plus)
    failed = series["pipemorph"][2]  # the fixture's failed cell: n/a, never a number
    assert failed["status"] == "failed" and failed["iteration_time_s"] is None


def test_fig20_draws_all_cpu_with_one_delegate_and_ours(tmp_path: Path) -> None:
    cells = get_figure("fig20").cells(BASE)
    artifact, ours = [c for c in cells if c.method == "all-cpu"]
    assert (artifact.delegates, ours.delegates) == (1, 0)  # 0 = automatic
    assert replace(artifact, delegates=0, figure="fig20") == ours  # only the count differs
    assert artifact.spec_hash != ours.spec_hash
    assert cell_folder(tmp_path, artifact) != cell_folder(tmp_path, ours)
    # a spec that already asks for one delegate has one All-CPU cell; another count two
    assert [c.method for c in get_figure("fig20").cells(base_spec(delegates=1))] == ["1f1b", "zb", "all-cpu"]
    assert [c.delegates for c in get_figure("fig20").cells(base_spec(delegates=3))] == [3, 3, 1, 3]

    tree = tmp_path / "ae" / "fig20"
    tree.mkdir(parents=True)
    (tree / "times.txt").write_text("{'ZB': [1.25], 'ALL-CPU': [1.30]}\n")
    for c in cells:
        write_cell(tmp_path, c, ALL_CPU_K1 if c is artifact else cell_times_ms(c.method, 0.0), with_timeline=True)
    report = plot_figure("fig20", tmp_path, reference=tmp_path / "ae")
    assert not report.missing
    bars = _json(tmp_path, "fig20")["bars"]
    assert [(b["method"], b["delegates"], b["ours"]) for b in bars] == [
        ("1f1b", 0, False), ("zb", 0, False), ("all-cpu", 1, False), ("all-cpu", 0, True)]
    assert "as the artifact" in bars[2]["bar"] and "ours" in bars[3]["bar"]
    assert [r[0] for r in report.rows[2:]] == [
        "PipeMorph-All-CPU 1 delegate (as the artifact)", "PipeMorph-All-CPU auto delegates (ours)"]
    assert bars[2]["iteration_time_s"] == pytest.approx(1.57)
    # the artifact measured the one-delegate run: its value (1.30 / 1.25 x our ZB) there only
    assert bars[2]["artifact_scaled_s"] == pytest.approx(1.30 / 1.25 * 1.47, rel=1e-4)
    assert bars[3]["artifact_scaled_s"] is None


@pytest.mark.parametrize("S,N", [(2, 8), (4, 12), (8, 24), (6, 30)])
def test_zb_family_keeps_the_artifacts_activation_cap(S: int, N: int) -> None:
    uniform = StageCosts.uniform(S, 1, 1, 1)
    zb = healthy_schedule(METHODS["zb"], S, N)
    assert max(inflight_peaks(zb)) <= 2 * S
    assert zb == generate("zb", S, N, uniform, activation_cap=2 * S)
    # the cap is real: the uncapped greedy plan holds more than 2 x S (deferred W's)
    assert max(inflight_peaks(generate("zb", S, N, uniform))) > 2 * S
    for m in METHODS.values():  # the ZB family shares that plan; 1F1B keeps its own
        if m.healthy_schedule == "zb":
            assert healthy_schedule(m, S, N) == zb and m.healthy_activation_cap(S) == 2 * S
        else:
            assert m.healthy_activation_cap(S) is None


def test_figs_15_to_18_draw_pipemorph_plus(tmp_path: Path) -> None:
    for name in ("fig15", "fig16", "fig17", "fig20"):
        for c in get_figure(name).cells(BASE, quick=True):
            write_cell(tmp_path, c, cell_times_ms(c.method, c.delay_s), with_timeline=True)
    for name in ("fig15", "fig16", "fig17", "fig18"):
        report = plot_figure(name, tmp_path, quick=True)
        assert not report.missing, name
        plus = [c for c in _json(tmp_path, name)["cells"] if c["method"] == "pipemorph+"]
        assert plus and all(c["iteration_time_s"] > 0 and c["status"] == "done" for c in plus), name
        assert any(r[0] == "PipeMorph+ (ours)" for r in report.rows), name


def test_pipemorph_result_planned_by_another_generator_is_stale(tmp_path: Path) -> None:
    """A PipeMorph cell run before it had the paper's rule logged pipemorph+ plans under the
    same spec: drawn as n/a (stale, rerun), never as PipeMorph."""
    cell = BASE.with_fault("fig15", "pipemorph", ((2, 3),), 0.06)
    folder = write_cell(tmp_path, cell, cell_times_ms("pipemorph", 0.06))
    assert read_cell(tmp_path, cell).status == "done"
    for log in folder.glob("stage*.jsonl"):  # the old format: the generator in the fault view
        log.write_text(log.read_text().replace('"fault":{}', '"fault":{"generator":"pipemorph+"}'))
    stale = read_cell(tmp_path, cell)
    assert stale.status == "stale" and "pipemorph+" in stale.reason and "--force" in stale.reason
    assert not stale.ok
