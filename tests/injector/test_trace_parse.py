"""Trace parsing: good files, timelines, ``inf``, NIC crashes, time-based snapshots with
per-link delays, the Fault JSON, and every kind of bad line."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from injector.trace import (
    HEALTHY,
    Fault,
    Trace,
    TraceError,
    load_trace,
    parse_trace,
    trace_hash,
)


def test_single_fault_from_iteration():
    trace = parse_trace("7;2_3;0.06\n", num_stages=4)
    assert len(trace) == 1
    before, at = trace.fault_at(6), trace.fault_at(7)
    assert before.healthy and before.epoch == 0
    assert at.links == ((2, 3),) and at.delay_s == 0.06 and not at.crashed
    assert at.since_iteration == 7 and at.epoch == 1
    assert at.link_delays_s(4) == (0.0, 0.0, 0.06)
    assert trace.fault_at(100) == at


def test_timeline_with_comments_multiple_links_recovery_and_crash():
    text = """
    # a straggler appears, moves, recovers, then a NIC dies
    3;0_1,2_3;0.02   # two slow links
    5;1_2;0.12

    8;;0
    10;2_3;inf
    """
    trace = parse_trace(text, num_stages=4)
    assert [f.since_iteration for f in trace] == [3, 5, 8, 10]
    assert [f.epoch for f in trace] == [1, 2, 3, 4]
    assert trace.fault_at(4).link_delays_s(4) == (0.02, 0.0, 0.02)
    assert trace.fault_at(6).link_delays_s(4) == (0.0, 0.12, 0.0)
    assert trace.fault_at(9).healthy
    crash = trace.fault_at(10)
    assert crash.crashed and not crash.healthy
    assert crash.link_delays_s(4) == (0.0, 0.0, math.inf)
    assert trace.max_delay_s == 0.12


def test_reversed_pair_is_normalised_and_zero_delay_is_healthy():
    trace = parse_trace("1;3_2;0\n", num_stages=4)
    assert trace.fault_at(1).links == ((2, 3),)
    assert trace.fault_at(1).healthy


def test_round_trip_text_and_json():
    text = "3;0_1,2_3;0.05\n6;2_3;inf\n9;;0\n"
    trace = parse_trace(text, 4)
    assert parse_trace(trace.to_text(), 4) == trace
    for f in trace:
        blob = json.dumps(f.to_json(), allow_nan=False)  # strict JSON, even for a crash
        assert Fault.from_json(json.loads(blob)) == f


def test_empty_trace_is_always_healthy():
    trace = parse_trace("# nothing\n\n", 4)
    assert trace == Trace(()) and trace.fault_at(0).healthy and trace.max_delay_s == 0.0


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("7;2_3", 1, "3 fields"),
        ("7;2_3;0.1;x", 1, "3 fields"),
        ("seven;2_3;0.1", 1, "not an integer"),
        ("-1;2_3;0.1", 1, "negative"),
        ("1;2_3;fast", 1, "not a number"),
        ("1;2_3;nan", 1, "not a finite number"),
        ("1;2_3;-0.5", 1, "negative"),
        ("1;4_5;0.1", 1, "does not exist with 4 stages"),
        ("1;3_4;0.1", 1, "does not exist with 4 stages"),
        ("1;0_2;0.1", 1, "does not join adjacent"),
        ("1;2+3;0.1", 1, "form A_B"),
        ("1;2_3,;0.1", 1, "form A_B"),
        ("1;2_3,3_2;0.1", 1, "listed twice"),
        ("1;;0.1", 1, "no links"),
        ("# ok\n5;2_3;0.1\n3;;0", 3, "must increase"),
        ("5;2_3;0.1\n5;;0", 2, "must increase"),
    ],
)
def test_bad_lines_name_the_line_and_reason(text, lineno, reason):
    with pytest.raises(TraceError) as err:
        parse_trace(text, num_stages=4)
    msg = str(err.value)
    assert msg.startswith(f"line {lineno}:") and reason in msg


def test_trace_reads_links_and_delays_like_the_command_line():
    # one link/delay parser (injector.links): 2-3 and 3_2 are 2_3, as `--links 2-3` is;
    # seconds by default, 60ms and 0.06s read too
    want = parse_trace("5;2_3;0.06\n", num_stages=4)
    for text in ("5;2-3;0.06\n", "5;3_2;0.06\n", "5;2-3;60ms\n", "5;2_3;0.06s\n"):
        assert parse_trace(text, num_stages=4) == want
    assert parse_trace("5;0-1,2_3;0.03,inf\n", 4).fault_at(5).link_delays_s(4) == (0.03, 0.0, math.inf)


def test_load_trace_names_the_file(tmp_path):
    good = tmp_path / "good.trace"
    good.write_text("7;2_3;0.06\n")
    assert load_trace(good, 4).fault_at(7).delay_s == 0.06
    bad = tmp_path / "bad.trace"
    bad.write_text("7;2_9;0.06\n")
    with pytest.raises(TraceError, match=r"bad\.trace: line 1: link 2_9 does not join adjacent"):
        load_trace(bad, 4)
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "missing.trace", 4)


# -- NIC crash, per-link delays, time-based traces ------------------------------------------


def test_nic_crash_downs_every_link_until_a_later_line_replaces_it():
    trace = parse_trace("3;2_3;0.02\n5;;inf\n8;1_2;0.04\n", num_stages=4)
    nic = trace.fault_at(6)
    assert nic.nic_crash and nic.crashed and not nic.healthy and nic.links == ()
    assert nic.since_iteration == 5 and nic.epoch == 2
    assert nic.link_delays_s(4) == (math.inf,) * 3
    assert nic.to_line() == "5;;inf"
    after = trace.fault_at(8)  # the trace is a timeline: the NIC crash can end
    assert not after.nic_crash and after.link_delays_s(4) == (0.0, 0.04, 0.0)
    assert trace.max_delay_s == 0.04  # the crash adds no finite delay


def test_iteration_lines_take_one_delay_per_link_too():
    trace = parse_trace("4;2_3,0_1;0.06,inf\n", num_stages=4)
    f = trace.fault_at(4)
    assert f.links == ((0, 1), (2, 3)) and f.delays_s == (math.inf, 0.06)  # sorted with links
    assert f.link_delays_s(4) == (math.inf, 0.0, 0.06)
    assert f.crashed and not f.nic_crash and f.delay_s == 0.06  # the largest finite
    assert f.to_line() == "4;0_1,2_3;inf,0.06"


def test_time_based_lines_are_full_snapshots_with_per_link_delays():
    text = """
    # seconds from the start of the fault_at iteration
    0.0;2_3;0.04
    12.5;0_1,2_3;0.06,0.02
    13.0;0_1,1_2,2_3;0.03        # one delay for several links
    14.25;1_2,2_3;inf,0.01       # inf per link
    15.0;;inf                    # NIC crash
    16.5;;0                      # healthy
    """
    trace = parse_trace(text, num_stages=4)
    assert trace.kind == "time" and len(trace) == 6
    assert [f.at_s for f in trace] == [0.0, 12.5, 13.0, 14.25, 15.0, 16.5]
    assert [f.epoch for f in trace] == [1, 2, 3, 4, 5, 6]
    assert trace.snapshot_at(0.0).link_delays_s(4) == (0.0, 0.0, 0.04)
    assert trace.snapshot_at(12.49).epoch == 1
    assert trace.snapshot_at(12.5).link_delays_s(4) == (0.06, 0.0, 0.02)
    assert trace.snapshot_at(13.7).link_delays_s(4) == (0.03, 0.03, 0.03)
    down = trace.snapshot_at(14.25)
    assert down.link_delays_s(4) == (0.0, math.inf, 0.01) and down.crashed
    assert trace.snapshot_at(15.2).nic_crash
    assert trace.snapshot_at(99.0).healthy and trace.snapshot_at(99.0).epoch == 6
    assert trace.max_delay_s == 0.06
    assert parse_trace(trace.to_text(), 4) == trace  # times keep their decimal point


def test_time_trace_is_healthy_before_its_first_line_and_not_looked_up_by_iteration():
    trace = parse_trace("2.0;0_1;0.05\n", num_stages=4)
    before = trace.snapshot_at(1.999)
    assert before.healthy and before.epoch == 0
    assert trace.snapshot_at(2.0).link_delays_s(4) == (0.05, 0.0, 0.0)
    with pytest.raises(ValueError, match="by seconds"):
        trace.fault_at(3)
    with pytest.raises(ValueError, match="by iteration"):
        parse_trace("3;0_1;0.05\n", 4).snapshot_at(1.0)


def test_seconds_that_print_without_a_point_still_round_trip_as_time():
    trace = parse_trace("0.00001;0_1;0.05\n20.0;;0\n", num_stages=4)
    assert trace.to_text() == "0.00001;0_1;0.05\n20.0;;0\n"
    assert parse_trace(trace.to_text(), 4) == trace


@pytest.mark.parametrize(
    ("text", "lineno", "reason"),
    [
        ("1;;0.06", 1, "given with no links"),  # a finite delay needs links
        ("1;;0,0", 1, "given with no links"),
        ("1.5;;0.06", 1, "given with no links"),
        ("1;0_1,2_3;0.1,0.2,0.3", 1, "3 delays for 2 links"),
        ("1.0;0_1,1_2,2_3;0.1,0.2", 1, "2 delays for 3 links"),
        ("1.0;0_1;0.1,", 1, "not a number"),
        ("1.0;0_1;0.1,nan", 1, "not a finite number"),
        ("0.0;0_1;0.1\n5;;0", 2, "do not mix"),
        ("5;0_1;0.1\n# c\n6.5;;0", 3, "do not mix"),
        ("1.0;0_1;0.1\n1.0;;0", 2, "times must increase"),
        ("2.5;0_1;0.1\n1.25;;0", 2, "times must increase"),
        ("-1.5;0_1;0.1", 1, ">= 0"),
        ("inf.;0_1;0.1", 1, "not a number of seconds"),
        ("1e3;0_1;0.1", 1, "not an integer"),
    ],
)
def test_bad_new_lines_name_the_line_and_reason(text, lineno, reason):
    with pytest.raises(TraceError) as err:
        parse_trace(text, num_stages=4)
    msg = str(err.value)
    assert msg.startswith(f"line {lineno}:") and reason in msg and "\n" not in msg


def test_trace_hash_is_stable_and_content_addressed():
    text = "7;2_3;0.06\n"
    assert trace_hash(text) == hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    assert trace_hash(text) == "3694a2f022773c83"  # fixed: the identity of stored cells
    assert len(trace_hash("")) == 16 and trace_hash(text) != trace_hash("7;2_3;0.06")


@pytest.mark.parametrize(
    "fault",
    [
        Fault(((0, 1), (2, 3)), (0.06, math.inf), since_iteration=4, epoch=2),
        Fault(nic_crash=True, since_iteration=9, epoch=3),
        Fault(((1, 2),), (0.02,), epoch=5, since_iteration=11, at_s=12.5),
        Fault.uniform(((0, 1), (1, 2)), math.inf, since_iteration=2, epoch=1),
        HEALTHY,
    ],
)
def test_fault_json_round_trip_with_per_link_delays_and_nic_crash(fault):
    blob = json.dumps(fault.to_json(), allow_nan=False)  # strict JSON: inf travels as null
    back = Fault.from_json(json.loads(blob))
    assert back == fault
    assert back.link_delays_s(4) == fault.link_delays_s(4) and back.crashed == fault.crashed


def test_fault_reads_the_older_single_delay_json():
    old = {"links": "0_1,2_3", "delay_s": 0.05, "crashed": False, "since_iteration": 3,
           "epoch": 1}
    assert Fault.from_json(old) == Fault.uniform(((0, 1), (2, 3)), 0.05, 3, 1)
    down = Fault.from_json({**old, "delay_s": None, "crashed": True})
    assert down.link_delays_s(4) == (math.inf, 0.0, math.inf) and not down.nic_crash


def test_fault_keeps_links_and_delays_paired_and_refuses_a_mismatch():
    f = Fault(((2, 3), (0, 1)), (0.02, 0.05))
    assert f.links == ((0, 1), (2, 3)) and f.delays_s == (0.05, 0.02)
    with pytest.raises(ValueError, match="2 delays for 1 links"):
        Fault(((0, 1),), (0.1, 0.2))
    with pytest.raises(TypeError, match="one delay per link"):
        Fault(((0, 1),), 0.1)  # the old single-delay signature: Fault.uniform now
