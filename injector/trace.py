"""Fault traces: the artifact-compatible ``ITER;LINKS;DELAY`` timeline (ARCHITECTURE.md).

One change per line: from 0-based iteration ITER on, the comma-separated adjacent-stage
pairs in LINKS (``2_3``; empty = healthy again) carry DELAY extra seconds per message, or are
down for ``inf``. Blank lines and ``#`` comments are allowed. Parsing is strict: every error
names the line and the reason. Pure Python, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Link = tuple[int, int]


class TraceError(ValueError):
    """A trace line that cannot be used; the message names the line and the reason."""


@dataclass(frozen=True)
class Fault:
    """The slow-link situation in force from ``since_iteration`` on.

    ``epoch`` numbers the changes of a timeline (0 = the implicit healthy start), so a reader
    can tell two faults with equal contents apart.
    """

    links: tuple[Link, ...] = ()
    delay_s: float = 0.0
    crashed: bool = False
    since_iteration: int = 0
    epoch: int = 0

    @property
    def healthy(self) -> bool:
        """No link is slow or down."""
        return not self.links or (self.delay_s == 0.0 and not self.crashed)

    @property
    def links_text(self) -> str:
        """The trace spelling of the links (``0_1,2_3``; empty when healthy)."""
        return ",".join(f"{a}_{b}" for a, b in self.links)

    def link_delays_s(self, num_stages: int) -> tuple[float, ...]:
        """Delay per link (link i joins stage i and i+1): 0 healthy, ``inf`` crashed."""
        delays = [0.0] * max(num_stages - 1, 0)
        if self.healthy:
            return tuple(delays)
        for a, _ in self.links:
            if a >= len(delays):
                raise ValueError(f"link {a}_{a + 1} does not exist with {num_stages} stages")
            delays[a] = math.inf if self.crashed else self.delay_s
        return tuple(delays)

    def to_line(self) -> str:
        """This fault as one trace line."""
        if self.healthy:
            return f"{self.since_iteration};;0"
        delay = "inf" if self.crashed else f"{self.delay_s:g}"
        return f"{self.since_iteration};{self.links_text};{delay}"

    def to_json(self) -> dict[str, Any]:
        """Strict-JSON form (a crash's delay is ``null``: JSON has no infinity)."""
        return {
            "links": self.links_text,
            "delay_s": None if self.crashed else self.delay_s,
            "crashed": self.crashed,
            "since_iteration": self.since_iteration,
            "epoch": self.epoch,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Fault:
        """Inverse of ``to_json`` (also accepts ``"inf"`` as a delay)."""
        text = str(data.get("links") or "")
        links = tuple(sorted(parse_link(x.strip()) for x in text.split(",") if x.strip()))
        crashed = bool(data.get("crashed", False))
        raw = data.get("delay_s")
        delay = math.inf if crashed or raw == "inf" else float(raw or 0.0)
        return cls(
            links=links,
            delay_s=delay,
            crashed=crashed or math.isinf(delay),
            since_iteration=int(data.get("since_iteration", 0)),
            epoch=int(data.get("epoch", 0)),
        )


HEALTHY = Fault()


@dataclass(frozen=True)
class Trace:
    """A timeline of faults ordered by ``since_iteration`` (healthy before the first)."""

    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def __iter__(self):
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def fault_at(self, iteration: int) -> Fault:
        """The fault in force at ``iteration`` (the healthy epoch-0 fault before any line)."""
        current = HEALTHY
        for f in self.faults:
            if f.since_iteration > iteration:
                break
            current = f
        return current

    @property
    def max_delay_s(self) -> float:
        """The largest finite delay of the timeline (0 when none)."""
        finite = [f.delay_s for f in self.faults if not f.crashed and not f.healthy]
        return max(finite, default=0.0)

    def to_text(self) -> str:
        """The trace file text (one line per fault)."""
        return "".join(f.to_line() + "\n" for f in self.faults)


def parse_trace(text: str, num_stages: int) -> Trace:
    """Parses a trace for a pipeline of ``num_stages`` stages; raises ``TraceError``."""
    faults: list[Fault] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fault = _parse_line(line, lineno, num_stages, epoch=len(faults) + 1)
        if faults and fault.since_iteration <= faults[-1].since_iteration:
            raise TraceError(
                f"line {lineno}: iteration {fault.since_iteration} is not after the previous "
                f"line's {faults[-1].since_iteration} (iterations must increase)"
            )
        faults.append(fault)
    return Trace(tuple(faults))


def load_trace(path: str | Path, num_stages: int) -> Trace:
    """Reads and parses a trace file; errors name the file and the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"{p}: cannot read trace ({exc.strerror or exc})") from exc
    try:
        return parse_trace(text, num_stages)
    except TraceError as exc:
        raise TraceError(f"{p}: {exc}") from exc


def _parse_line(line: str, lineno: int, num_stages: int, epoch: int) -> Fault:
    fields = [f.strip() for f in line.split(";")]
    if len(fields) != 3:
        raise TraceError(
            f"line {lineno}: expected ITER;LINKS;DELAY (3 fields), got {len(fields)} in {line!r}"
        )
    it_text, links_text, delay_text = fields
    try:
        iteration = int(it_text)
    except ValueError:
        raise TraceError(f"line {lineno}: iteration {it_text!r} is not an integer") from None
    if iteration < 0:
        raise TraceError(f"line {lineno}: iteration {iteration} is negative")
    delay = _parse_delay(delay_text, lineno)
    links = _parse_links(links_text, lineno, num_stages)
    if not links and delay != 0.0:
        raise TraceError(
            f"line {lineno}: delay {delay_text} given with no links (use ITER;;0 for healthy)"
        )
    crashed = math.isinf(delay)
    return Fault(links, delay, crashed, iteration, epoch)


def _parse_delay(text: str, lineno: int) -> float:
    if text.lower() == "inf":
        return math.inf
    try:
        delay = float(text)
    except ValueError:
        raise TraceError(
            f"line {lineno}: delay {text!r} is not a number of seconds or 'inf'"
        ) from None
    if math.isnan(delay) or math.isinf(delay):
        raise TraceError(f"line {lineno}: delay {text!r} is not a finite number (use 'inf')")
    if delay < 0:
        raise TraceError(f"line {lineno}: delay {text} is negative")
    return delay


def parse_link(text: str, num_stages: int | None = None) -> Link:
    """Parses one link ``A_B`` of adjacent stages (``3_2`` is ``(2, 3)``); with ``num_stages``
    the link must exist. Raises ``TraceError`` with a one-line reason."""
    parts = text.strip().split("_")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise TraceError(f"link {text!r} is not of the form A_B (e.g. 2_3)")
    a, b = sorted(int(p) for p in parts)
    if b != a + 1:
        raise TraceError(f"link {text} does not join adjacent stages ({a} and {b})")
    if num_stages is not None and b >= num_stages:
        raise TraceError(
            f"link {text} does not exist with {num_stages} stages "
            f"(links are 0_1 .. {num_stages - 2}_{num_stages - 1})"
            if num_stages > 1
            else f"link {text} does not exist: a single stage has no links"
        )
    return (a, b)


def _parse_links(text: str, lineno: int, num_stages: int) -> tuple[Link, ...]:
    if not text:
        return ()
    links: list[Link] = []
    for item in (x.strip() for x in text.split(",")):
        try:
            link = parse_link(item, num_stages)
        except TraceError as exc:
            raise TraceError(f"line {lineno}: {exc}") from None
        if link in links:
            raise TraceError(f"line {lineno}: link {item} is listed twice")
        links.append(link)
    return tuple(sorted(links))
