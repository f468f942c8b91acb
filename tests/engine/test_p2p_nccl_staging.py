"""The delegate path's host staging (``engine.p2p.staging``) with its CPU stand-in for the
pinned-memory copy stream: the same pool and ready/wait code the CUDA path runs. A staged
buffer is the wire message once ready; a buffer is reused only after it was released (its
send completed); copies complete in hand-over order; a bad tensor is refused at hand-over."""

from __future__ import annotations

import pytest
import torch

from engine.p2p.messages import MessageSpec, pack, unpack
from engine.p2p.staging import HostStaging, ThreadCopier, make_staging

SPEC = MessageSpec((2, 16, 32), torch.float32)


@pytest.fixture
def staging():
    s = make_staging(SPEC, torch.device("cpu"))
    yield s
    s.close()


def test_cpu_gets_the_copy_thread_stand_in(staging) -> None:
    assert isinstance(staging.copier, ThreadCopier) and not staging.copier.pin


def test_a_ready_buffer_is_the_wire_message(staging) -> None:
    t = torch.randn(SPEC.shape)
    staged = staging.stage(t, 12.5, 3)
    staged.ready.wait()
    assert torch.equal(staged.buf, pack(t, 12.5, 3, SPEC))
    msg = unpack(staged.buf, SPEC)
    assert (msg.sent_ms, msg.mb) == (12.5, 3) and torch.equal(msg.tensor, t)


def test_buffers_are_reused_only_after_release(staging) -> None:
    a = staging.stage(torch.ones(SPEC.shape), 0.0, 0)
    b = staging.stage(torch.full(SPEC.shape, 2.0), 0.0, 1)  # a still in flight: its own buffer
    a.ready.wait()
    b.ready.wait()
    assert staging.allocated == 2 and a.buf.data_ptr() != b.buf.data_ptr()
    assert unpack(a.buf, SPEC).tensor.eq(1.0).all()  # b's copy did not touch a's buffer
    staging.release(a)
    c = staging.stage(torch.full(SPEC.shape, 3.0), 0.0, 2)
    c.ready.wait()
    assert staging.allocated == 2 and c.buf.data_ptr() == a.buf.data_ptr()
    assert unpack(c.buf, SPEC).tensor.eq(3.0).all() and unpack(b.buf, SPEC).tensor.eq(2.0).all()


def test_copies_complete_in_hand_over_order(staging) -> None:
    tensors = [torch.full(SPEC.shape, float(i)) for i in range(50)]
    staged = [staging.stage(t, float(i), i) for i, t in enumerate(tensors)]
    staged[-1].ready.wait()
    # one copy thread, first in first out: the last ready means every earlier one is
    assert all(s.ready.event.is_set() for s in staged)
    for i, s in enumerate(staged):
        msg = unpack(s.buf, SPEC)
        assert msg.mb == i and msg.tensor.eq(float(i)).all()


def test_a_tensor_of_another_shape_is_refused_at_hand_over(staging) -> None:
    with pytest.raises(ValueError, match="micro-batch 4 is .* agreed"):
        staging.stage(torch.zeros(3), 0.0, 4)
    assert staging.allocated == 0


def test_a_failed_copy_is_raised_by_the_wait() -> None:
    staging = HostStaging(MessageSpec((4,), torch.float32), ThreadCopier())
    try:
        # the header fits but the payload view is too small: the copy thread fails
        bad = staging.copier.copy(torch.empty(2, dtype=torch.uint8), torch.zeros(4))
        with pytest.raises(RuntimeError, match="host staging copy failed"):
            bad.wait()
    finally:
        staging.close()
