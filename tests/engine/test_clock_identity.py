"""Which ranks share a clock: machines are told apart by their kernel's boot id, not their
hostname, so VMs cloned from one image (one hostname, two clocks) get their offsets measured."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from engine import clock
from engine.clock import BOOT_ID, clock_groups, estimate_offsets, host_identity, identity_key

SKEW_S = 5.0  # how far rank 1's clock is ahead of rank 0's in the cloned-VM job


def test_same_hostname_different_boot_ids_are_different_clocks(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("0b3f6c0e-1d2a-4c6e-9a55-5d1f0f4e2a11\n")
    b.write_text("7d9e1f20-5c3b-4e8a-b1c2-9e0f3a4b5c6d\n")
    # two cloned VMs: one hostname, two boots; two ranks per VM
    ids = [host_identity(a), host_identity(a), host_identity(b), host_identity(b)]
    assert clock_groups(ids) == [0, 0, 2, 2]
    assert clock_groups([identity_key(i) for i in ids]) == [0, 0, 2, 2]  # what all_gather carries
    assert clock_groups(["x"] * 3) == [0, 0, 0]


def test_the_boot_id_is_read_and_the_hostname_is_only_the_fallback(tmp_path: Path) -> None:
    if BOOT_ID.exists():
        assert host_identity() == f"boot {BOOT_ID.read_text().strip()}"
    assert host_identity(tmp_path / "absent") == f"host {socket.gethostname()}"


def _cloned_vm(rank: int, world: int, store: str, boot_ids: list[str], out: str) -> None:
    """One rank on a "VM" of its own: its own boot id, this machine's hostname, and (rank 1)
    a clock SKEW_S ahead."""
    clock.BOOT_ID = Path(boot_ids[rank])
    if rank == 1:
        real = time.perf_counter
        time.perf_counter = lambda: real() + SKEW_S  # engine.clock reads time.perf_counter
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        offsets = estimate_offsets(rank, world)
        Path(f"{out}.{rank}").write_text(json.dumps(offsets))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_cloned_vms_with_one_hostname_get_their_offset_measured(tmp_path: Path) -> None:
    boot_ids = [tmp_path / "boot0", tmp_path / "boot1"]
    boot_ids[0].write_text("11111111-2222-4333-8444-555555555555\n")
    boot_ids[1].write_text("66666666-7777-4888-9999-aaaaaaaaaaaa\n")
    mp.spawn(_cloned_vm, args=(2, str(tmp_path / "store"), [str(p) for p in boot_ids], str(tmp_path / "out")),
             nprocs=2, join=True)
    offsets = [json.loads((tmp_path / f"out.{r}").read_text()) for r in range(2)]
    assert offsets[0] == offsets[1]  # every rank has the same table
    # rank 1 reads rank 0's clock by taking SKEW_S off its own (within the ping-pong's error,
    # milliseconds here; hostname-keyed, both "VMs" were one host and got 0.0)
    assert offsets[0][0] == 0.0 and abs(offsets[0][1] + SKEW_S) < 0.5, offsets
