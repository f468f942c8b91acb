"""Dynamic-straggler traces, generated (PAPER.md section 7, the artifact's generator in our words).

From a seed: each event picks k distinct links (k uniform in 1..``max_links``) of the candidate
links, gives each a delay drawn from N(``delay_ms``, ``delay_std_ms``) clipped to
[0, ``max_delay_ms``], and the next event follows after U(``min_gap_s``, 2 x ``min_gap_s``)
seconds; events start at 0.0 and stop before ``duration_s``. The output is a time-based trace
(``injector.trace_parse``): one full snapshot per line, seconds from the start of the cell's
``fault_at`` iteration, delays in seconds (a link drawn at 0 ms is left out; none left: the
line is ``;;0``). The same spec gives the same text, byte for byte. Pure, no torch.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from injector.links import Link, LinkError, links_key, parse_links
from injector.trace import Fault, Trace

MAX_EVENTS = 10_000  # duration / min gap above this is a typo, not a trace


class TraceGenError(ValueError):
    """A generator setting that cannot be used: one line naming it and the fix."""


@dataclass(frozen=True)
class TraceGenSpec:
    """The generator's settings (defaults: the paper's S=4 generator, events every 2-4 s)."""

    seed: int = 2025
    duration_s: float = 12.0
    stages: int = 4
    links: str = ""  # candidate links, e.g. "0_1,2_3"; "" = every link of the pipeline
    max_links: int = 0  # links per event at most; 0 = all the candidates (the paper: S-1)
    delay_ms: float = 30.0  # mean of the per-link delay
    delay_std_ms: float = 10.0
    max_delay_ms: float = math.inf  # upper clip of a drawn delay (the lower one is 0)
    min_gap_s: float = 2.0  # the next event follows after U(min_gap_s, 2 x min_gap_s)

    def candidates(self) -> tuple[Link, ...]:
        """The links events pick from; ``TraceGenError`` for a link that does not exist."""
        if self.stages < 2:
            raise TraceGenError(f"stages = {self.stages}: a pipeline needs at least 2 stages")
        if not self.links.strip():
            return tuple((a, a + 1) for a in range(self.stages - 1))
        try:
            links = parse_links(self.links, self.stages)
        except LinkError as exc:
            raise TraceGenError(f"links {self.links!r}: {exc}") from None
        if not links:
            raise TraceGenError("links: name at least one link (e.g. 0_1,2_3), or leave it out for all")
        return links

    def command(self) -> str:
        """The ``pmctl trace-gen`` command line that generates this trace."""
        links = links_key(self.candidates())
        clip = "" if math.isinf(self.max_delay_ms) else f" --max-delay-ms {self.max_delay_ms:g}"
        return (f"pmctl trace-gen --seed {self.seed} --duration {self.duration_s:g} "
                f"--stages {self.stages} --links {links} --max-links {self.k_max()} "
                f"--delay-ms {self.delay_ms:g} --delay-std-ms {self.delay_std_ms:g}{clip} "
                f"--min-gap {self.min_gap_s:g}")

    def k_max(self) -> int:
        """The largest number of links of one event."""
        return self.max_links or len(self.candidates())


def validate(spec: TraceGenSpec) -> TraceGenSpec:
    """Checks every setting; raises ``TraceGenError`` with one line. Returns ``spec``."""
    n = len(spec.candidates())
    checks = [
        (spec.seed >= 0, f"seed = {spec.seed}: must be >= 0"),
        (math.isfinite(spec.duration_s) and spec.duration_s > 0,
         f"duration = {spec.duration_s} s: must be a finite number > 0"),
        (0 <= spec.max_links <= n,
         f"max links = {spec.max_links}: must be 1..{n} (the candidate links), or 0 for all"),
        (math.isfinite(spec.delay_ms) and spec.delay_ms >= 0, f"delay = {spec.delay_ms} ms: must be >= 0"),
        (math.isfinite(spec.delay_std_ms) and spec.delay_std_ms >= 0,
         f"delay std = {spec.delay_std_ms} ms: must be >= 0"),
        (spec.max_delay_ms > 0, f"max delay = {spec.max_delay_ms} ms: must be > 0"),
        (math.isfinite(spec.min_gap_s) and spec.min_gap_s >= 0.001,
         f"min gap = {spec.min_gap_s} s: must be >= 0.001 s"),
    ]
    for ok, what in checks:
        if not ok:
            raise TraceGenError(what)
    if spec.duration_s / spec.min_gap_s > MAX_EVENTS:
        raise TraceGenError(f"duration {spec.duration_s:g} s / min gap {spec.min_gap_s:g} s "
                            f"would be over {MAX_EVENTS} events: use a longer gap or a shorter trace")
    return spec


def generate(spec: TraceGenSpec) -> Trace:
    """The trace of ``spec`` (deterministic in it); ``TraceGenError`` for a bad setting."""
    validate(spec)
    rng = random.Random(spec.seed)
    candidates = spec.candidates()
    faults: list[Fault] = []
    t = 0.0
    while t < spec.duration_s:
        k = rng.randint(1, spec.k_max())
        chosen = sorted(rng.sample(candidates, k))
        drawn = [_delay_s(rng, spec) for _ in chosen]
        slow = [(link, d) for link, d in zip(chosen, drawn) if d > 0]
        faults.append(Fault(tuple(x[0] for x in slow), tuple(x[1] for x in slow),
                            epoch=len(faults) + 1, at_s=t))
        # times in whole milliseconds, so the text is short and parses back exactly
        t = round(t + rng.uniform(spec.min_gap_s, 2 * spec.min_gap_s), 3)
    return Trace(tuple(faults), "time")


def _delay_s(rng: random.Random, spec: TraceGenSpec) -> float:
    """One link's delay in seconds, to 0.1 ms: N(mean, std) clipped to [0, max]."""
    ms = min(max(rng.gauss(spec.delay_ms, spec.delay_std_ms), 0.0), spec.max_delay_ms)
    return round(ms / 1000.0, 4)


def trace_text(spec: TraceGenSpec) -> str:
    """The trace file: two comment lines (the command and the distribution), then the lines."""
    trace = generate(spec)
    clip = "" if math.isinf(spec.max_delay_ms) else f"{spec.max_delay_ms:g}"
    header = (f"# {spec.command()}\n"
              f"# {len(trace)} events; per event 1..{spec.k_max()} links, delay ~ "
              f"N({spec.delay_ms:g} ms, {spec.delay_std_ms:g} ms) clipped to [0, {clip or 'inf'}] ms, "
              f"next event after U({spec.min_gap_s:g}, {2 * spec.min_gap_s:g}) s\n")
    return header + trace.to_text()
