"""The artifact reader: small logs written in the artifact's format, and the real tree."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from figures.reference import ArtifactTreeError, lookup, parse_rank_log, read_reference

EPOCH_MS = 1_751_965_850_000.0
REAL_TREE = Path(__file__).resolve().parents[3] / "shared" / "ae-reference"


def _line(rank: int, kind: str, start: float, end: float, elapsed: float) -> str:
    return f"[RANK{rank}] {kind} @ {start} (ms) to {end} (ms), cudaEventElapsed = {elapsed} (ms)"


def _iteration(rank: int, k: int, base: float) -> list[str]:
    """Two ranks, two micro-batches. Rank 1's flush ends (start + elapsed) at 100 + 10k ms;
    its logged end is 50 ms later (a stalled stream): the artifact uses the elapsed time."""
    t_end = 100.0 + 10 * k
    if rank == 0:
        ops = [("F", 0, 10, 10), ("F", 10, 20, 10), ("B", 40, 50, 10), ("B", 60, 70, 10), ("2W", 70, 100, 20)]
    else:
        ops = [("F", 10, 20, 10), ("F", 20, 30, 10), ("B", 30, 40, 10), ("B", 50, 60, 10),
               ("2W", 60, t_end + 50, t_end - 60)]
    lines = [_line(rank, kind, base + s, base + e, el) for kind, s, e, el in ops]
    return [f"[RANK{rank}] Iteration {k}", *lines]


def _write_cell(path: Path, suffix: str = "", epoch: bool = False, iterations: int = 7) -> None:
    """Complete iterations 1..iterations, then a partial one (the run was killed mid-way)."""
    path.mkdir(parents=True, exist_ok=True)
    for rank in (0, 1):
        lines: list[str] = []
        for k in range(1, iterations + 1):
            lines += _iteration(rank, k, EPOCH_MS + 1000 * k if epoch else 0.0)
        lines += [f"[RANK{rank}] Iteration {iterations + 1}", _line(rank, "F", 0, 10, 10)]
        (path / f"GPU{rank}_rank{rank}{suffix}.log").write_text("\n".join(lines) + "\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "ae"
    _write_cell(root / "fig15" / "ZB" / "2_3" / "0.06")
    _write_cell(root / "fig15" / "1F1B" / "2_3" / "0.06", "_1F1B", epoch=True)
    cpu = root / "fig15" / "ZB-CPU-ReSchedule" / "2_3" / "0.06"
    _write_cell(cpu, "_CPU")
    for rank in (0, 1):  # the pre-fault ZB-path logs beside them must not be read
        (cpu / f"GPU{rank}_rank{rank}.log").write_text("\n".join(_iteration(rank, 90, 0.0)) + "\n")
    (root / "fig15" / "UNKNOWN" / "2_3" / "0.06").mkdir(parents=True)
    (root / "fig20").mkdir()
    (root / "fig20" / "times.txt").write_text("{'ZB': [1.5], 'ZB-CPU-ReSchedule': [1.4, 1.6]}\n")
    return root


def test_parse_counts_flushes_and_uses_elapsed() -> None:
    its = parse_rank_log("\n".join(_iteration(1, 3, 0.0)))
    flush = its[3][-1]
    assert flush.kind == "W" and flush.count == 2
    assert flush.logged_end_ms == 180 and flush.end_ms == 130


def test_parse_takes_a_number_padded_with_two_spaces() -> None:
    # As in the artifact's fig14_16/ZB-CPU/2_3/0.06/GPU0_rank0_CPU.log.
    text = "[RANK0] Iteration 4\n[RANK0] F @  0.5 (ms) to 9.5 (ms), cudaEventElapsed = 8.0 (ms)\n"
    (op,) = parse_rank_log(text)[4]
    assert (op.kind, op.start_ms, op.end_ms) == ("F", 0.5, 8.5)


def test_synthetic_tree_known_answers(tree: Path) -> None:
    cells = read_reference(tree)
    by = {(c.figure, c.method): c for c in cells}
    # Complete iterations 1..7; last 5 = 3..7 end at 130..170 ms: mean 150 ms.
    for method in ("zb", "1f1b", "pipemorph"):
        c = by[("fig15", method)]
        assert c.iteration_time_s == pytest.approx(0.150), method
        assert c.std_s == pytest.approx(0.0158114, rel=1e-4)
        assert c.iterations == 7 and c.links == "2_3" and c.delay_s == 0.06
    assert by[("fig20", "zb")].iteration_time_s == pytest.approx(1.5)
    assert by[("fig20", "pipemorph")].iteration_time_s == pytest.approx(1.5)
    assert by[("fig20", "pipemorph")].source == "times.txt"
    assert lookup(cells, "pipemorph", "none", 0.0).figure == "fig20"


def test_missing_tree_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactTreeError, match="no such artifact results folder"):
        read_reference(tmp_path / "nope")
    with pytest.raises(ArtifactTreeError, match="no artifact cells"):
        read_reference(tmp_path)


# PAPER.md section 5's table (seconds): (folder, method, links, delay) -> value.
PAPER = {
    ("fig20", "1f1b", "none", 0.0): 1.550,
    ("fig20", "zb", "none", 0.0): 1.352,
    ("fig20", "all-cpu", "none", 0.0): 1.343,
    ("fig14_16", "1f1b", "2_3", 0.06): 3.139,
    ("fig14_16", "zb", "2_3", 0.06): 2.408,
    ("fig14_16", "pipemorph-cpu", "2_3", 0.06): 1.612,
    ("fig14_16", "pipemorph", "2_3", 0.06): 1.454,
    ("fig14_16", "1f1b", "2_3", 0.12): 4.596,
    ("fig14_16", "zb", "2_3", 0.12): 3.660,
    ("fig14_16", "pipemorph-cpu", "2_3", 0.12): 2.104,
    ("fig14_16", "pipemorph", "2_3", 0.12): 1.572,
    ("fig14_16", "1f1b", "0_1", 0.06): 2.391,
    ("fig14_16", "zb", "0_1", 0.06): 2.444,
    ("fig14_16", "pipemorph-cpu", "0_1", 0.06): 1.472,
    ("fig14_16", "pipemorph", "0_1", 0.06): 1.477,
    ("fig14_16", "1f1b", "0_1", 0.12): 3.256,
    ("fig14_16", "zb", "0_1", 0.12): 3.769,
    ("fig14_16", "pipemorph-cpu", "0_1", 0.12): 1.853,
    ("fig14_16", "pipemorph", "0_1", 0.12): 1.537,
    ("fig17", "1f1b", "0_1,2_3", 0.06): 3.260,
    ("fig17", "zb", "0_1,2_3", 0.06): 2.548,
    ("fig17", "pipemorph-cpu", "0_1,2_3", 0.06): 1.675,
    ("fig17", "pipemorph", "0_1,2_3", 0.06): 1.533,
}


@pytest.mark.skipif(not REAL_TREE.is_dir(), reason=f"no artifact tree at {REAL_TREE}")
def test_real_tree_reproduces_paper_table() -> None:
    cells = {(c.figure, c.method, c.links, c.delay_s): c for c in read_reference(REAL_TREE)}
    for key, expected in PAPER.items():
        assert key in cells, key
        got = cells[key].iteration_time_s
        assert math.isclose(got, expected, rel_tol=0.01), (key, got, expected)
    fig15 = [c for c in cells.values() if c.figure == "fig15"]
    assert len(fig15) == 4 * 6
