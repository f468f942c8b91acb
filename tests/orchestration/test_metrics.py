"""``pmctl run --tensorboard DIR``: each finished cell's per-iteration scalars as a TensorBoard
run, read back with TensorBoard's own reader."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from engine.oplog import iteration_times_ms, read_typed
from figures.cells import base_spec, cell_folder
from figures.measured import bubble_rates
from figures.registry import get_figure
from pmctl.errors import UserError
from pmctl.metrics import TAGS, cell_scalars, require_tensorboard, run_name, write_cell_scalars
from tests.figures.fig_synthetic import cell_times_ms, write_cell
from tests.orchestration.support import pmctl_env, run_pmctl

HEALTHY = ["F0", "F1", "F2", "B0", "B1", "B2", "W0"]  # 7 compute ops per stage, as write_oplogs logs
REPLANNED = ["F0", "F1", "B0", "F2", "B1", "B2", "W0"]


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a run as (step, value) pairs, read by TensorBoard's accumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _runs(logdir: Path) -> list[Path]:
    """The TensorBoard runs under ``logdir``: the folders holding event files."""
    return sorted({f.parent.relative_to(logdir) for f in logdir.rglob("events.out.tfevents.*")})


def _synthetic_cell(root: Path, replan_at: int = 3):
    """A done fig15 cell with synthetic op logs, whose headers carry a loss (last stage), a
    schedule that changes at ``replan_at`` and the fault record's ``planned_at`` there."""
    pytest.importorskip("tensorboard")
    cell = next(c for c in get_figure("fig15").cells(base_spec(), quick=True) if c.method == "pipemorph" and c.delay_s)
    folder = write_cell(root, cell, cell_times_ms(cell.method, cell.delay_s))
    for log in sorted(folder.glob("stage*.jsonl")):
        out = []
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            if rec["kind"] == "iteration":
                it = rec["iter"]
                ops = REPLANNED if it >= replan_at else HEALTHY
                rec["schedule"] = [list(ops) for _ in range(4)]
                rec["fault"] = {"generator": "pipemorph", "planned_at": replan_at} if it >= replan_at else {}
                rec["loss"] = 10.0 - 0.5 * it if rec["stage"] == 3 else None
            out.append(json.dumps(rec))
        log.write_text("\n".join(out) + "\n")
    return cell, folder


def test_synthetic_cell_scalars_round_trip(tmp_path: Path) -> None:
    cell, folder = _synthetic_cell(tmp_path / "results")
    logdir = tmp_path / "tb"
    run_dir = write_cell_scalars(logdir, tmp_path / "results", cell, folder)
    assert run_dir == logdir / "fig15/pipemorph/2_3/0.06"
    assert _runs(logdir) == [Path("fig15/pipemorph/2_3/0.06")]
    got = _scalars(run_dir)
    assert set(got) == set(TAGS)
    n = len(cell_times_ms(cell.method, cell.delay_s))
    for tag in TAGS:
        assert [s for s, _ in got[tag]] == list(range(n)), tag
    ops, heads = read_typed(folder)
    times = iteration_times_ms([*heads, *ops])
    bubbles = bubble_rates([*heads, *ops], times)
    assert [v for _, v in got["iteration_time_ms"]] == pytest.approx(cell_times_ms(cell.method, cell.delay_s))
    assert [v for _, v in got["bubble_rate"]] == pytest.approx([bubbles[i] for i in range(n)], rel=1e-6)
    assert [v for _, v in got["loss"]] == pytest.approx([10.0 - 0.5 * i for i in range(n)])
    assert [v for _, v in got["replan"]] == [1.0 if i == 3 else 0.0 for i in range(n)]
    assert [v for _, v in got["warmup_stage0"]] == [2.0 if i >= 3 else 3.0 for i in range(n)]

    # a rerun replaces the run's event file: still one value per iteration
    write_cell_scalars(logdir, tmp_path / "results", cell, folder)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert len(_scalars(run_dir)["loss"]) == n


