"""Fixtures for the orchestration tests: local inventories and four real SSH hosts in network
namespaces (session-scoped, skipped with the reason where the machine cannot build them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestration.support import NetnsCluster, build_netns_cluster, why_no_netns, write_local_inventory


@pytest.fixture
def local_inventory(tmp_path: Path) -> Path:
    """The embedded local cluster (its default launcher, fork), with its work dirs in tmp_path."""
    return write_local_inventory(tmp_path / "inventory.toml", tmp_path / "work")


@pytest.fixture
def torchrun_inventory(tmp_path: Path) -> Path:
    """As ``local_inventory`` with one torchrun agent for the four stages."""
    return write_local_inventory(tmp_path / "inventory.toml", tmp_path / "work", "torchrun")


@pytest.fixture
def direct_inventory(tmp_path: Path) -> Path:
    """As ``local_inventory`` with the direct launcher (no torchrun agent)."""
    return write_local_inventory(tmp_path / "inventory.toml", tmp_path / "work", "direct")


@pytest.fixture(scope="session")
def netns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    """Four SSH hosts for the whole session (skipped with the reason where impossible)."""
    reason = why_no_netns()
    if reason:
        pytest.skip(reason)
    with build_netns_cluster(tmp_path_factory.mktemp("netns")) as cluster:
        yield cluster

