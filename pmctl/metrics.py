"""``pmctl run --tensorboard DIR``: a finished cell's per-iteration numbers as TensorBoard
scalars, read on the controller from the cell's op logs (no engine change, no torch, no
TensorFlow: the ``tensorboard`` package's own event-file writer).

One TensorBoard run per cell: ``DIR/<the cell folder relative to the results root>``, e.g.
``DIR/fig15/pipemorph/2_3/0.06`` (a variant spec: ``DIR/tiny-it4-at1/fig15/...``), so
``tensorboard --logdir DIR`` shows every cell of a figure or experiment side by side. The step
of every scalar is the iteration:

- ``loss``: the last stage's mean loss (``IterationRecord.loss``)
- ``iteration_time_ms``: the iteration time (max over stages of the last op end)
- ``bubble_rate``: 1 - busy compute time of all stages / (stages x iteration time)
- ``replan``: 1 where the iteration runs another schedule than the previous one (or its
  fault record says it was planned then), else 0
- ``warmup_stage0``: forwards stage 0 runs before its first backward in the schedule in force
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from engine.oplog import IterationRecord, iteration_times_ms, read_typed
from figures.cells import Cell, cell_folder
from figures.measured import bubble_rates
from figures.store import read_cell_json
from pmctl.errors import UserError

TAGS = ("loss", "iteration_time_ms", "bubble_rate", "replan", "warmup_stage0")
# Our event files end with this, so a rerun replaces exactly the files pmctl wrote.
_SUFFIX = ".pmctl"
_INSTALL_HINT = "pip install 'pmctl[metrics]' (or pip install tensorboard)"


def require_tensorboard(logdir: Path | None = None) -> None:
    """``UserError`` (one line, exit 2), before any cell runs, unless the ``tensorboard``
    package can write events (and ``logdir``, when given, is a folder this process can write
    to)."""
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: F401
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the tensorboard package is not installed ({exc})", "--tensorboard", _INSTALL_HINT) from exc
    if logdir is None:
        return
    try:
        Path(logdir).mkdir(parents=True, exist_ok=True)
        probe = Path(logdir) / f".pmctl-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write there ({exc.strerror or exc})", f"--tensorboard {logdir}",
                        "pass a folder you can write to") from exc


def run_name(results_root: Path, folder: Path, cell: Cell | None = None) -> Path:
    """The TensorBoard run of a cell: its folder relative to the results root (without a
    root that holds it: ``<figure>/<method>/<links>/<delay>`` from the cell)."""
    try:
        return Path(folder).resolve().relative_to(Path(results_root).resolve())
    except ValueError:
        if cell is None:
            return Path(Path(folder).name)
        return cell_folder(Path(), cell)


def _schedules(heads: list[IterationRecord]) -> dict[int, IterationRecord]:
    """Per iteration, the header of its lowest stage (every stage's header holds the whole
    schedule and the same fault view)."""
    out: dict[int, IterationRecord] = {}
    for h in heads:
        if h.iteration not in out or h.stage < out[h.iteration].stage:
            out[h.iteration] = h
    return out


def _warmup(schedule: list[list[str]]) -> int | None:
    """Forwards at the head of stage 0's op list (None without a schedule)."""
    if not schedule or not schedule[0]:
        return None
    n = 0
    for op in schedule[0]:
        if not op.startswith("F"):
            break
        n += 1
    return n


def cell_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """Per tag (``TAGS``), per iteration, the value read from the cell's op logs; an
    iteration without the number (an incomplete one, no loss logged) is left out."""
    ops, heads = read_typed(Path(folder))
    records = [*heads, *ops]
    times = iteration_times_ms(records)
    out: dict[str, dict[int, float]] = {tag: {} for tag in TAGS}
    out["iteration_time_ms"] = {it: float(t) for it, t in sorted(times.items())}
    out["bubble_rate"] = {it: float(b) for it, b in sorted(bubble_rates(records, times).items())}
    for h in sorted(heads, key=lambda h: (h.iteration, -h.stage)):
        if h.loss is not None and h.iteration not in out["loss"]:
            out["loss"][h.iteration] = float(h.loss)  # the last stage's, where several logged one
    out["loss"] = dict(sorted(out["loss"].items()))
    firsts = _schedules(heads)
    previous: list[list[str]] | None = None
    for it in sorted(firsts):
        h = firsts[it]
        planned_at = (h.fault or {}).get("planned_at")
        changed = previous is not None and h.schedule != previous
        out["replan"][it] = 1.0 if changed or planned_at == it else 0.0
        warm = _warmup(h.schedule)
        if warm is not None:
            out["warmup_stage0"][it] = float(warm)
        previous = h.schedule
    return out


def _wall_times(folder: Path, times: dict[int, float]) -> dict[int, float]:
    """A wall-clock time per iteration for TensorBoard's time axes: the cell's end (its
    ``cell.json``, else now) minus the iteration times still to come."""
    end = time.time()
    ended = (read_cell_json(folder) or {}).get("ended")
    if isinstance(ended, str):
        try:
            end = dt.datetime.fromisoformat(ended).timestamp()
        except ValueError:
            pass
    out, t = {}, end - sum(times.values()) / 1000.0
    for it in sorted(times):
        t += times[it] / 1000.0
        out[it] = t
    return out


def write_scalars(run_dir: Path, scalars: dict[str, dict[int, float]], wall: dict[int, float] | None = None) -> Path:
    """Writes ``scalars`` (tag -> step -> value) as one event file in ``run_dir``, replacing
    the event files an earlier pmctl run wrote there; returns the file."""
    require_tensorboard()
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in run_dir.glob(f"events.out.tfevents.*{_SUFFIX}"):
        old.unlink()
    wall = wall or {}
    now = time.time()
    writer = EventFileWriter(str(run_dir), filename_suffix=_SUFFIX)
    try:
        for step in sorted({s for values in scalars.values() for s in values}):
            values = [
                summary_pb2.Summary.Value(tag=tag, simple_value=scalars[tag][step])
                for tag in scalars if step in scalars[tag]
            ]
            writer.add_event(event_pb2.Event(
                wall_time=wall.get(step, now), step=step, summary=summary_pb2.Summary(value=values),
            ))
    finally:
        writer.close()
    files = sorted(run_dir.glob(f"events.out.tfevents.*{_SUFFIX}"))
    return files[-1]


def write_cell_scalars(logdir: Path, results_root: Path, cell: Cell | None, folder: Path) -> Path:
    """The cell in ``folder`` as the TensorBoard run ``logdir/<folder relative to
    results_root>``: its per-iteration scalars (``TAGS``); returns the run's folder."""
    run_dir = Path(logdir) / run_name(results_root, folder, cell)
    scalars = cell_scalars(folder)
    try:
        write_scalars(run_dir, scalars, _wall_times(folder, scalars["iteration_time_ms"]))
    except OSError as exc:
        raise UserError(f"cannot write the TensorBoard run {run_dir}: {exc}", "--tensorboard",
                        "pass a folder you can write to") from exc
    return run_dir

