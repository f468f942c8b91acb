"""A stage entry that records where it runs, then runs the real engine:

    stage_probe.py PROBE_DIR [engine options]

writes ``PROBE_DIR/rank<RANK>.json`` (the rendezvous environment, the working directory,
which is the run dir on the host that started it, and the network namespace) and calls
``engine.train.main`` with the rest of the arguments.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    probe = Path(sys.argv[1])
    rec = {k: v for k, v in os.environ.items() if k in (
        "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
        "MASTER_ADDR", "GLOO_SOCKET_IFNAME")}
    rec.update(cwd=os.getcwd(), netns=os.readlink("/proc/self/ns/net"), pid=os.getpid())
    tmp = probe / f".rank{rec['RANK']}"
    tmp.write_text(json.dumps(rec))
    tmp.rename(probe / f"rank{rec['RANK']}.json")
    from engine.train import main as engine_main

    engine_main(sys.argv[2:])


if __name__ == "__main__":
    main()
