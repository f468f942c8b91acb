"""The one rule for a cell that ended as it should by failing: a method without delegates (ZB,
1F1B) under an injected crash (``;;inf`` or a link at ``inf``) stops with the engine's clean
``LinkDownError`` (PAPER.md section 4). Such a cell is finished: it is recorded ``done`` with
``stopped`` = ``"iteration K: <error>"`` (``figures.store`` reads it back as ``stopped``),
its op logs hold the iterations before the crash, and ``pmctl run`` does not re-run it.

Evidence, from the collected cell folder only: a stage's failure line in the stages' stderr is
a ``LinkDownError`` (raised only for an injected ``inf``), and the method never offloads.
Which stage failed first is not known: the lines carry no time, and under the direct and
torchrun launchers each stage or host has its own stream, so the other stages' gloo errors
that follow the crash may come first by name. Anything else (no ``LinkDownError``, a method
with delegates) stays failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.methods import METHODS, UnknownMethodError, resolve_method
from engine.oplog import iteration_times_ms, read_records

_FAILED = "engine: stage "  # engine.train's one line per failed stage: "engine: stage R failed: ..."
_LINK_DOWN = "LinkDownError"


def stage_failures(folder: Path) -> list[tuple[str, str]]:
    """(stage, error) of every ``engine: stage R failed: <error>`` line in the cell's
    collected ``*.stderr`` streams, by stream name then line (not in time order)."""
    found = []
    for path in sorted(Path(folder).glob("*.stderr")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(_FAILED) and " failed: " in line:
                stage, error = line[len(_FAILED):].split(" failed: ", 1)
                found.append((stage, error.strip()))
    return found


def expected_stop(method: str, folder: Path) -> str:
    """``iteration K: stage R: LinkDownError: ...`` when a failed cell of ``method`` in
    ``folder`` is the expected stop at a crash (K = the first iteration not completed), else ''."""
    try:
        offload = resolve_method(method).offload
    except UnknownMethodError:
        return ""
    if offload != METHODS["zb"].offload:  # a method with delegates must survive a crash
        return ""
    down = [(stage, error) for stage, error in stage_failures(folder) if error.startswith(f"{_LINK_DOWN}:")]
    if not down:
        return ""
    stage, error = down[0]
    done = iteration_times_ms(read_records(folder))
    return f"iteration {max(done, default=-1) + 1}: stage {stage}: {error}"


def mark_expected_stop(record: Any, folder: Path) -> None:
    """Turns a failed ``CellRecord`` into a finished, ``stopped`` one when ``expected_stop``
    says so (its reason then says where and why); leaves it alone otherwise."""
    stop = expected_stop(str(record.spec.get("method", "")), folder)
    if stop:
        record.status, record.stopped, record.reason = "done", stop, f"stopped at {stop}"
