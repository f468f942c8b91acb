"""The one rule for a cell that ended as it should by failing: a method without delegates (ZB,
1F1B) under an injected crash (``;;inf`` or a link at ``inf``) stops with the engine's clean
``LinkDownError`` (PAPER.md section 4). Such a cell is finished: it is recorded ``done`` with
``stopped`` = ``"iteration K: <error>"`` (``figures.store`` reads it back as ``stopped``),
its op logs hold the iterations before the crash, and ``pmctl run`` does not re-run it.

Evidence, from the collected cell folder only: the first stage failure the stages' stderr
reports is a ``LinkDownError`` (raised only for an injected ``inf``), and the method never
offloads. Anything else (another error first, a method with delegates) stays failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.methods import METHODS, UnknownMethodError, resolve_method
from engine.oplog import iteration_times_ms, read_records

_FAILED = "engine: stage "  # engine.train's one line per failed stage: "engine: stage R failed: ..."
_LINK_DOWN = "LinkDownError"


def first_stage_failure(folder: Path) -> str:
    """``stage R: <error>`` of the first ``engine: stage R failed:`` line in the cell's
    collected ``*.stderr`` streams ('' when none says so)."""
    for path in sorted(Path(folder).glob("*.stderr")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(_FAILED) and " failed: " in line:
                stage, error = line[len(_FAILED):].split(" failed: ", 1)
                return f"stage {stage}: {error.strip()}"
    return ""


def expected_stop(method: str, folder: Path) -> str:
    """``iteration K: stage R: LinkDownError: ...`` when a failed cell of ``method`` in
    ``folder`` is the expected stop at a crash (K = the first iteration not completed), else ''."""
    try:
        offload = resolve_method(method).offload
    except UnknownMethodError:
        return ""
    if offload != METHODS["zb"].offload:  # a method with delegates must survive a crash
        return ""
    failure = first_stage_failure(folder)
    if _LINK_DOWN not in failure:
        return ""
    done = iteration_times_ms(read_records(folder))
    return f"iteration {max(done, default=-1) + 1}: {failure}"


def mark_expected_stop(record: Any, folder: Path) -> None:
    """Turns a failed ``CellRecord`` into a finished, ``stopped`` one when ``expected_stop``
    says so (its reason then says where and why); leaves it alone otherwise."""
    stop = expected_stop(str(record.spec.get("method", "")), folder)
    if stop:
        record.status, record.stopped, record.reason = "done", stop, f"stopped at {stop}"
