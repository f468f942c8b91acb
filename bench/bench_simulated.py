"""Simulated figures' compute time, side by side (prints numbers; no asserts).

    .venv/bin/python bench/bench_simulated.py [--quick] [--extras] [--figures fig19,fig8]

Times each simulated figure's ``compute`` (fig4, fig5, fig8, fig19, sim-compare: what
``pmctl run all`` computes locally) in its default form, writing into a temporary folder,
and prints seconds per figure and the total. Goal (issue: ``pmctl run all`` within 20
minutes on a 2-core machine): the defaults together within about 3 minutes. ``--extras``
also times ``compute(..., extras=True)`` (fig19's MILP from pipemorph alone: about 9
minutes for the full grid); ``--quick`` the quick form.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from figures.cells import base_spec  # noqa: E402
from figures.registry import figure_names, get_figure  # noqa: E402

GOAL_S = 180.0


def simulated_names() -> list[str]:
    """The simulated figures, in paper order."""
    return [n for n in figure_names() if get_figure(n).kind == "simulated"]


def time_compute(name: str, root: Path, quick: bool, extras: bool) -> float:
    """Wall seconds of one ``compute`` into ``root/<fig>``."""
    fig = get_figure(name)
    t0 = time.perf_counter()
    fig.compute(root / fig.name, quick, None, extras=extras)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick form of each figure")
    parser.add_argument("--extras", action="store_true",
                        help="also time compute with extras=True (fig19: about 9 minutes)")
    parser.add_argument("--figures", default="", help="comma list (default: every simulated figure)")
    args = parser.parse_args()
    names = [n for n in args.figures.split(",") if n] or simulated_names()
    modes = [False, True] if args.extras else [False]
    base = base_spec()
    form = "quick" if args.quick else "full"
    print(f"== simulated figures' compute, {form} form (goal: defaults <= {GOAL_S:g} s in all) ==")
    header = f"{'figure':<12} {'estimate s':>10} {'default s':>10}"
    if args.extras:
        header += f" {'extras s':>10} {'est. extras':>11}"
    print(header)
    totals = dict.fromkeys(modes, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench_simulated.") as tmp:
        for name in names:
            fig = get_figure(name)
            line = f"{name:<12} {fig.estimate_seconds(base, args.quick):>10.1f}"
            for extras in modes:
                seconds = time_compute(name, Path(tmp) / f"extras={extras}", args.quick, extras)
                totals[extras] += seconds
                line += f" {seconds:>10.2f}"
            if args.extras:
                est = fig.estimate_seconds(base, args.quick, extras=True)
                line += f" {est:>11.1f}"
            print(line, flush=True)
    total = f"{'total':<12} {'':>10} {totals[False]:>10.2f}"
    if args.extras:
        total += f" {totals[True]:>10.2f}"
    print(total)
    verdict = "within" if totals[False] <= GOAL_S else "OVER"
    print(f"defaults: {totals[False]:.1f} s, {verdict} the {GOAL_S:g} s goal")


if __name__ == "__main__":
    main()
