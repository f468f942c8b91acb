"""Measured slow-link detection (``--detect``): pure functions and a small state, no torch.

Every received message carries the sender's handover time; the receiver notes the arrival
on the shared clock. A message's transit = arrival - handover: the link's base latency, plus
the injected delay, plus however late the receiver was to look (an inline receive is posted
only when the compute needs it). The last term is never negative, so a link's *smallest*
transits estimate its latency; the excess over the run's healthy baseline (the smallest
transit seen on any link) is the link's extra delay. A link is declared slow when the k-th
smallest excess of the iteration (k messages, both directions pooled) clears a threshold,
and its estimate is the smallest excess. Both receiving ranks of a link contribute, through
one all-gather of ``LinkSample``s (``combine``), so every rank decides the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.plan_source import LinkObservation

MIN_MESSAGES = 3  # messages that must all show the excess before a link counts as slow
ABS_THRESHOLD_MS = 3.0  # excess below this is noise on any host
REL_THRESHOLD = 0.15  # ... or below this fraction of the fastest forward (tF)
REPLAN_TOLERANCE = 0.1  # re-plan only when an estimate moves by more than this fraction


@dataclass(frozen=True)
class LinkSample:
    """One rank's received-message transits on one link in one iteration: the smallest
    ``MIN_MESSAGES`` (ms, ascending) and how many messages there were."""

    link: int
    smallest_ms: tuple[float, ...]
    count: int


def local_samples(observations: list[LinkObservation]) -> list[LinkSample]:
    """Summarises this rank's observations of one iteration, per link."""
    by_link: dict[int, list[float]] = {}
    for o in observations:
        by_link.setdefault(o.link, []).append(o.arrived_ms - o.sent_ms)
    return [
        LinkSample(link, tuple(sorted(ts)[:MIN_MESSAGES]), len(ts))
        for link, ts in sorted(by_link.items())
    ]


def combine(samples: list[LinkSample], num_links: int) -> list[tuple[float, ...]]:
    """Pools every rank's samples: per link, the smallest ``MIN_MESSAGES`` transits."""
    pooled: list[list[float]] = [[] for _ in range(num_links)]
    for s in samples:
        if 0 <= s.link < num_links:
            pooled[s.link].extend(s.smallest_ms)
    return [tuple(sorted(p)[:MIN_MESSAGES]) for p in pooled]


@dataclass(frozen=True)
class Detection:
    """The detector's verdict after one iteration: per link the estimated extra delay in ms
    (0 when not significant, None when the link carried too few messages)."""

    iteration: int
    excess_ms: tuple[float | None, ...]
    raw_excess_ms: tuple[float | None, ...]
    baseline_ms: float

    @property
    def slow_links(self) -> tuple[int, ...]:
        return tuple(i for i, e in enumerate(self.excess_ms) if e)


class LinkDetector:
    """Keeps the healthy baseline across iterations and turns pooled transits into verdicts."""

    def __init__(self, num_links: int) -> None:
        self.num_links = num_links
        self.baseline_ms = math.inf

    def update(
        self, iteration: int, pooled: list[tuple[float, ...]], min_tf_ms: float | None
    ) -> Detection:
        """The verdict for ``iteration`` from ``combine``'s output; ``min_tf_ms`` scales the
        significance threshold (None before profiling: the absolute floor only)."""
        firsts = [p[0] for p in pooled if p]
        if firsts:
            # the fastest message seen on any link, ever: a healthy link's latency, since a
            # delay or a late receiver only ever adds to a transit
            self.baseline_ms = min(self.baseline_ms, min(firsts))
        threshold = ABS_THRESHOLD_MS
        if min_tf_ms:
            threshold = max(threshold, REL_THRESHOLD * min_tf_ms)
        excess: list[float | None] = []
        raw: list[float | None] = []
        for p in pooled:
            if len(p) < MIN_MESSAGES:
                excess.append(None)
                raw.append(None)
                continue
            est = max(p[0] - self.baseline_ms, 0.0)
            kth = p[MIN_MESSAGES - 1] - self.baseline_ms
            raw.append(est)
            excess.append(est if est > threshold and kth > threshold else 0.0)
        return Detection(iteration, tuple(excess), tuple(raw), self.baseline_ms)


def detected_delays_s(
    detection: Detection, previous_s: tuple[float, ...]
) -> tuple[float, ...]:
    """Per-link delays (s) to plan for: the detection's, except that a link keeps its
    previous value while the new estimate is within ``REPLAN_TOLERANCE`` of it (so noise
    does not re-plan every iteration) or when it carried too few messages to judge."""
    out = []
    for i, e in enumerate(detection.excess_ms):
        prev = previous_s[i] if i < len(previous_s) else 0.0
        if e is None:
            out.append(prev)
            continue
        new = e / 1000.0
        if prev > 0 and new > 0 and abs(new - prev) <= REPLAN_TOLERANCE * prev:
            out.append(prev)
        else:
            out.append(new)
    return tuple(out)
