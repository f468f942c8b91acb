"""The results store: atomic cells, done = skipped, another spec's result is stale, reruns
replace, leftovers swept."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from figures.cells import Cell, cell_folder
from figures.store import (
    DONE,
    FAILED,
    MISSING,
    STALE,
    CellRecord,
    Staging,
    cell_status,
    is_done,
    summarize_cells,
    sweep_staging,
)

CELL = Cell("fig15", "zb", ((2, 3),), 0.06)


def _record(status: str, cell: Cell = CELL) -> CellRecord:
    return CellRecord(spec=cell.to_json(), spec_hash=cell.spec_hash, status=status, run_id="r1", started="t0", ended="t1")


def test_cell_is_invisible_until_committed(tmp_path: Path) -> None:
    st = Staging(tmp_path, CELL)
    (st.path / "stage0.jsonl").write_text("{}\n")
    final = cell_folder(tmp_path, CELL)
    assert final == tmp_path / "fig15/zb/2_3/0.06"
    assert not final.exists() and cell_status(tmp_path, CELL) == MISSING
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
    final = cell_folder(tmp_path, CELL)
    assert sorted(p.name for p in final.iterdir()) == ["cell.json", "stage0.jsonl"]
    assert [p.name for p in final.parent.iterdir()] == ["0.06"]


def test_discarded_and_abandoned_staging_leave_nothing(tmp_path: Path) -> None:
    st = Staging(tmp_path, CELL)
    st.discard()
    assert cell_status(tmp_path, CELL) == MISSING
    Staging(tmp_path, CELL)  # as if pmctl was killed mid-cell
    assert sweep_staging(tmp_path) == 1
    assert list(cell_folder(tmp_path, CELL).parent.iterdir()) == []


def test_summary_counts_done_failed_missing(tmp_path: Path) -> None:
    other = Cell("fig15", "pipemorph", ((2, 3),), 0.06)
    missing = Cell("fig15", "1f1b", ((2, 3),), 0.06)
    Staging(tmp_path, CELL).commit(_record(DONE))
    Staging(tmp_path, other).commit(_record(FAILED, other))
    counts = summarize_cells(tmp_path, [CELL, other, missing])
    assert counts == {"done": 1, "failed": 1, "interrupted": 0, "stale": 0, "missing": 1}


def test_a_result_of_another_spec_is_stale_not_done(tmp_path: Path) -> None:
    # A --quick result in the folder the full cell also uses.
    quick = replace(CELL, iterations=10, fault_at=4)
    Staging(tmp_path, quick).commit(_record(DONE, quick))
    assert is_done(tmp_path, quick)
    assert cell_status(tmp_path, CELL) == STALE and not is_done(tmp_path, CELL)
    counts = summarize_cells(tmp_path, [CELL])
    assert counts == {"done": 0, "failed": 0, "interrupted": 0, "stale": 1, "missing": 0}


def _committed(root: Path, status: str, run_id: str, cell: Cell = CELL) -> Path:
    st = Staging(root, cell)
    (st.path / "stage0.jsonl").write_text(f"{run_id}\n")
    return st.commit(replace(_record(status, cell), run_id=run_id))


def test_a_failed_rerun_leaves_the_finished_result_in_place(tmp_path: Path) -> None:
    final = _committed(tmp_path, DONE, "good")
    attempt = _committed(tmp_path, FAILED, "bad")
    assert attempt == final / "attempts" / "bad"
    assert json.loads((final / "cell.json").read_text())["run_id"] == "good"
    assert (final / "stage0.jsonl").read_text() == "good\n"
    assert json.loads((attempt / "cell.json").read_text())["status"] == FAILED
    assert is_done(tmp_path, CELL)


def test_a_replaced_finished_result_moves_to_previous(tmp_path: Path) -> None:
    _committed(tmp_path, DONE, "first")
    final = _committed(tmp_path, DONE, "second")
    assert json.loads((final / "cell.json").read_text())["run_id"] == "second"
    assert (final / "previous" / "first" / "stage0.jsonl").read_text() == "first\n"
    assert [p.name for p in final.parent.iterdir()] == ["0.06"]


def test_sweep_puts_back_a_finished_cell_caught_mid_commit(tmp_path: Path) -> None:
    final = _committed(tmp_path, DONE, "kept")
    aside = final.parent / ".0.06.old-deadbeef"
    final.rename(aside)  # killed between moving the old cell aside and the new one in
    Staging(tmp_path, CELL)
    assert sweep_staging(tmp_path) == 2
    assert json.loads((final / "cell.json").read_text())["run_id"] == "kept"
    assert [p.name for p in final.parent.iterdir()] == ["0.06"]