def test_replan_once_and_cells_without_schedules(tmp_path: Path) -> None:
    cell, folder = _synthetic_cell(tmp_path / "results", replan_at=2)
    scalars = cell_scalars(folder)
    assert [it for it, v in scalars["replan"].items() if v] == [2]  # planned_at == 2; later ones keep that plan
    # synthetic logs without schedules: no warm-up numbers, no re-plans
    bare = write_cell(tmp_path / "bare", cell, [1500.0, 1510.0])
    plain = cell_scalars(bare)
    assert plain["warmup_stage0"] == {} and plain["loss"] == {}
    assert plain["replan"] == {0: 0.0, 1: 0.0} and set(plain["iteration_time_ms"]) == {0, 1}


def test_run_name_is_the_folder_below_the_results_root(tmp_path: Path) -> None:
    cell = get_figure("fig15").cells(base_spec(), quick=True)[0]
    root = tmp_path / "results"
    assert run_name(root, root / "tiny-it4-at1/fig15/zb/2_3/0.06", cell) == Path("tiny-it4-at1/fig15/zb/2_3/0.06")
    assert run_name(tmp_path / "elsewhere", root / "fig15/x", cell) == Path(cell.figure, cell_folder(root, cell).relative_to(root / cell.figure))


def test_missing_package_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "tensorboard" or m.startswith("tensorboard.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    with pytest.raises(UserError, match="tensorboard package is not installed"):
        require_tensorboard()


def test_missing_package_cli_line_exit_2_before_any_cell(tmp_path: Path, local_inventory: Path) -> None:
    hide = tmp_path / "hide" / "tensorboard"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError(\"No module named 'tensorboard'\")\n")
    env = pmctl_env(tmp_path, PYTHONPATH=os.pathsep.join(filter(None, [str(hide.parent), os.environ.get("PYTHONPATH")])))
    r = run_pmctl(["run", "fig15", "--methods", "zb", "--delays", "60", "--tensorboard", "tb",
                   "--inventory", str(local_inventory)], tmp_path, env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorboard package is not installed" in lines[0], r.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists() and not (tmp_path / "tb").exists()


@pytest.mark.slow
def test_real_cell_writes_its_tensorboard_run(tmp_path: Path, local_inventory: Path) -> None:
    pytest.importorskip("tensorboard")
    # The real engine (tiny preset, PipeMorph, 60 ms on link 2-3 from iteration 1), as in test_cli.
    args = ["run", "fig15", "--quick", "--methods", "pipemorph", "--delays", "60", "--iters", "4",
            "--fault-at", "1", "--preset", "tiny", "--inventory", str(local_inventory), "--tensorboard", "tb"]
    r = run_pmctl(args, tmp_path, pmctl_env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    rel = Path("tiny-it4-at1/fig15/pipemorph/2_3/0.06")
    assert _runs(tmp_path / "tb") == [rel]  # one run per cell, named by its folder below results/
    got = _scalars(tmp_path / "tb" / rel)
    for tag in ("loss", "iteration_time_ms", "bubble_rate", "replan"):
        assert [s for s, _ in got[tag]] == [0, 1, 2, 3], tag
    _, heads = read_typed(tmp_path / "results" / rel)
    losses = {h.iteration: h.loss for h in heads if h.loss is not None}
    assert [v for _, v in got["loss"]] == pytest.approx([losses[i] for i in range(4)], rel=1e-6)
    assert all(v > 0 for _, v in got["iteration_time_ms"])
    assert all(0 <= v < 1 for _, v in got["bubble_rate"])
    # PipeMorph re-plans once: the iteration after the fault's first (its plan_basis is the injected fault)
    assert [v for _, v in got["replan"]] == [0, 0, 1, 0]


def test_unwritable_log_dir_is_one_line_before_any_cell(tmp_path: Path, local_inventory: Path) -> None:
    (tmp_path / "tb").write_text("a file, not a folder")
    r = run_pmctl(["run", "fig15", "--methods", "zb", "--delays", "60", "--tensorboard", "tb",
                   "--inventory", str(local_inventory)], tmp_path, pmctl_env(tmp_path), timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tensorboard tb: cannot write there" in lines[0], r.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()
