"""A stand-in for ``engine.train`` launched by torchrun exactly like the engine: same flags,
writes ``<out>/stage<rank>.jsonl`` op records and heartbeats to the control plane. Runs in
well under a second per iteration so orchestration tests stay fast.

Checks the spec's shape against torchrun's environment (``--stages`` = WORLD_SIZE,
``--stages-per-host`` = LOCAL_WORLD_SIZE but on one machine, where every stage is local) and
ignores the other spec flags.

``--fake-config FILE`` (JSON, placed before the engine flags by the test's engine entry):
``iter_s`` seconds per iteration; ``fail_stage``: that stage exits 3 at iteration 1; ``gloo``:
rendezvous with gloo across the hosts first, as the engine does (costs a torch import).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    for flag in ("--out", "--trace", "--control", "--run-id", "--fake-config"):
        ap.add_argument(flag)
    for flag in ("--iterations", "--stages", "--stages-per-host"):
        ap.add_argument(flag, type=int)
    args, _spec = ap.parse_known_args()
    rank = int(os.environ["RANK"])
    one_machine = os.environ["LOCAL_WORLD_SIZE"] == os.environ["WORLD_SIZE"]  # the local cluster
    for flag, value, var in (("--stages", args.stages, "WORLD_SIZE"),
                             ("--stages-per-host", None if one_machine else args.stages_per_host, "LOCAL_WORLD_SIZE")):
        if value is not None and value != int(os.environ[var]):
            sys.stderr.write(f"fake engine: {flag} {value} but {var}={os.environ[var]}\n")
            return 2
    from engine.oplog import OpLogWriter
    from injector.control import ControlClient

    cfg = json.loads(open(args.fake_config).read()) if args.fake_config else {}
    if cfg.get("gloo"):
        import torch.distributed as dist

        # A real gloo rendezvous between the hosts (GLOO_SOCKET_IFNAME applies).
        dist.init_process_group("gloo")
        dist.barrier()
    step = float(cfg.get("iter_s", 0.2))
    fail_stage = cfg.get("fail_stage")
    client = ControlClient(args.control, args.run_id)
    log = OpLogWriter(Path(args.out) / f"stage{rank}.jsonl", rank)
    for it in range(args.iterations):
        if fail_stage is not None and int(fail_stage) == rank and it == 1:
            sys.stderr.write("injected failure\n")
            return 3
        log.iteration(it, schedule=[], fault={}, costs={})
        time.sleep(step)
        log.op(it, "F", 0, 0.0, step * 1000.0, "inline")
        client.heartbeat(rank, it, "train", step * 1000.0)
    log.close()
    if cfg.get("gloo"):
        dist.barrier()
        dist.destroy_process_group()
    # One write: the stages share the launcher's stdout, and torchrun runs them unbuffered
    # (print's text and newline would be two writes that other stages can split).
    sys.stdout.write(f"stage {rank} done\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
