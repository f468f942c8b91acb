"""Iteration time, forward time, bubble rate and status of cells read from synthetic op logs."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import replace
from pathlib import Path

import pytest
from fig_synthetic import FORWARD_MS, write_cell, write_oplogs

from engine.oplog import iteration_times_ms, read_records
from figures.cells import Cell, base_spec, cell_folder
from figures.measured import (
    bubble_rates,
    choose_cells,
    forward_ms,
    read_cell,
)
from figures.store import CELL_JSON

CELL = Cell("fig15", "zb", ((2, 3),), 0.06, fault_at=4, iterations=10)


def test_iteration_time_is_mean_and_std_of_last_five(tmp_path: Path) -> None:
    times = [3000, 1500, 1500, 1500, 2000, 2100, 2200, 2300, 2400, 2500]
    write_cell(tmp_path, CELL, times)
    r = read_cell(tmp_path, CELL)
    assert r.status == "done" and r.ok
    assert r.iteration_time_s == pytest.approx(2.3)
    assert r.std_s == pytest.approx(statistics.stdev([2.1, 2.2, 2.3, 2.4, 2.5]))
    assert r.forward_ms == pytest.approx(FORWARD_MS)


def test_max_over_stages_on_the_shared_clock(tmp_path: Path) -> None:
    # Stage 1 ends last in iteration 0: the iteration's time is its end, not stage 0's.
    path = tmp_path / "cell"
    write_oplogs(path, [1000.0], stages=2)
    with (path / "stage1.jsonl").open("a") as fh:
        fh.write(json.dumps({"kind": "op", "iter": 0, "stage": 1, "op": "W", "mb": 1,
                             "start_ms": 1100, "end_ms": 1234.5, "path": "inline"}) + "\n")
    assert iteration_times_ms(read_records(path)) == {0: 1234.5}


def test_bubble_rate_known_answer(tmp_path: Path) -> None:
    records = [
        {"kind": "op", "iter": 0, "stage": 0, "op": "F", "mb": 0, "start_ms": 0, "end_ms": 50},
        {"kind": "op", "iter": 0, "stage": 1, "op": "B", "mb": 0, "start_ms": 50, "end_ms": 100},
        {"kind": "op", "iter": 0, "stage": 1, "op": "SEND_B", "mb": 0, "start_ms": 100, "end_ms": 100,
         "peer": 0, "delay_ms": 0},
    ]
    # 100 ms busy out of 2 stages x 100 ms: half the pipeline idles.
    assert bubble_rates(records, {0: 100.0}) == {0: pytest.approx(0.5)}
    assert forward_ms(records) == 50


@pytest.mark.parametrize("status", ["failed", "interrupted"])
def test_failed_cells_have_no_numbers(tmp_path: Path, status: str) -> None:
    write_cell(tmp_path, CELL, [1000.0] * 10, status=status)
    r = read_cell(tmp_path, CELL)
    assert r.status == status and not r.ok
    assert math.isnan(r.iteration_time_s)
    assert r.to_json()["iteration_time_s"] is None  # never 0


def test_missing_and_empty_cells(tmp_path: Path) -> None:
    assert read_cell(tmp_path, CELL).status == "missing"
    write_cell(tmp_path, CELL, None, status="done")  # done but no logs
    r = read_cell(tmp_path, CELL)
    assert r.status == "no-data" and not r.ok


def test_choose_cells_prefers_what_was_run(tmp_path: Path) -> None:
    base = base_spec()
    full = [base.with_fault("fig15", "zb", ((2, 3),), d) for d in (0.02, 0.06)]
    quick = [full[1]]  # the quick set is a subset of the full one
    assert choose_cells(full, quick, tmp_path) == full  # nothing run: the full set is missing
    write_cell(tmp_path, quick[0], [1000.0] * 8)
    assert choose_cells(full, quick, tmp_path) == quick  # a quick run: 20 ms is not "missing"
    write_cell(tmp_path, full[0], [1000.0] * 8)
    assert choose_cells(full, quick, tmp_path) == full


def test_a_result_of_another_spec_is_stale(tmp_path: Path) -> None:
    cell = base_spec().with_fault("fig15", "zb", ((2, 3),), 0.06)
    write_cell(tmp_path, replace(cell, stages=8), [1000.0] * 8)  # the same folder, another spec
    r = read_cell(tmp_path, cell)
    assert r.status == "stale" and "8 stages" in r.reason


def test_failed_cell_reason_comes_from_cell_json(tmp_path: Path) -> None:
    path = cell_folder(tmp_path, CELL)
    path.mkdir(parents=True)
    record = {"status": "failed", "reason": "stage 2 exited with code 1", "spec": CELL.to_json(),
              "spec_hash": CELL.spec_hash}
    (path / CELL_JSON).write_text(json.dumps(record), encoding="utf-8")
    r = read_cell(tmp_path, CELL)
    assert (r.status, r.reason) == ("failed", "stage 2 exited with code 1")
