"""The results store: atomic cells, done = skipped, reruns replace, leftovers swept."""

from __future__ import annotations

import json
from pathlib import Path

from figures.cells import Cell
from pmctl.results import (
    DONE,
    FAILED,
    CellRecord,
    Staging,
    cell_dir,
    cell_status,
    is_done,
    summarize_cells,
    sweep_staging,
)

CELL = Cell("fig15", "zb", ((2, 3),), 0.06)


def _record(status: str) -> CellRecord:
    return CellRecord(spec=CELL.to_json(), status=status, run_id="r1", started="t0", ended="t1")


def test_cell_is_invisible_until_committed(tmp_path: Path) -> None:
    st = Staging(tmp_path, CELL)
    (st.path / "stage0.jsonl").write_text("{}\n")
    final = cell_dir(tmp_path, CELL)
    assert final == tmp_path / "fig15/zb/2_3/0.06"
    assert not final.exists() and cell_status(tmp_path, CELL) is None
    st.commit(_record(DONE))
    assert (final / "stage0.jsonl").exists()
    assert json.loads((final / "cell.json").read_text())["status"] == "done"
    assert is_done(tmp_path, CELL)
    assert not st.path.exists()
    assert [p.name for p in final.parent.iterdir()] == ["0.06"]  # no staging leftovers


def test_rerun_replaces_the_old_attempt_completely(tmp_path: Path) -> None:
    first = Staging(tmp_path, CELL)
    (first.path / "stage9.jsonl").write_text("old\n")
    first.commit(_record(FAILED))
    assert not is_done(tmp_path, CELL)
    second = Staging(tmp_path, CELL)
    (second.path / "stage0.jsonl").write_text("new\n")
    second.commit(_record(DONE))
    final = cell_dir(tmp_path, CELL)
    assert sorted(p.name for p in final.iterdir()) == ["cell.json", "stage0.jsonl"]
    assert [p.name for p in final.parent.iterdir()] == ["0.06"]


def test_discarded_and_abandoned_staging_leave_nothing(tmp_path: Path) -> None:
    st = Staging(tmp_path, CELL)
    st.discard()
    assert cell_status(tmp_path, CELL) is None
    Staging(tmp_path, CELL)  # as if pmctl was killed mid-cell
    assert sweep_staging(tmp_path) == 1
    assert list(cell_dir(tmp_path, CELL).parent.iterdir()) == []


def test_summary_counts_done_failed_missing(tmp_path: Path) -> None:
    other = Cell("fig15", "pipemorph", ((2, 3),), 0.06)
    missing = Cell("fig15", "1f1b", ((2, 3),), 0.06)
    Staging(tmp_path, CELL).commit(_record(DONE))
    Staging(tmp_path, other).commit(_record(FAILED))
    counts = summarize_cells(tmp_path, [CELL, other, missing])
    assert counts == {"done": 1, "failed": 1, "interrupted": 0, "missing": 1}
