"""Fig 19 end to end on a tiny grid: compute writes sane numbers, plot draws the files; the
expensive "MILP from pipemorph alone" line only with ``extras``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import figures.fig19 as fig19
from figures.cells import base_spec
from figures.fig19 import (
    EXTRA_COLUMN,
    EXTRAS_HINT,
    FIGURE,
    FULL,
    QUICK,
    Fig19Config,
    has_extras,
    summarize,
)
from figures.registry import get_figure
from figures.simulated import MissingDataError

TINY = Fig19Config(sizes=((3, 6), (4, 8)), granularities=(10, 25), repeats=1, time_limit_s=10.0)
SEARCH_KEYS = {"search_makespan", "search_proven", "search_solve_s", "search_searched"}


def _compute(root: Path, extras: bool) -> Path:
    seen: list[tuple[int, int]] = []
    FIGURE.compute_config(root / "fig19", TINY, progress=lambda d, t: seen.append((d, t)),
                          extras=extras)
    assert seen[-1] == (4, 4)
    return root


@pytest.fixture(scope="module")
def computed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compute(tmp_path_factory.mktemp("results"), extras=False)


@pytest.fixture(scope="module")
def computed_extras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _compute(tmp_path_factory.mktemp("results_extras"), extras=True)


def _data(root: Path) -> dict[str, Any]:
    return json.loads((root / "fig19" / "fig19.data.json").read_text())


def test_compute_writes_sane_instances(computed: Path):
    data = _data(computed)
    rows = data["instances"]
    assert {(r["S"], r["N"], r["b"]) for r in rows} == {
        (3, 6, 10), (3, 6, 25), (4, 8, 10), (4, 8, 25)
    }
    for r in rows:
        assert r["ilp_bound"] <= r["ilp_makespan"]
        assert r["ilp_makespan"] <= r["pipemorph_makespan"]
        assert r["ilp_makespan"] <= r["pipemorph+_makespan"] <= r["pipemorph_makespan"]
        assert r["ilp_proven"]  # these sizes prove in well under a second
        assert r["pipemorph_runtime_ms"] > 0 and r["ilp_solve_s"] > 0
        assert len(r["delays_ms"]) == r["S"] - 1
        assert all(0 <= d <= 20 for d in r["delays_ms"])
        assert all(r["b"] * 0.9 - 1 <= c <= 2 * r["b"] * 1.1 + 1 for c in r["costs_ms"]["tf"])


def test_default_compute_leaves_the_extra_line_out(computed: Path):
    data = _data(computed)
    assert data["extras"] is False
    assert data["left_out"] == ["MILP from pipemorph alone"]
    assert all(not SEARCH_KEYS & r.keys() for r in data["instances"])
    assert not has_extras(data["instances"])


def test_extras_compute_the_milp_from_pipemorph_alone(computed: Path, computed_extras: Path):
    data = _data(computed_extras)
    assert data["extras"] is True and data["left_out"] == []
    plain = {(r["S"], r["N"], r["b"], r["seed"]): r for r in _data(computed)["instances"]}
    for r in data["instances"]:
        assert SEARCH_KEYS <= r.keys()
        # Never worse than its start, never better than the proven optimum.
        assert r["ilp_makespan"] <= r["search_makespan"] <= r["pipemorph_makespan"]
        assert r["search_solve_s"] >= 0
        # The extras add a line; they change none of the default numbers.
        same = plain[(r["S"], r["N"], r["b"], r["seed"])]
        for key in ("ilp_makespan", "ilp_proven", "pipemorph_makespan", "pipemorph+_makespan"):
            assert r[key] == same[key]


def test_compute_passes_extras_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``compute`` (what ``pmctl run`` calls) runs the extra line only when asked."""
    calls: list[bool] = []

    def fake(S: int, N: int, b: int, seed: int, limit: float, extras: bool = True) -> dict:
        calls.append(extras)
        return {"S": S, "N": N, "b": b, "seed": seed}

    monkeypatch.setattr(fig19, "solve_instance", fake)
    FIGURE.compute(tmp_path / "a" / "fig19", quick=True)
    n = len(QUICK.sizes) * len(QUICK.granularities) * QUICK.repeats
    assert calls == [False] * n
    calls.clear()
    FIGURE.compute(tmp_path / "b" / "fig19", quick=True, extras=True)
    assert calls == [True] * n
    assert _data(tmp_path / "a")["extras"] is False and _data(tmp_path / "b")["extras"] is True


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
        # panel (a): the gap per granularity, one line per (S, N)
        assert [g["b"] for g in cell["by_granularity"]] == [10, 25]
        assert all(g["instances"] == 1 for g in cell["by_granularity"])


