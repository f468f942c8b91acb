"""Links and delays: the one link type, its spellings, and the one delay parser.

A link joins adjacent stages ``a`` and ``a + 1``: ``(a, a + 1)``, spelled ``a_b`` (``2_3``;
``3_2`` and ``2-3`` mean the same). A set of links is spelled ``0_1,2_3`` (``none`` when
empty). Delays are seconds inside the program; the command line says milliseconds by
default (``60``, ``60ms``), traces say seconds (``0.06``), and ``inf`` is a crash.
Pure Python, no torch.
"""

from __future__ import annotations

import math
from typing import Literal

Link = tuple[int, int]


class LinkError(ValueError):
    """A link or delay that cannot be used; the message is one line with the reason."""


def parse_link(text: str, num_stages: int | None = None) -> Link:
    """One link ``A_B`` of adjacent stages; with ``num_stages`` the link must exist."""
    parts = text.strip().replace("-", "_").split("_")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise LinkError(f"link {text!r} is not of the form A_B (e.g. 2_3)")
    a, b = sorted(int(p) for p in parts)
    if b != a + 1:
        raise LinkError(f"link {text} does not join adjacent stages ({a} and {b})")
    if num_stages is not None and b >= num_stages:
        raise LinkError(
            f"link {text} does not exist with {num_stages} stages "
            f"(links are 0_1 .. {num_stages - 2}_{num_stages - 1})"
            if num_stages > 1
            else f"link {text} does not exist: a single stage has no links"
        )
    return (a, b)


def parse_links(text: str, num_stages: int | None = None) -> tuple[Link, ...]:
    """A set of links (``0_1,2_3``; ``none`` or empty = no link), sorted, each once."""
    t = text.strip().lower()
    if t in ("", "none"):
        return ()
    links: list[Link] = []
    for item in t.split(","):
        link = parse_link(item, num_stages)
        if link in links:
            raise LinkError(f"link {item.strip()} is listed twice")
        links.append(link)
    return tuple(sorted(links))


def links_key(links: tuple[Link, ...]) -> str:
    """``((0, 1), (2, 3))`` -> ``"0_1,2_3"``; no links -> ``"none"``."""
    return ",".join(f"{a}_{b}" for a, b in links) if links else "none"


def parse_delay(text: str, default_unit: Literal["ms", "s"]) -> float:
    """``60ms``, ``0.06s``, ``inf``, or a plain number in ``default_unit`` -> seconds."""
    t = str(text).strip().lower()
    scale = 1e-3 if default_unit == "ms" else 1.0
    if t.endswith("ms"):
        t, scale = t[:-2], 1e-3
    elif t.endswith("s"):
        t, scale = t[:-1], 1.0
    if t == "inf":
        return math.inf
    try:
        value = float(t)
    except ValueError:
        raise LinkError(
            f"delay {text!r} is not a number: use e.g. 60ms, 0.06s or inf"
        ) from None
    if not math.isfinite(value):
        raise LinkError(f"delay {text!r} is not a finite number (use 'inf' for a crash)")
    if value < 0:
        raise LinkError(f"delay {text!r} is negative")
    return value * scale


def delay_text(delay_s: float) -> str:
    """Seconds as text that parses back exactly (``inf`` for a crash)."""
    return "inf" if math.isinf(delay_s) else repr(float(delay_s))


def delay_key(delay_s: float) -> str:
    """Seconds as the artifact spells a delay folder: ``0.06``, ``0.12``, ``0``, ``inf``."""
    return "inf" if math.isinf(delay_s) else f"{delay_s:g}"


def same_delay(a: float, b: float) -> bool:
    """The one rule for "the same delay" (crashes equal crashes; 1 ns apart is the same)."""
    return (math.isinf(a) and math.isinf(b)) or abs(a - b) < 1e-9
