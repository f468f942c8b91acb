"""Trace parsing: good files, timelines, ``inf``, and every kind of bad line."""

from __future__ import annotations

import json
import math

import pytest

from injector.trace import Fault, Trace, TraceError, load_trace, parse_trace


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
        ("1;2-3;0.1", 1, "form A_B"),
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
