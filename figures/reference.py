"""Reads the artifact's own results tree (``figXX/<METHOD>/<links>/<delay>/``) the artifact's way.

A cell folder holds per-rank logs: ``GPU{r}_rank{r}.log`` (inline/ZB path), ``..._CPU.log``
(the delegate path, written from the fault on, iteration numbers restarting at 1) and
``..._1F1B.log``. Op lines look like ``[RANK3] F @ 931.4 (ms) to 1466.8 (ms), ...`` inside
``[RANKr] Iteration k`` blocks; ``8W @ ...`` is the end-of-iteration flush of 8 deferred W's.

An op ends at its start + ``cudaEventElapsed`` (the logged "to" time is later when the stream
stalled behind a slow send; the artifact's numbers use the elapsed time). Iteration time =
the iteration's span over all ranks on their shared clock: the ZB/CPU logs
already count from the agreed iteration start (0), so the span is the latest end; the 1F1B
logs carry wall-clock epoch milliseconds, so the span runs from the earliest start. A cell's
value is the mean of the last 5 *complete* iterations (a run killed mid-iteration leaves a
partial last block, which is dropped). ``fig20/times.txt`` stores fig20's numbers as a Python
dict literal ``{'ZB': [seconds], ...}``. Pure parsing, no plotting, no torch.
"""

from __future__ import annotations

import ast
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from engine.methods import UnknownMethodError, resolve_method
from engine.oplog import LAST_ITERATIONS
from injector.links import LinkError, parse_delay, same_delay

_ITER_RE = re.compile(r"^\[RANK(\d+)\] Iteration (\d+)")
_NUM = r"([-\d.eE+]+)"
_OP_RE = re.compile(
    # The artifact's logs sometimes pad a number with a second space ("F @  0.5").
    rf"^\[RANK(\d+)\] (\d*)(F|B|W|BW) @\s+{_NUM} \(ms\) to\s+{_NUM} \(ms\)"
    rf"(?:, cudaEventElapsed = {_NUM} \(ms\))?"
)
_LOG_RE = re.compile(r"^GPU\d+_rank(\d+)(_CPU|_1F1B)?\.log$")
# Timestamps above this are wall-clock epoch milliseconds, not a per-iteration clock.
_EPOCH_MS = 1e9


class ArtifactTreeError(ValueError):
    """The artifact tree is missing or unreadable (kept a ValueError for the CLI's mapping)."""


@dataclass(frozen=True)
class ArtifactOp:
    """One op line: kind, how many ops it stands for (``8W`` = 8), start, logged end and the
    GPU-measured duration (ms)."""

    kind: str
    count: int
    start_ms: float
    logged_end_ms: float
    elapsed_ms: float | None

    @property
    def end_ms(self) -> float:
        """The artifact's end: start + the CUDA-event duration. The logged "to" time is when the
        host saw it finish, which on a stalled stream (a slow send queued ahead) is later."""
        return self.start_ms + self.elapsed_ms if self.elapsed_ms is not None else self.logged_end_ms


@dataclass(frozen=True)
class ReferenceCell:
    """The artifact's iteration time of one cell (seconds), the artifact's way."""

    figure: str  # the artifact folder name, e.g. "fig14_16"
    method: str  # our method id
    links: str  # "2_3", "0_1,2_3", "none"
    delay_s: float
    iteration_time_s: float
    std_s: float
    iterations: int  # complete iterations found in the logs used
    source: str  # "logs" or "times.txt"

    def to_json(self) -> dict[str, object]:
        return {
            "figure": self.figure,
            "method": self.method,
            "links": self.links,
            "delay_s": self.delay_s,
            "iteration_time_s": round(self.iteration_time_s, 6),
            "std_s": round(self.std_s, 6),
            "iterations": self.iterations,
            "source": self.source,
        }


def parse_rank_log(text: str) -> dict[int, list[ArtifactOp]]:
    """Iteration number -> its op lines, for one rank's log text."""
    out: dict[int, list[ArtifactOp]] = {}
    current: int | None = None
    for line in text.splitlines():
        m = _ITER_RE.match(line)
        if m:
            current = int(m.group(2))
            out[current] = []
            continue
        m = _OP_RE.match(line)
        if m and current is not None:
            count = int(m.group(2)) if m.group(2) else 1
            elapsed = float(m.group(6)) if m.group(6) else None
            out[current].append(
                ArtifactOp(m.group(3), count, float(m.group(4)), float(m.group(5)), elapsed)
            )
    return out


def _complete(ops: list[ArtifactOp], microbatches: int) -> bool:
    """An iteration is complete on a rank when it ran every forward and every backward."""
    n_f = sum(op.count for op in ops if op.kind == "F")
    n_b = sum(op.count for op in ops if op.kind in ("B", "BW"))
    return n_f >= microbatches and n_b >= microbatches


def iteration_spans_ms(ranks: dict[int, dict[int, list[ArtifactOp]]]) -> dict[int, float]:
    """Per complete iteration, the span over all ranks on the shared clock (ms)."""
    if not ranks:
        return {}
    # Micro-batches per iteration = the most forwards any rank ran in any iteration.
    microbatches = max(
        (sum(op.count for op in ops if op.kind == "F") for its in ranks.values() for ops in its.values()),
        default=0,
    )
    common = set.intersection(*(set(its) for its in ranks.values()))
    spans: dict[int, float] = {}
    for it in sorted(common):
        per_rank = [ranks[r][it] for r in ranks]
        if microbatches == 0 or not all(_complete(ops, microbatches) for ops in per_rank):
            continue
        end = max(op.end_ms for ops in per_rank for op in ops)
        start = min(op.start_ms for ops in per_rank for op in ops)
        origin = start if start > _EPOCH_MS else 0.0
        spans[it] = end - origin
    return spans


