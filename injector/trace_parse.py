"""The grammar of one trace line (ARCHITECTURE.md "Trace", PAPER.md section 7).

    WHEN;LINKS;DELAYS

WHEN is a 0-based iteration (``7``: the artifact's ``ITER;LINKS;DELAY``) or, with a decimal
point, seconds (``12.5``: a time-based line, counted from the start of the cell's
``fault_at`` iteration). LINKS is comma-separated adjacent-stage pairs (``0_1,2_3``; ``2-3``
and ``3_2`` mean ``2_3``, as on the command line). DELAYS is seconds per message (``60ms`` and
``0.06s`` are read too), or ``inf`` for a link that is down: one value for every listed link,
or one value per link in the order listed. An empty LINKS field takes one delay: ``0`` is
healthy again, ``inf`` is a NIC crash (the GPU-direct path is down on every link).

This module parses one line into a ``TraceLine``; ``injector.trace`` builds the timeline. Links
and delays are read by ``injector.links`` (the one link and delay parser); every error is a
``TraceError`` of one line naming the line number and the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from injector.links import Link, LinkError, parse_delay, parse_link

Kind = Literal["iteration", "time"]


class TraceError(ValueError):
    """A trace line that cannot be used; the message names the line and the reason."""


@dataclass(frozen=True)
class TraceLine:
    """One parsed line: from ``when`` on, ``links`` carry ``delays_s`` (one per link)."""

    lineno: int
    kind: Kind
    when: float  # an iteration (integral) or seconds
    links: tuple[Link, ...]
    delays_s: tuple[float, ...]
    nic_crash: bool

    @property
    def when_text(self) -> str:
        return f"iteration {int(self.when)}" if self.kind == "iteration" else f"{self.when} s"


def parse_line(line: str, lineno: int, num_stages: int) -> TraceLine:
    """Parses one non-blank, comment-free line; raises ``TraceError``."""
    fields = [f.strip() for f in line.split(";")]
    if len(fields) != 3:
        raise TraceError(
            f"line {lineno}: expected ITER;LINKS;DELAY or SECONDS;LINKS;DELAYS (3 fields), "
            f"got {len(fields)} in {line!r}"
        )
    when_text, links_text, delays_text = fields
    kind, when = _parse_when(when_text, lineno)
    links = _parse_links(links_text, lineno, num_stages)
    delays = tuple(_parse_delay(d.strip(), lineno) for d in delays_text.split(","))
    if not links:
        if len(delays) != 1 or delays[0] not in (0.0, math.inf):
            raise TraceError(
                f"line {lineno}: delay {delays_text} given with no links "
                "(;;0 = healthy again, ;;inf = NIC crash)"
            )
        return TraceLine(lineno, kind, when, (), (), math.isinf(delays[0]))
    if len(delays) == 1:
        delays = delays * len(links)
    elif len(delays) != len(links):
        raise TraceError(
            f"line {lineno}: {len(delays)} delays for {len(links)} links "
            "(give one delay for all links, or one per link)"
        )
    pairs = sorted(zip(links, delays))
    return TraceLine(
        lineno, kind, when, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), False
    )


def _parse_when(text: str, lineno: int) -> tuple[Kind, float]:
    if "." in text:
        try:
            seconds = float(text)
        except ValueError:
            raise TraceError(f"line {lineno}: time {text!r} is not a number of seconds") from None
        if not math.isfinite(seconds) or seconds < 0:
            raise TraceError(f"line {lineno}: time {text} s is not a finite number >= 0")
        return "time", seconds
    try:
        iteration = int(text)
    except ValueError:
        raise TraceError(
            f"line {lineno}: iteration {text!r} is not an integer "
            "(seconds need a decimal point: 12.0)"
        ) from None
    if iteration < 0:
        raise TraceError(f"line {lineno}: iteration {iteration} is negative")
    return "iteration", iteration


def _parse_delay(text: str, lineno: int) -> float:
    """Seconds by default (``0.06``), ``60ms``, ``0.06s`` or ``inf``."""
    try:
        return parse_delay(text, default_unit="s")
    except LinkError as exc:
        raise TraceError(f"line {lineno}: {exc}") from None


def _parse_links(text: str, lineno: int, num_stages: int) -> tuple[Link, ...]:
    """The links in the order listed (their delays follow that order)."""
    if not text:
        return ()
    links: list[Link] = []
    for item in (x.strip() for x in text.split(",")):
        try:
            link = parse_link(item, num_stages)
        except LinkError as exc:
            raise TraceError(f"line {lineno}: {exc}") from None
        if link in links:
            raise TraceError(f"line {lineno}: link {item} is listed twice")
        links.append(link)
    return tuple(links)
