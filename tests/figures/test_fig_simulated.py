"""The simulated figures' anchor numbers (PAPER.md sections 2 and 3) and their data files."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from figures.registry import figure_names, get_figure, plot_figure
from figures.simulated import MissingDataError

pytest.importorskip("engine.planner.simulate")


def _computed(root: Path, name: str, quick: bool = False) -> dict:
    fig = get_figure(name)
    done: list[tuple[int, int]] = []
    fig.compute(root / fig.name, quick, lambda d, t: done.append((d, t)))
    assert done and done[-1][0] == done[-1][1]
    return json.loads((root / fig.name / f"{fig.name}.data.json").read_text())


def test_fig4_and_fig5_anchors(tmp_path: Path) -> None:
    fig4 = _computed(tmp_path, "fig4")["runs"][0]
    assert fig4["iteration_time_ms"] == 390 and fig4["warmup"] == [7, 5, 3, 1]
    fig5 = _computed(tmp_path, "fig5")["runs"]
    assert [r["iteration_time_ms"] for r in fig5] == [400, 440]
    assert [r["delays_ms"] for r in fig5] == [[10, 0, 0], [20, 0, 0]]
    report = plot_figure("fig5", tmp_path)
    assert (tmp_path / "fig5" / "fig5.png").stat().st_size > 0
    assert [c["iteration_time_s"] for c in report.cells] == [0.4, 0.44]
    assert {c["links"] for c in report.cells} == {"0_1"}


def test_fig8_delay_is_absorbed_up_to_delta_minus_one_forwards(tmp_path: Path) -> None:
    series = _computed(tmp_path, "fig8", quick=True)["series"]
    assert [s["delta"] for s in series] == [2, 3, 4, 5, 6]
    report = plot_figure("fig8", tmp_path)
    knees = [float(row[-1]) for row in report.rows]
    # Quick c grid is 0, 4, 8, ...: the knee is the last grid point <= (Delta - 1) x 10 ms.
    assert knees == [8, 20, 28, 40, 48]
    for s in series:  # past the knee the delay accumulates: more than c
        assert s["accumulated_ms"][-1] > s["c_ms"][-1]


def test_sim_compare_trend(tmp_path: Path) -> None:
    data = _computed(tmp_path, "sim-compare", quick=True)
    t = data["time_ms"]
    assert t["zb"][0] == t["pipemorph"][0]  # no delay: PipeMorph is ZB
    assert all(p <= z for p, z in zip(t["pipemorph"], t["zb"], strict=True))
    assert t["zb"][-1] - t["zb"][0] > 5 * (t["pipemorph"][-1] - t["pipemorph"][0])
    assert t["1f1b"][-1] > t["zb"][-1]
    plot_figure("sim-compare", tmp_path)
    assert (tmp_path / "sim-compare" / "sim-compare.json").exists()


def test_plot_without_data_says_run_first(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="pmctl run fig4"):
        plot_figure("fig4", tmp_path)


@pytest.mark.parametrize("name", figure_names())
def test_every_compute_takes_extras(name: str) -> None:
    """``pmctl run --extras`` passes ``extras=`` to every figure's compute (default off)."""
    params = inspect.signature(get_figure(name).compute).parameters
    assert params["extras"].default is False


def test_extras_change_nothing_where_a_figure_has_none(tmp_path: Path) -> None:
    fig = get_figure("fig5")
    fig.compute(tmp_path / "a", False)
    fig.compute(tmp_path / "b", False, None, extras=True)
    assert (tmp_path / "a" / "fig5.data.json").read_text() == (
        tmp_path / "b" / "fig5.data.json"
    ).read_text()
