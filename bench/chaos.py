"""Chaos bench: kill -9 at a random moment, then check that nothing is lost and nothing is left.

For each of N seeded trials it starts a real ``pmctl run`` of a few quick cells (tiny preset)
on the local cluster, or with ``--ssh`` on network-namespace hosts with their own sshd, and
SIGKILLs one of: pmctl itself, one stage, the launcher, Redis, at a random moment. Then it
runs ``pmctl stop`` and the same ``pmctl run`` again. After every trial:

- no process of ours is left on any host (any process working in the trial's tree);
- every cell seen done during the trial is still done, its ``cell.json`` and op logs readable;
- no half-written file in the results store (every ``cell.json`` parses, no temp files);
- the rerun completes (exit 0, every cell done).

A trial must kill its target: one whose run ended before the target existed at the kill
moment fails too (``--max-delay`` keeps the moment inside the run of the two quick cells).

    python bench/chaos.py [--trials 20] [--seed 0] [--ssh]

The last line is ``survived K/N trials``, after each failed trial's reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.orchestration.support import (  # noqa: E402 - after the path is set
    build_netns_cluster,
    pmctl_env,
    why_no_netns,
    write_local_inventory,
)

TARGETS = ("pmctl", "stage", "launcher", "redis")
CELL_ARGS = ["fig15", "--methods", "zb,pipemorph", "--delays", "60", "--preset", "tiny",
             "--iters", "5", "--results", "results"]
RUN_TIMEOUT_S = 300.0
_LAUNCHERS = (b"engine.forkrun", b"torchrun", b"torch.distributed.run")


@dataclass
class Trial:
    index: int
    target: str
    at_s: float
    killed: str = ""
    problems: list[str] = field(default_factory=list)


def cell_records(results: Path) -> list[Path]:
    """Every ``cell.json`` under ``results`` (folders may vanish while it walks)."""
    return [Path(d) / "cell.json" for d, _, files in os.walk(results) if "cell.json" in files]


def _proc(pid: str) -> tuple[bytes, bytes, str, int] | None:
    """(environ, cmdline, cwd, parent pid) of a live process, None when it is gone."""
    try:
        base = Path("/proc") / pid
        env = (base / "environ").read_bytes()
        cmd = (base / "cmdline").read_bytes().replace(b"\0", b" ")
        cwd = str((base / "cwd").readlink())
        ppid = int((base / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return env, cmd, cwd, ppid


def our_processes(roots: list[Path]) -> dict[int, tuple[bytes, int]]:
    """pid -> (command line, parent) of every live process working in a trial's tree: what
    pmctl started there (its token in the environment; Redis overwrites its environment with
    its process title, so the working dir is what marks it) and pmctl itself."""
    found = {}
    prefixes = [str(r) for r in roots]
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        info = _proc(p.name)
        if info and any(info[2].startswith(x) for x in prefixes):
            found[int(p.name)] = (info[1], info[3])
    return found


def pick_victim(kind: str, pmctl_pid: int, roots: list[Path], rng: random.Random) -> int | None:
    """The pid to kill for ``kind``, or None when no such process exists right now."""
    if kind == "pmctl":
        return pmctl_pid
    procs = our_processes(roots)
    engines = {pid for pid, (cmd, _) in procs.items()  # not the bash that started them
               if not cmd.startswith(b"bash") and (b"engine." in cmd or any(x in cmd for x in _LAUNCHERS))}
    if kind == "redis":
        pool = [pid for pid, (cmd, _) in procs.items() if cmd.startswith(b"redis-server")]
    elif kind == "launcher":
        pool = [pid for pid in engines if procs[pid][1] not in engines]
    else:  # a stage: an engine process under a launcher; with no launcher, the stage itself
        pool = [pid for pid in engines if procs[pid][1] in engines] or [
            pid for pid in engines if not any(x in procs[pid][0] for x in _LAUNCHERS)]
    return rng.choice(sorted(pool)) if pool else None


def plan_states(pmctl: list[str], cwd: Path, env: dict[str, str]) -> dict[str, dict]:
    """cell folder -> plan line of ``pmctl run --dry-run --json`` (status, action)."""
    r = subprocess.run([*pmctl, "run", *CELL_ARGS, "--dry-run", "--json"], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    return {d["folder"]: d for d in lines if d.get("type") == "plan"}


def store_problems(results: Path, done: set[str], cwd: Path) -> list[str]:
    """What is wrong in the results store: unreadable records, temp files, lost cells."""
    problems = []
    for cj in cell_records(results):
        try:
            rec = json.loads(cj.read_text(encoding="utf-8"))
            assert isinstance(rec, dict)
        except (OSError, ValueError, AssertionError):
            problems.append(f"unreadable {cj.relative_to(cwd)}")
    for f in results.rglob("*"):
        if f.is_file() and (f.name.endswith(".tmp") or ".tmp." in f.name) and ".staging" not in f.parts:
            problems.append(f"half-written {f.relative_to(cwd)}")
    for folder in sorted(done):
        cj = cwd / folder / "cell.json"
        try:
            status = json.loads(cj.read_text(encoding="utf-8")).get("status")
            logs = sorted((cwd / folder).glob("stage*.jsonl"))
            for log in logs:
                for line in log.read_text(encoding="utf-8").splitlines():
                    json.loads(line)
        except (OSError, ValueError, AttributeError) as exc:
            problems.append(f"cell {folder} was done, now unreadable: {exc}")
            continue
        if status != "done" or not logs:
            problems.append(f"cell {folder} was done, now {status} with {len(logs)} op logs")
    return problems


def run_trial(t: Trial, cwd: Path, inv: Path, roots: list[Path], rng: random.Random) -> None:
    """One trial; appends what went wrong to ``t.problems``."""
    env = pmctl_env(cwd)
    pmctl = [sys.executable, "-m", "pmctl"]
    args = [*pmctl, "run", *CELL_ARGS, "--inventory", str(inv)]
    done: set[str] = set()
    stop = threading.Event()

    def watch() -> None:  # every cell seen done must stay done
        while not stop.wait(0.3):
            for cj in cell_records(cwd / "results"):
                if any(part.startswith(".") for part in cj.relative_to(cwd / "results").parts):
                    continue  # a commit's staging or aside folder (.partial-, .old-, ...), not a cell
                try:
                    if json.loads(cj.read_text(encoding="utf-8")).get("status") == "done":
                        done.add(str(cj.parent.relative_to(cwd)))
                except (OSError, ValueError, AttributeError):
                    pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with open(cwd / f"run{t.index}.log", "w") as log:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + t.at_s
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        victim = None
        while proc.poll() is None and victim is None:  # wait for the target to exist
            victim = pick_victim(t.target, proc.pid, roots, rng)
            if victim is None:
                time.sleep(0.1)
        if victim is not None:
            try:
                Path(f"/proc/{victim}/cmdline").read_bytes()
                subprocess.run(["kill", "-9", str(victim)], check=False)
                t.killed = f"{t.target} pid {victim}"
            except OSError:
                t.killed = "target gone"
        if not t.killed.startswith(t.target):  # nothing was tested: the trial does not count
            t.problems.append(f"no {t.target} killed ({t.killed or 'the run ended first'}): lower --max-delay")
        try:
            proc.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            t.problems.append(f"pmctl did not end {RUN_TIMEOUT_S:.0f} s after the kill")
            proc.kill()
            proc.wait()
    stop.set()
    watcher.join()
    r = subprocess.run([*pmctl, "stop", "--inventory", str(inv)], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if r.returncode != 0:
        t.problems.append(f"pmctl stop exit {r.returncode}: {r.stdout.strip()[-200:]} {r.stderr.strip()[-200:]}")
    time.sleep(0.5)
    left = our_processes(roots)
    if left:
        t.problems.append("left running: " + "; ".join(c.decode(errors="replace")[:80] for c, _ in left.values()))
    t.problems += store_problems(cwd / "results", done, cwd)
    rerun = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    if rerun.returncode != 0:
        t.problems.append(f"rerun exit {rerun.returncode}: {(rerun.stdout + rerun.stderr).strip()[-300:]}")
    states = plan_states(pmctl, cwd, {**env, "PMCTL_INVENTORY": str(inv)})
    undone = [f for f, d in states.items() if d.get("status") != "done"]
    if not states or undone:
        t.problems.append(f"after the rerun not done: {undone or 'no cells listed'}")
    if our_processes(roots):
        t.problems.append("left running after the rerun")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ssh", action="store_true", help="run on network-namespace SSH hosts")
    # two tiny cells take about 10-20 s on a quiet machine: a kill by 8 s lands inside the run
    ap.add_argument("--max-delay", type=float, default=8.0, help="latest kill moment (s after start)")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    survived = 0
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pmctl-chaos-")))
        roots = [tmp]
        ssh_inv = None
        if a.ssh:
            reason = why_no_netns()
            if reason:
                print(f"chaos: --ssh needs network namespaces and sshd: {reason}", file=sys.stderr)
                return 2
            (tmp / "netns").mkdir()
            cluster = stack.enter_context(build_netns_cluster(tmp / "netns"))
            ssh_inv = cluster.write_inventory(tmp / "ssh-inventory.toml", hosts=[0, 1, 2, 3])
        for i in range(a.trials):
            t = Trial(i, rng.choice(TARGETS), round(rng.uniform(0.5, a.max_delay), 2))
            cwd = tmp / f"trial{i}"
            cwd.mkdir()
            inv = ssh_inv or write_local_inventory(cwd / "inventory.toml", cwd / "work")
            start = time.monotonic()
            run_trial(t, cwd, inv, roots, rng)
            verdict = "ok" if not t.problems else "FAILED"
            print(f"trial {i}: kill {t.target} at {t.at_s:.2f} s ({t.killed or 'run ended first'}): "
                  f"{verdict} in {time.monotonic() - start:.0f} s", flush=True)
            for p in t.problems:
                print(f"  - {p}", flush=True)
            survived += not t.problems
    print(f"survived {survived}/{a.trials} trials")
    return 0 if survived == a.trials else 1


if __name__ == "__main__":
    sys.exit(main())
