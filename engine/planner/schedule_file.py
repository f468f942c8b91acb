"""A schedule given as text (``pmctl simulate --schedule-file``): the IR's ``to_text`` form.

One line per stage, in stage order, its ops separated by spaces (``F0 F1 B0 W0 ...``; ``BW3``
for a full backward). Blank lines and ``#`` comments are skipped. The number of micro-batches
is the largest index + 1. Errors name the file and line: ``plan.txt:3: bad op 'X1': ...``.
"""

from __future__ import annotations

import re
from pathlib import Path

from engine.planner.errors import PlanningError
from engine.planner.ir import Op, Schedule, ScheduleParseError
from engine.planner.validate import validate

# The validator names the stage first ("stage 2: W3 comes before its B3", "schedule deadlocks:
# stage 1 op B0 ..."); the stage's line number is put in front of its message.
_STAGE_RE = re.compile(r"\bstage (\d+)\b")


def read_schedule_file(path: Path) -> Schedule:
    """Reads, parses and validates the schedule in ``path``; raises ``PlanningError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanningError(f"{path}: cannot read the schedule file ({reason})") from None
    return parse_schedule_text(text, str(path))


def parse_schedule_text(text: str, source: str) -> Schedule:
    """Parses and validates one schedule; ``source`` names it in errors (``source:line: ...``)."""
    lines: list[int] = []  # per stage, its line number
    stages: list[tuple[Op, ...]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0]
        if not body.strip():
            continue
        try:
            ops = tuple(Op.parse(token) for token in body.split())
        except ScheduleParseError as exc:
            raise PlanningError(f"{source}:{lineno}: {exc}") from None
        lines.append(lineno)
        stages.append(ops)
    if not stages:
        raise PlanningError(
            f"{source}: no stages in it (write one line of ops per stage, e.g. 'F0 B0 W0')"
        )
    num_microbatches = 1 + max((op.mb for ops in stages for op in ops), default=-1)
    schedule = Schedule(tuple(stages), max(num_microbatches, 1))
    try:
        validate(schedule)
    except PlanningError as exc:
        m = _STAGE_RE.search(str(exc))
        where = f"{source}:{lines[int(m.group(1))]}" if m and int(m.group(1)) < len(lines) else source
        raise PlanningError(f"{where}: {exc}") from None
    return schedule