def test_default_plot_says_what_was_left_out(computed: Path):
    report = get_figure("fig19").plot(computed)
    assert EXTRA_COLUMN not in report.columns
    left_out = [n for n in report.notes if n.startswith("left out")]
    assert len(left_out) == 1
    assert "MILP from pipemorph alone" in left_out[0] and EXTRAS_HINT in left_out[0]
    assert "ILP proven optimal on 4 of 4 instances" in " ".join(report.notes)
    assert all(not any(k.startswith("search_") for k in c) for c in report.cells)


def test_extras_plot_draws_the_line(computed_extras: Path):
    report = get_figure("fig19").plot(computed_extras)
    assert report.columns[-1] == EXTRA_COLUMN
    assert all(len(row) == len(report.columns) for row in report.rows)
    assert not any(n.startswith("left out") for n in report.notes)
    assert any("MILP from PM" in n for n in report.notes)
    assert all("search_solve_s_mean" in c for c in report.cells)


def test_plot_copes_with_a_partly_extra_data_file(computed_extras: Path):
    """A file where some rows lack the extra line: drawn without it, not as zeros."""
    data = _data(computed_extras)
    for key in SEARCH_KEYS:
        data["instances"][0].pop(key)
    (computed_extras / "fig19" / "fig19.data.json").write_text(json.dumps(data))
    report = get_figure("fig19").plot(computed_extras)
    assert EXTRA_COLUMN not in report.columns
    assert any(n.startswith("left out") for n in report.notes)


