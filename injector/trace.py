"""Fault traces: the artifact-compatible timeline of slow, down and crashed links.

A trace is text, one change per line (grammar: ``injector.trace_parse``)::

    7;2_3;0.06              from iteration 7, link 2-3 is 60 ms slow per message
    9;0_1,2_3;0.03,inf      from 9, link 0-1 30 ms slow and link 2-3 down
    11;;inf                 from 11, NIC crash: the GPU-direct path is down on every link
    12;;0                   from 12, healthy again

or, for dynamic stragglers, lines whose first field has a decimal point: seconds from the
start of the cell's ``fault_at`` iteration (healthy before it), each line a full snapshot of
all links (``0.0;2_3;0.04``, ``1.5;0_1,2_3;0.03,0.01``). A trace has one kind; iterations or
times strictly increase. Blank lines and ``#`` comments are allowed. Pure Python, no torch.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from injector.links import Link, delay_text, links_key, parse_link
from injector.trace_parse import Kind, TraceError, TraceLine, parse_line

__all__ = ["HEALTHY", "Fault", "Trace", "TraceError", "load_trace", "parse_trace", "trace_hash"]


@dataclass(frozen=True)
class Fault:
    """The link situation in force from ``since_iteration`` on.

    ``links`` (sorted) carry ``delays_s`` (one per link, seconds per message; ``inf`` = that
    link is down). ``nic_crash``: the GPU-direct path is down on every link, whatever
    ``links`` says. ``epoch`` numbers the changes of a timeline (0 = the implicit healthy
    start), so a reader can tell two faults with equal contents apart. ``at_s``: the trace
    time of a time-based line (None for an iteration line); its ``since_iteration`` is the
    iteration it first took effect, known only at run time (0 in the parsed trace).
    """

    links: tuple[Link, ...] = ()
    delays_s: tuple[float, ...] = ()
    nic_crash: bool = False
    since_iteration: int = 0
    epoch: int = 0
    at_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.delays_s, (tuple, list)):
            raise TypeError("Fault.delays_s is one delay per link (Fault.uniform for one delay)")
        if len(self.delays_s) != len(self.links):
            raise ValueError(f"{len(self.delays_s)} delays for {len(self.links)} links")
        pairs = sorted(zip((tuple(x) for x in self.links), (float(d) for d in self.delays_s)))
        if any(math.isnan(d) or d < 0 for _, d in pairs):
            raise ValueError(f"delays must be >= 0 seconds or inf, got {self.delays_s}")
        object.__setattr__(self, "links", tuple(p[0] for p in pairs))
        object.__setattr__(self, "delays_s", tuple(p[1] for p in pairs))

    @classmethod
    def uniform(
        cls, links: tuple[Link, ...], delay_s: float, since_iteration: int = 0, epoch: int = 0
    ) -> Fault:
        """Every one of ``links`` carries ``delay_s`` (``inf``: all of them down)."""
        return cls(tuple(links), (float(delay_s),) * len(links), False, since_iteration, epoch)

    @property
    def healthy(self) -> bool:
        """No link is slow or down."""
        return not self.nic_crash and not any(self.delays_s)

    @property
    def crashed(self) -> bool:
        """A NIC crash, or at least one link down: the inline path fails."""
        return self.nic_crash or any(math.isinf(d) for d in self.delays_s)

    @property
    def delay_s(self) -> float:
        """The largest finite delay (0 when none): one number for old callers and logs."""
        return max((d for d in self.delays_s if math.isfinite(d)), default=0.0)

    @property
    def links_text(self) -> str:
        """The trace spelling of the links (``0_1,2_3``; empty when none, where
        ``links_key`` says ``none``: an empty LINKS field is what a trace line holds)."""
        return links_key(self.links) if self.links else ""

    def link_delays_s(self, num_stages: int) -> tuple[float, ...]:
        """Delay per link (link i joins stage i and i+1): 0 healthy, ``inf`` down; a NIC
        crash is ``inf`` on every link."""
        n = max(num_stages - 1, 0)
        if self.nic_crash:
            return (math.inf,) * n
        delays = [0.0] * n
        for (a, _), d in zip(self.links, self.delays_s):
            if a >= n:
                raise ValueError(f"link {a}_{a + 1} does not exist with {num_stages} stages")
            delays[a] = d
        return tuple(delays)

    def to_line(self) -> str:
        """This fault as one trace line (seconds for a time-based one)."""
        when = str(self.since_iteration) if self.at_s is None else _seconds_text(self.at_s)
        if self.nic_crash:
            return f"{when};;inf"
        if self.healthy:
            return f"{when};;0"
        uniform = len(set(self.delays_s)) == 1
        delays = self.delays_s[:1] if uniform else self.delays_s
        return f"{when};{self.links_text};{','.join(delay_text(d) for d in delays)}"

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON form (a link that is down has delay ``null``: JSON has no infinity)."""
        return {
            "links": self.links_text,
            "delays_s": [None if math.isinf(d) else d for d in self.delays_s],
            "nic_crash": self.nic_crash,
            "since_iteration": self.since_iteration,
            "epoch": self.epoch,
            "at_s": self.at_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Inverse of ``to_json`` (``null`` or ``"inf"`` = down). The older form with one
        ``delay_s`` for all links and a ``crashed`` flag is read too."""
        text = str(data.get("links") or "")
        links = tuple(parse_link(x) for x in text.split(",") if x.strip())
        if "delays_s" in data:
            delays = tuple(_json_delay(d) for d in data["delays_s"] or ())
        else:
            one = math.inf if data.get("crashed") else _json_delay(data.get("delay_s") or 0.0)
            delays = (one,) * len(links)
        at_s = data.get("at_s")
        return cls(
            links=links,
            delays_s=delays,
            nic_crash=bool(data.get("nic_crash", False)),
            since_iteration=int(data.get("since_iteration", 0)),
            epoch=int(data.get("epoch", 0)),
            at_s=None if at_s is None else float(at_s),
        )


HEALTHY = Fault()


def _json_delay(value: Any) -> float:
    return math.inf if value is None or value == "inf" else float(value)


def _seconds_text(seconds: float) -> str:
    """Seconds that parse back exactly and always hold a decimal point (``12.0``)."""
    text = format(Decimal(repr(float(seconds))), "f")
    return text if "." in text else text + ".0"


@dataclass(frozen=True)
class Trace:
    """A timeline of faults, healthy before the first. ``kind`` "iteration": ordered by
    ``since_iteration``, looked up with ``fault_at``; "time": ordered by ``at_s`` (seconds
    from the start of the ``fault_at`` iteration), looked up with ``snapshot_at``."""

    faults: tuple[Fault, ...] = field(default_factory=tuple)
    kind: Kind = "iteration"

    def __iter__(self):
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def fault_at(self, iteration: int) -> Fault:
        """The fault in force at ``iteration`` (the healthy epoch-0 fault before any line)."""
        if self.kind != "iteration":
            raise ValueError("a time-based trace is looked up by seconds (snapshot_at)")
        current = HEALTHY
        for f in self.faults:
            if f.since_iteration > iteration:
                break
            current = f
        return current

    def snapshot_at(self, elapsed_s: float) -> Fault:
        """The snapshot in force ``elapsed_s`` seconds after the start of the ``fault_at``
        iteration (the healthy epoch-0 fault before the first line)."""
        if self.kind != "time":
            raise ValueError("an iteration trace is looked up by iteration (fault_at)")
        current = HEALTHY
        for f in self.faults:
            assert f.at_s is not None
            if f.at_s > elapsed_s:
                break
            current = f
        return current

    @property
    def max_delay_s(self) -> float:
        """The largest finite delay of the timeline (0 when none)."""
        return max((f.delay_s for f in self.faults), default=0.0)

    def to_text(self) -> str:
        """The trace file text (one line per fault)."""
        return "".join(f.to_line() + "\n" for f in self.faults)


def trace_hash(text: str) -> str:
    """A trace's identity in a cell spec: the first 16 hex digits of sha256 of its text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_trace(text: str, num_stages: int) -> Trace:
    """Parses a trace for a pipeline of ``num_stages`` stages; raises ``TraceError``."""
    lines: list[TraceLine] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        body = raw.split("#", 1)[0].strip()
        if not body:
            continue
        line = parse_line(body, lineno, num_stages)
        if lines and line.kind != lines[0].kind:
            raise TraceError(
                f"line {lineno}: a {line.kind} line ({line.when_text}) in a trace whose line "
                f"{lines[0].lineno} is a {lines[0].kind} line: do not mix ITER and SECONDS lines"
            )
        if lines and line.when <= lines[-1].when:
            unit = "iterations" if line.kind == "iteration" else "times"
            raise TraceError(
                f"line {lineno}: {line.when_text} is not after the previous line's "
                f"{lines[-1].when_text} ({unit} must increase)"
            )
        lines.append(line)
    kind: Kind = lines[0].kind if lines else "iteration"
    faults = tuple(_fault(line, epoch) for epoch, line in enumerate(lines, start=1))
    return Trace(faults, kind)


def _fault(line: TraceLine, epoch: int) -> Fault:
    if line.kind == "time":
        return Fault(line.links, line.delays_s, line.nic_crash, 0, epoch, at_s=line.when)
    return Fault(line.links, line.delays_s, line.nic_crash, int(line.when), epoch)


def load_trace(path: str | Path, num_stages: int) -> Trace:
    """Reads and parses a trace file; errors name the file and the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{p}: cannot read trace ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise TraceError(f"{p}: cannot read trace (not UTF-8 text: {exc.reason})") from exc
    try:
        return parse_trace(text, num_stages)
    except TraceError as exc:
        raise TraceError(f"{p}: {exc}") from exc
