"""Fig 19 end to end on a tiny grid: compute writes sane numbers, plot draws the files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from figures.fig19 import FIGURE, QUICK, Fig19Config, summarize
from figures.registry import get_figure
from figures.simulated import MissingDataError

TINY = Fig19Config(sizes=((3, 6), (4, 8)), granularities=(10, 25), repeats=1, time_limit_s=10.0)


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    seen: list[tuple[int, int]] = []
    FIGURE.compute_config(root / "fig19", TINY, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (4, 4)
    return root


def test_compute_writes_sane_instances(computed: Path):
    data = json.loads((computed / "fig19" / "fig19.data.json").read_text())
    rows = data["instances"]
    assert {(r["S"], r["N"], r["b"]) for r in rows} == {
        (3, 6, 10), (3, 6, 25), (4, 8, 10), (4, 8, 25)
    }
    for r in rows:
        assert r["ilp_bound"] <= r["ilp_makespan"]
        assert r["ilp_makespan"] <= r["pipemorph_makespan"]
        assert r["ilp_makespan"] <= r["pipemorph+_makespan"] <= r["pipemorph_makespan"]
        assert r["ilp_proven"]  # these sizes prove in well under a second
        # The MILP started from pipemorph alone: never worse than that start, never better
        # than the proven optimum.
        assert r["ilp_makespan"] <= r["search_makespan"] <= r["pipemorph_makespan"]
        assert r["pipemorph_runtime_ms"] > 0 and r["ilp_solve_s"] > 0
        assert len(r["delays_ms"]) == r["S"] - 1
        assert all(0 <= d <= 20 for d in r["delays_ms"])
        assert all(r["b"] * 0.9 - 1 <= c <= 2 * r["b"] * 1.1 + 1 for c in r["costs_ms"]["tf"])


def test_plot_draws_files_and_table(computed: Path):
    report = get_figure("fig19").plot(computed)
    names = sorted(p.name for p in report.files)
    assert names == ["fig19.json", "fig19.pdf", "fig19.png"]
    for p in report.files:
        assert p.stat().st_size > 0
    assert [row[0] for row in report.rows] == ["3,6", "4,8"]
    assert all(len(row) == len(report.columns) for row in report.rows)
    stored = json.loads((computed / "fig19" / "fig19.json").read_text())
    assert stored["figure"] == "fig19"
    for cell in stored["cells"]:
        assert cell["proven"] == cell["instances"] == 2
        assert 0 <= cell["pipemorph+_gap_pct_mean"] <= cell["pipemorph_gap_pct_mean"] + 1e-9
        assert cell["pipemorph_gap_pct_max"] >= cell["pipemorph_gap_pct_mean"]


def test_summary_gap_is_relative_to_the_ilp():
    base = {"S": 2, "N": 2, "ilp_bound": 100, "ilp_proven": True, "ilp_solve_s": 1.0,
            "pipemorph_runtime_ms": 1.0, "pipemorph+_runtime_ms": 2.0, "search_solve_s": 3.0,
            "search_proven": False}
    rows = [
        {**base, "ilp_makespan": 100, "pipemorph_makespan": 105, "pipemorph+_makespan": 100,
         "search_makespan": 102},
        {**base, "ilp_makespan": 100, "pipemorph_makespan": 101, "pipemorph+_makespan": 101,
         "search_makespan": 100},
    ]
    (s,) = summarize(rows)
    assert s["search_gap_pct_mean"] == pytest.approx(1.0)
    assert s["pipemorph_gap_pct_mean"] == pytest.approx(3.0)
    assert s["pipemorph_gap_pct_max"] == pytest.approx(5.0)
    assert s["pipemorph+_gap_pct_max"] == pytest.approx(1.0)


def test_plot_without_data_says_run_first(tmp_path: Path):
    with pytest.raises(MissingDataError, match="pmctl run fig19"):
        FIGURE.plot(tmp_path)


def test_estimates_and_kind():
    assert FIGURE.kind == "simulated" and FIGURE.cells(True) == []
    assert FIGURE.estimate_seconds(True) < 120
    assert FIGURE.estimate_seconds(False) > FIGURE.estimate_seconds(True)
    assert QUICK.repeats < 5