def test_summary_gap_is_relative_to_the_ilp():
    base = {"S": 2, "N": 2, "b": 10, "ilp_bound": 100, "ilp_proven": True, "ilp_solve_s": 1.0,
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
    assert s["by_granularity"] == [{"b": 10, "instances": 2, "pipemorph_gap_pct_mean": 3.0,
                                    "pipemorph+_gap_pct_mean": 0.5}]
    (plain,) = summarize([{k: v for k, v in r.items() if not k.startswith("search_")}
                          for r in rows])
    assert not any(k.startswith("search_") for k in plain)


def test_plot_without_data_says_run_first(tmp_path: Path):
    with pytest.raises(MissingDataError, match="pmctl run fig19"):
        FIGURE.plot(tmp_path)


def test_estimates_and_kind():
    base = base_spec()
    assert FIGURE.kind == "simulated" and FIGURE.cells(base, True) == []
    assert FIGURE.estimate_seconds(base, True) < 120
    # The default full figure fits the simulated figures' ~3 minute share of `pmctl run all`.
    assert FIGURE.estimate_seconds(base, False) < 60
    assert FIGURE.estimate_seconds(base, False) > FIGURE.estimate_seconds(base, True)
    assert FIGURE.estimate_seconds(base, False, extras=True) > 300
    assert QUICK.repeats < 5
    assert FULL.sizes == ((3, 6), (4, 12), (6, 18), (8, 32))
    assert FULL.granularities == (10, 15, 20, 25, 30) and FULL.repeats == 5



def test_a_plain_run_keeps_the_extras_of_the_same_grid(tmp_path, monkeypatch) -> None:
    from figures import fig19

    cfg = fig19.Fig19Config(sizes=((3, 6),), granularities=(10,), repeats=1, time_limit_s=2.0)
    fig19.FIGURE.compute_config(tmp_path, cfg, extras=True)
    stored = (tmp_path / "fig19.data.json").read_text()
    calls = []
    monkeypatch.setattr(fig19, "solve_instance", lambda *a: calls.append(a))
    fig19.FIGURE.compute_config(tmp_path, cfg)  # no extras: the extras' data stays
    assert calls == [] and (tmp_path / "fig19.data.json").read_text() == stored
    other = fig19.Fig19Config(sizes=((3, 6),), granularities=(15,), repeats=1, time_limit_s=2.0)
    monkeypatch.undo()
    fig19.FIGURE.compute_config(tmp_path, other)  # another grid: computed anew
    data = json.loads((tmp_path / "fig19.data.json").read_text())
    assert data["extras"] is False and [r["b"] for r in data["instances"]] == [15]


# -- the artifact's own results, overlaid -------------------------------------------------

ARTIFACT_HEADER = "s, n, base, ilp_t, ilp_st, ilp_cost, our_t, our_st, our_cost\n"


def _artifact_tree(root: Path, lines: list[str]) -> Path:
    (root / "fig19").mkdir(parents=True)
    (root / "fig19" / "result.csv").write_text(ARTIFACT_HEADER + "".join(f"{x}\n" for x in lines))
    return root


def test_plot_json_has_gap_series_and_the_artifact_overlay(computed: Path, tmp_path: Path):
    tree = _artifact_tree(tmp_path / "ae", [
        "3, 6, 10, 100.0, 100.0, 30.1, 102.0, 101.0, 0.002",  # gap 2 %
        "3, 6, 10, 200.0, 200.0, 29.9, 206.0, 200.0, 0.004",  # gap 3 %
        "3, 6, 25, 300.0, 300.0, 0.5, 303.0, 303.0, 0.003",   # gap 1 %
        "8, 32, 10, 400.0, 400.0, 30.0, 400.0, 400.0, 0.050",  # a size we did not compute
    ])
    report = get_figure("fig19").plot(computed, tree)
    series = json.loads((computed / "fig19" / "fig19.json").read_text())["series"]
    # ours: per (S, N) the gap of each heuristic per granularity, as panel (a) draws it
    assert [(s["S"], s["N"]) for s in series["ours"]] == [(3, 6), (4, 8)]
    for line, cell in zip(series["ours"], report.cells):
        assert [p["b"] for p in line["points"]] == [10, 25]
        assert [p["pipemorph_gap_pct_mean"] for p in line["points"]] == [
            g["pipemorph_gap_pct_mean"] for g in cell["by_granularity"]]
        assert all("pipemorph+_gap_pct_mean" in p for p in line["points"])
    # the artifact's: (our_t - ilp_t) / ilp_t in %, the mean over its repeats
    art = {(a["S"], a["N"]): a for a in series["artifact"]}
    assert set(art) == {(3, 6), (8, 32)}
    assert [(p["b"], p["repeats"]) for p in art[(3, 6)]["points"]] == [(10, 2), (25, 1)]
    assert [p["gap_pct_mean"] for p in art[(3, 6)]["points"]] == pytest.approx([2.5, 1.0])
    assert art[(3, 6)]["heuristic_runtime_ms_mean"] == pytest.approx(3.0)
    assert art[(3, 6)]["ilp_solve_s_mean"] == pytest.approx(20.1666, rel=1e-4)
    assert series["artifact_source"] == str(tree / "fig19" / "result.csv")
    assert any(n.startswith("dotted: the artifact's own results") for n in report.notes)


def test_overlay_is_left_out_without_the_artifact_file(computed: Path, tmp_path: Path):
    report = get_figure("fig19").plot(computed, tmp_path / "no-tree")
    series = json.loads((computed / "fig19" / "fig19.json").read_text())["series"]
    assert series["artifact"] is None and series["ours"]
    assert f"artifact overlay left out: no {tmp_path / 'no-tree' / 'fig19' / 'result.csv'}" in report.notes


def test_a_malformed_artifact_file_is_one_line(computed: Path, tmp_path: Path):
    from figures.reference import ArtifactTreeError

    bad = _artifact_tree(tmp_path / "bad", ["3, 6, 10, x, 1, 1, 1, 1, 1"])
    with pytest.raises(ArtifactTreeError, match="result.csv: line 2: not a number"):
        get_figure("fig19").plot(computed, bad)
    (bad / "fig19" / "result.csv").write_text("s, n\n3, 6\n")
    with pytest.raises(ArtifactTreeError, match="no column base"):
        get_figure("fig19").plot(computed, bad)


@pytest.mark.parametrize("line, match", [
    ("3, 6, 10, 0, 0, 1, 1, 1, 1", r"line 2: ilp_t = 0: the ILP's makespan must be > 0"),
    ("nan, 6, 10, 1, 1, 1, 1, 1, 1", r"line 2: s = nan: expected finite numbers"),
    ("3, 6, 1.5, 1, 1, 1, 1, 1, 1", r"line 2: base = 1.5: expected"),
    ("3, 6, 10, 1, 1, inf, 1, 1, 1", r"line 2: ilp_cost = inf: expected"),
])
def test_an_artifact_row_that_cannot_be_drawn_is_one_line(tmp_path: Path, line: str, match: str):
    from figures.reference import ArtifactTreeError

    tree = _artifact_tree(tmp_path / "bad", [line])
    with pytest.raises(ArtifactTreeError, match=match):
        fig19.read_artifact(tree)


def test_an_artifact_file_that_is_not_utf8_is_one_line(tmp_path: Path):
    from figures.reference import ArtifactTreeError

    tree = _artifact_tree(tmp_path / "bin", ["3, 6, 10, 1, 1, 1, 1, 1, 1"])
    (tree / "fig19" / "result.csv").write_bytes(b"s, n\n\xff\xfe3, 6\n")
    with pytest.raises(ArtifactTreeError, match=r"result.csv: not UTF-8 text"):
        fig19.read_artifact(tree)


def test_default_overlay_reads_the_shared_folder_in_place():
    """Without --reference the plot reads the shared folder beside the checkout (the data is
    never copied into the repository)."""
    repo = Path(__file__).resolve().parents[2]
    assert fig19.SHARED_REFERENCE == repo.parent / "shared" / "ae-reference"
    rows = fig19.read_artifact(fig19.SHARED_REFERENCE)
    if rows is None:
        pytest.skip("no shared artifact tree beside this checkout")
    lines = fig19.artifact_series(rows)
    assert [(a["S"], a["N"]) for a in lines] == list(FULL.sizes)
    assert all([p["b"] for p in a["points"]] == list(FULL.granularities) for a in lines)
    assert all(p["repeats"] == FULL.repeats for a in lines for p in a["points"])
