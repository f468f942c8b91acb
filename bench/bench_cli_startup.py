"""CLI start-up time: ``pmctl --help`` and ``pmctl list`` beside a bare ``python -c pass``.

    .venv/bin/python bench/bench_cli_startup.py [--runs N] [--pmctl PATH]

Each command runs N times as a fresh process (after one warm-up run each, so the file cache
is warm), interleaved so a busy machine slows them alike; prints the median, min and max wall
time of each and what pmctl adds over the bare interpreter. Goal: ``pmctl --help`` under
0.5 s. Also says whether ``pmctl --help`` imported torch (it must not). Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_HELP_S = 0.5


def _pmctl_command(explicit: str | None) -> list[str]:
    """The installed ``pmctl`` script beside this interpreter, else ``python -m pmctl``."""
    if explicit:
        return [explicit]
    script = Path(sys.executable).with_name("pmctl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pmctl"]


def _time(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    return elapsed


def _imports_torch(pmctl: list[str], env: dict[str, str], cwd: Path) -> bool:
    r = subprocess.run([*pmctl, "--help"], env={**env, "PYTHONVERBOSE": "1"}, cwd=cwd,
                       capture_output=True, text=True)
    return any(line.startswith("import 'torch'") for line in r.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="timed runs per command (default 15)")
    ap.add_argument("--pmctl", help="the pmctl executable (default: the one beside this python)")
    args = ap.parse_args()

    pmctl = _pmctl_command(args.pmctl)
    with tempfile.TemporaryDirectory() as tmp:
        # No inventory or state of the caller's; results nowhere near the repository.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PMCTL_")}
        env["PMCTL_STATE_DIR"] = str(Path(tmp) / ".pmctl")
        cwd = Path(tmp)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "pmctl --help": [*pmctl, "--help"],
            "pmctl list": [*pmctl, "list"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():
            _time(cmd, env, cwd)  # warm-up: the file cache, .pyc files
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(_time(cmd, env, cwd))
        torch = _imports_torch(pmctl, env, cwd)

    base = statistics.median(times["python -c pass"])
    print(f"CLI start-up, {args.runs} runs each ({' '.join(pmctl)}, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'command':<16} {'median':>8} {'min':>8} {'max':>8} {'over python':>12}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:<16} {med:>7.3f}s {min(ts):>7.3f}s {max(ts):>7.3f}s {med - base:>+11.3f}s")
    help_s = statistics.median(times["pmctl --help"])
    verdict = "met" if help_s < GOAL_HELP_S else "MISSED"
    print(f"goal: pmctl --help under {GOAL_HELP_S:.1f} s: {help_s:.3f} s ({verdict})")
    print(f"pmctl --help imports torch: {'YES (it must not)' if torch else 'no'}")


if __name__ == "__main__":
    main()
