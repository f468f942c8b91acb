"""Does 1F1B's p2p pairing explain why our 1F1B suffers less from a slow link than the
artifact's (issue 12)? The artifact (Megatron-LM) pairs each 1F1B send with the next op's
receive in one exchange it waits on as a whole; ours posted every receive early.

Two measurements:
- model: an event model of 1F1B (S=4, N=12, paced costs) under each pairing, with and without
  NCCL's rendezvous (a send completes once its receive is posted), and with the extra delay
  the artifact's logs show (below); printed as added ms per micro-batch over the healthy run,
  against the artifact's slope (its fig15 1F1B logs: stage 2's exchange with stage 1, a
  healthy link, also takes c);
- engine: fig15's cells (link 2_3, 60 and 120 ms, the local default preset cpu-small, 8
  iterations, fault from 2, mean of the last 5) for 1F1B with both pairings and for ZB, and
  the 1F1B/ZB ratios against the artifact's (4.596/3.660 = 1.256 at 120 ms, 3.139/2.408 =
  1.304 at 60 ms).

Usage: .venv/bin/python bench/bench_1f1b_pairing.py [--rounds 1] [--delays 60,120]
       [--semantics native|nccl] [--model-only]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.oplog import iteration_times_ms, read_records  # noqa: E402
from engine.p2p.batched import megatron_exchanges, op_input, op_output  # noqa: E402
from engine.planner.generators import one_f_one_b  # noqa: E402

ARTIFACT = {60: (3.139, 2.408), 120: (4.596, 3.660)}  # ms -> (1F1B, ZB) seconds, link 2_3
ARTIFACT_HEALTHY_1F1B = 1.550
Delay = Callable[[int, int], float]  # (sender, receiver) -> ms


# -- the model -------------------------------------------------------------------------------

def model_1f1b_ms(S: int, N: int, f: float, bw: float, delay: Delay, pairing: str,
                  rendezvous: bool) -> float:
    """Iteration time of 1F1B where each stage runs its ops and p2p strictly in order. A
    sender is held for its delay, then posts; early: every receive is posted at 0 and sends
    are not waited on; megatron: the exchanges of ``engine.p2p.batched``, each waited on as a
    whole (a send also for its receive's posting when ``rendezvous``)."""
    sent: dict[tuple, float] = {}  # (direction, mb, sender) -> post time
    posted: dict[tuple, float] = {}  # (direction, mb, sender) -> receive posted at
    progs = []
    for s, ops in enumerate(one_f_one_b(S, N).stages):
        ex = megatron_exchanges(ops, s, S) if pairing == "megatron" else {}
        prog: list[tuple] = []
        for i, op in enumerate(ops):
            inp = op_input(op, s, S)
            if inp is not None:
                key = (inp.direction, inp.mb, inp.peer)
                if not any(e.recv is not None and (e.recv.direction, e.recv.mb, e.recv.peer) == key
                           for e in ex.values()):
                    prog.append(("recv", key))
            prog.append(("compute", f if op.kind.value == "F" else bw))
            out = op_output(op, s, S)
            if out is not None:
                send = (out.direction, out.mb, s)
                pair = ex[i].recv if i in ex else None
                recv = None if pair is None else (pair.direction, pair.mb, pair.peer)
                prog.append(("exchange", send, recv, delay(s, out.peer)))
        progs.append(prog)
    if pairing == "early":
        for prog in progs:
            for step in prog:
                if step[0] == "exchange":
                    posted[step[1]] = 0.0
    t, pc = [0.0] * S, [0] * S
    while any(pc[s] < len(progs[s]) for s in range(S)):
        moved = False
        for s in range(S):
            while pc[s] < len(progs[s]):
                step = progs[s][pc[s]]
                if step[0] == "compute":
                    t[s] += step[1]
                elif step[0] == "recv":
                    if pairing == "megatron":
                        posted.setdefault(step[1], t[s])
                    if step[1] not in sent:
                        break
                    t[s] = max(t[s], sent[step[1]])
                else:
                    _, send, recv, d = step
                    post = sent.get(send, t[s] + d)
                    sent[send] = post
                    if recv is not None:
                        posted.setdefault(recv, post)
                    waits = [post]
                    if pairing == "megatron" and rendezvous:
                        if send not in posted:
                            break
                        waits.append(posted[send])
                    if pairing == "megatron" and recv is not None:
                        if recv not in sent:
                            break
                        waits.append(sent[recv])
                    t[s] = max(waits)
                pc[s] += 1
                moved = True
        if not moved:
            raise RuntimeError("model deadlocked")
    return max(t)


def model_report(f: float, bw: float, delays: list[int]) -> None:
    S, N, link = 4, 12, 2

    def on_link(c: float) -> Delay:
        return lambda a, b: c if min(a, b) == link else 0.0

    def artifact_like(c: float) -> Delay:  # and the link's lower stage to its other side
        return lambda a, b: c if min(a, b) == link or (a == link and b == link - 1) else 0.0

    variants = [("early (ours)", "early", False, on_link),
                ("megatron, eager sends", "megatron", False, on_link),
                ("megatron, rendezvous", "megatron", True, on_link),
                ("megatron + stage-2 sends to 1 delayed", "megatron", True, artifact_like)]
    print(f"model: 1F1B S={S} N={N} F={f:g} BW={bw:g} ms, link {link}_{link + 1}; "
          "added ms per micro-batch over healthy (c = delay)")
    for name, pairing, rdv, make in variants:
        base = model_1f1b_ms(S, N, f, bw, make(0.0), pairing, rdv)
        row = [(model_1f1b_ms(S, N, f, bw, make(c), pairing, rdv) - base) / N for c in delays]
        print(f"  {name:<40}" + "".join(f"{c:>5} ms: {x:6.1f} ({x / c:4.2f} c)" for c, x in zip(delays, row)))
    art = [(ARTIFACT[c][0] - ARTIFACT_HEALTHY_1F1B) * 1000 / N for c in delays if c in ARTIFACT]
    print(f"  {'artifact (A10 logs)':<40}" + "".join(
        f"{c:>5} ms: {x:6.1f} ({x / c:4.2f} c)" for c, x in zip(delays, art)))


# -- the engine ------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback TCP port free now (the job's rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cell(method: str, delay_ms: int, pairing: str | None, out: Path, semantics: str) -> float:
    """One fig15 cell (local default shape) on engine.forkrun; the mean of the last 5."""
    cmd = [sys.executable, "-m", "engine.forkrun", "--nnodes", "1", "--nproc-per-node", "4",
           "--master-port", str(free_port()), "-m", "engine.train",
           "--preset", "cpu-small", "--method", method, "--links", "2_3",
           "--delay", str(delay_ms / 1000.0), "--fault-at", "2", "--iterations", "8",
           "--out", str(out), "--p2p-semantics", semantics,
           *(["--p2p-pairing", pairing] if pairing else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"{method} {pairing}: engine failed with exit {proc.returncode}")
    t = iteration_times_ms(read_records(out))
    return statistics.fmean(t[i] for i in sorted(t)[-5:]) / 1000.0


def engine_report(delays: list[int], rounds: int, semantics: str) -> None:
    runs = [("1f1b", "early"), ("1f1b", "megatron"), ("zb", None)]
    got: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-1f1b-") as tmp:
        for r in range(rounds):
            for method, pairing in runs:
                for d in delays:
                    out = Path(tmp) / f"{method}-{pairing}-{d}-{r}"
                    got.setdefault((method, pairing, d), []).append(run_cell(method, d, pairing, out, semantics))
    med = {k: statistics.median(v) for k, v in got.items()}
    print(f"engine: fig15 cells, link 2_3, cpu-small, 8 iterations, fault from 2, mean of "
          f"the last 5; p2p semantics {semantics}; median of {rounds} round(s), seconds")
    print(f"  {'delay':<8}{'1F1B early':>12}{'1F1B megatron':>15}{'ZB':>8}"
          f"{'early/ZB':>10}{'megatron/ZB':>13}{'artifact':>10}")
    for d in delays:
        e, m, z = med[("1f1b", "early", d)], med[("1f1b", "megatron", d)], med[("zb", None, d)]
        art = ARTIFACT[d][0] / ARTIFACT[d][1] if d in ARTIFACT else float("nan")
        print(f"  {d:>4} ms {e:>12.3f}{m:>15.3f}{z:>8.3f}{e / z:>10.3f}{m / z:>13.3f}{art:>10.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delays", default="60,120", help="ms on link 2_3")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--semantics", default="native", choices=("native", "nccl"),
                   help="--p2p-semantics of the engine runs (fig15 runs native)")
    p.add_argument("--model-only", action="store_true")
    a = p.parse_args()
    delays = [int(x) for x in a.delays.split(",") if x]
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    model_report(30.0, 54.0, delays)  # cpu-small's pace: F 30, B 36 + W 18
    if not a.model_only:
        engine_report(delays, a.rounds, a.semantics)
        print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
