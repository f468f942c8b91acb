"""Rendering measured figures from fixture results: files, numbers and missing cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fig_synthetic import cell_times_ms, write_cell, write_fig15_quick

from figures.base import FigureReport
from figures.cells import Cell, base_spec
from figures.registry import get_figure, plot_figure


def _cells(report_json: dict) -> dict[tuple[str, str, float], dict]:
    return {(c["method"], c["links"], c["delay_s"]): c for c in report_json["cells"]}


def test_fig15_files_and_numbers(fig15_plotted: tuple[Path, FigureReport]) -> None:
    root, report = fig15_plotted
    out = root / "fig15"
    for name in ("fig15.png", "fig15.pdf", "fig15.json"):
        assert (out / name).stat().st_size > 0
    numbers = json.loads((out / "fig15.json").read_text())
    cells = _cells(numbers)
    # Mean of the last 5 synthetic iterations: base + 10 * (5..9) = base + 70 ms.
    zb60 = cells[("zb", "2_3", 0.06)]
    assert zb60["iteration_time_s"] == pytest.approx((1400 + 720 + 70) / 1000)
    pm60 = cells[("pipemorph", "2_3", 0.06)]
    assert pm60["iteration_time_s"] == pytest.approx((1400 + 60 + 70) / 1000)
    assert pm60["speedup_vs_zb"] == pytest.approx(2.19 / 1.53, rel=1e-4)
    assert cells[("zb", "none", 0.0)]["ratio_to_zb_nofault"] == pytest.approx(1.0)
    assert numbers["cells"][0]["figure_dir"] == "fig20"  # the 0 ms point is fig20's cell
    assert report.cells == [{k: c[k] for k in report.cells[0]} for c in numbers["cells"]]
    # plot --json cells carry the spec they were run with
    assert {"stages", "preset", "microbatches", "device", "trace"} <= set(report.cells[0])
    assert report.cells[0]["stages"] == 4 and report.cells[0]["preset"] == "cpu-small"
    assert any("tF = 30.0 ms" in n for n in report.notes)
    assert (out / "fig15.png") in report.files


def test_failed_cell_is_listed_never_zero(fig15_plotted: tuple[Path, FigureReport]) -> None:
    _, report = fig15_plotted
    failed = _cells({"cells": report.cells})[("pipemorph", "2_3", 0.12)]
    assert failed["status"] == "failed" and failed["iteration_time_s"] is None
    assert report.missing == ["pipemorph 2_3 0.12: failed"]
    row = next(r for r in report.rows if r[0] == "PipeMorph" and r[2] == "120")
    assert row[3] == "n/a"


def test_plot_draws_missing_cell_timelines(tmp_path: Path) -> None:
    cells = [Cell("fig20", "zb"), Cell("fig20", "1f1b")]
    write_cell(tmp_path, cells[0], cell_times_ms("zb", 0.0))
    write_cell(tmp_path, cells[1], None, status="failed")
    plot_figure("fig20", tmp_path)
    assert (tmp_path / "fig20/zb/none/0/timeline.png").stat().st_size > 0
    assert not (tmp_path / "fig20/1f1b/none/0/timeline.png").exists()  # failed: no logs to draw


def test_unrun_figure_lists_every_cell(tmp_path: Path) -> None:
    report = plot_figure("fig17", tmp_path)
    assert len(report.missing) == 10 and all("missing - not run" in m for m in report.missing)
    assert all(c["iteration_time_s"] is None for c in report.cells)
    assert (tmp_path / "fig17" / "fig17.png").exists()


def test_bar_figures_and_fig14_render(tmp_path: Path) -> None:
    write_fig15_quick(tmp_path)
    for name in ("fig14", "fig20"):
        for cell in get_figure(name).cells(base_spec(), quick=True):
            write_cell(tmp_path, cell, cell_times_ms(cell.method, cell.delay_s), with_timeline=True)
    for name in ("fig14", "fig20", "fig18"):
        report = plot_figure(name, tmp_path)
        assert report.missing == [], name
        assert (tmp_path / name / f"{name}.png").stat().st_size > 0
    fig18 = json.loads((tmp_path / "fig18" / "fig18.json").read_text())
    assert all(0 < c["bubble_rate"] < 1 for c in fig18["cells"])
