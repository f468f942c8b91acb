"""The clock offset estimate (the multi-host ping-pong) on real gloo processes."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from engine.clock import SharedClock, estimate_offsets


def _worker(rank: int, world: int, store_path: str, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank,
                            world_size=world)
    try:
        offsets = estimate_offsets(rank, world, force=True)
        clock = SharedClock(offset_s=offsets[rank])
        clock.sync()
        with open(f"{out_path}.{rank}", "w") as fh:
            json.dump({"offsets": offsets, "t0": clock.t0, "now_ms": clock.now_ms()}, fh)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ping_pong_offsets_on_one_host_are_near_zero_and_origin_agreed(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), str(tmp_path / "out")),
             nprocs=world, join=True)
    rows = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(world)]
    offsets = rows[0]["offsets"]
    assert all(r["offsets"] == offsets for r in rows)  # every rank has the same table
    # One host, one clock: the estimate is bounded by half the best round trip, a few ms
    # here; the bound leaves room for a loaded machine (a real error is seconds off).
    assert offsets[0] == 0.0 and all(abs(o) < 0.1 for o in offsets), offsets
    assert len({r["t0"] for r in rows}) == 1  # one iteration origin for all ranks
    # Nobody is before the agreed origin by more than the offset estimate's error.
    assert all(r["now_ms"] > -100.0 for r in rows), rows