def _select_logs(cell_dir: Path) -> dict[int, Path]:
    """The logs the artifact reads for this cell: the delegate (_CPU) logs when present
    (they hold the post-fault iterations), else the 1F1B logs, else the ZB-path logs."""
    by_suffix: dict[str, dict[int, Path]] = {}
    for f in cell_dir.iterdir():
        m = _LOG_RE.match(f.name)
        if m:
            by_suffix.setdefault(m.group(2) or "", {})[int(m.group(1))] = f
    for suffix in ("_CPU", "_1F1B", ""):
        if by_suffix.get(suffix):
            return by_suffix[suffix]
    return {}


def cell_time(cell_dir: Path, last: int = LAST_ITERATIONS) -> tuple[float, float, int] | None:
    """(mean, std, complete iterations) in seconds for one cell folder; None if no usable logs."""
    logs = _select_logs(cell_dir)
    if not logs:
        return None
    ranks = {r: parse_rank_log(p.read_text(encoding="utf-8", errors="replace")) for r, p in logs.items()}
    spans = iteration_spans_ms(ranks)
    if not spans:
        return None
    vals = [spans[i] / 1000.0 for i in sorted(spans)[-last:]]
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return statistics.fmean(vals), std, len(spans)


def _delay_value(name: str) -> float | None:
    """A delay folder's name (seconds: ``0.06``, ``inf``) as seconds; None for another folder."""
    try:
        return parse_delay(name, default_unit="s")
    except LinkError:
        return None


def _times_txt(path: Path, figure: str) -> list[ReferenceCell]:
    """``fig20/times.txt``: a dict literal of method -> [seconds] for the no-fault runs."""
    try:
        data = ast.literal_eval(path.read_text(encoding="utf-8"))
    except (ValueError, SyntaxError) as exc:
        raise ArtifactTreeError(f"{path}: not a dict literal of method -> [seconds] ({exc})") from exc
    cells = []
    for name, values in dict(data).items():
        try:
            method = resolve_method(str(name)).id
        except UnknownMethodError:
            continue
        vals = [float(v) for v in values]
        if not vals:
            continue
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        cells.append(
            ReferenceCell(figure, method, "none", 0.0, statistics.fmean(vals), std, len(vals), "times.txt")
        )
    return cells


def read_reference(root: Path) -> list[ReferenceCell]:
    """Every cell of an artifact results tree, in folder order (figure, method, links, delay)."""
    root = Path(root)
    if not root.is_dir():
        raise ArtifactTreeError(
            f"{root}: no such artifact results folder (expected figXX/<METHOD>/<links>/<delay>/)"
        )
    cells: list[ReferenceCell] = []
    for fig_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("fig")):
        times = fig_dir / "times.txt"
        if times.is_file():
            cells.extend(_times_txt(times, fig_dir.name))
        for method_dir in sorted(p for p in fig_dir.iterdir() if p.is_dir()):
            try:
                method = resolve_method(method_dir.name).id
            except UnknownMethodError:
                continue
            for links_dir in sorted(p for p in method_dir.iterdir() if p.is_dir()):
                for delay_dir in sorted(p for p in links_dir.iterdir() if p.is_dir()):
                    delay = _delay_value(delay_dir.name)
                    result = cell_time(delay_dir) if delay is not None else None
                    if result is None:
                        continue
                    mean, std, n = result
                    cells.append(
                        ReferenceCell(fig_dir.name, method, links_dir.name, delay, mean, std, n, "logs")
                    )
    if not cells:
        raise ArtifactTreeError(
            f"{root}: no artifact cells found (expected figXX/<METHOD>/<links>/<delay>/GPU*_rank*.log)"
        )
    return cells


def _figure_numbers(name: str) -> set[str]:
    """``fig14_16`` -> {"14", "16"}."""
    return set(re.findall(r"\d+", name))


def lookup(
    cells: list[ReferenceCell], method: str, links: str, delay_s: float, prefer: str = ""
) -> ReferenceCell | None:
    """The artifact cell for (method, links, delay); delay 0 means the no-fault run whatever
    the links. Several folders may hold it (fig15 and fig14_16 both ran 2_3 at 60 ms): the
    one whose name shares a number with ``prefer`` (e.g. "fig16" -> "fig14_16") wins."""
    matches = [
        c
        for c in cells
        if c.method == method
        and (
            (delay_s == 0 and c.delay_s == 0)
            or (c.links == links and same_delay(c.delay_s, delay_s))
        )
    ]
    wanted = _figure_numbers(prefer)
    matches.sort(key=lambda c: not (wanted & _figure_numbers(c.figure)))
    return matches[0] if matches else None


def baseline(cells: list[ReferenceCell]) -> ReferenceCell | None:
    """The artifact's own ZB no-fault cell, the denominator of its ratios."""
    return lookup(cells, "zb", "none", 0.0)



def load_reference(root: Path | None) -> list[ReferenceCell] | None:
    """``read_reference(root)``, or None when no artifact folder was given."""
    return read_reference(root) if root is not None else None
