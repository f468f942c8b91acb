"""The shared contracts: CLI start-up, method ids, cell naming, op-log iteration times."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from engine.methods import METHODS, UnknownMethodError, resolve_method
from engine.oplog import OpLogWriter, iteration_times_ms, read_records, read_typed, summarize
from engine.planner.ir import Op, OpKind, Schedule, ScheduleParseError
from figures.cells import Cell, rel_dir


def test_cli_imports_no_torch():
    code = (
        "import sys, pmctl.cli; "
        "heavy = [m for m in ('torch', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# The controller (`pip install .`, no `engine` extra) has no torch: everything it imports must
# import without it. Every module of these packages is imported, in one fresh interpreter.
_CONTROLLER_PACKAGES = ("pmctl", "pmctl.commands", "pmctl.transport", "figures", "engine.planner",
                        "injector")
_CONTROLLER_MODULES = ("engine.cellspec", "engine.methods", "engine.presets", "engine.oplog",
                       "engine.opkind", "engine.rendezvous", "engine.adapter")


def test_controller_modules_import_no_torch():
    code = f"""
import importlib, pkgutil, sys
names = list({_CONTROLLER_MODULES!r})
for pkg in {_CONTROLLER_PACKAGES!r}:
    mod = importlib.import_module(pkg)
    names += [pkg + "." + m.name for m in pkgutil.iter_modules(mod.__path__) if m.name != "__main__"]
for name in names:
    importlib.import_module(name)
    if "torch" in sys.modules:
        print("torch imported by", name)
        break
print(len(names), "modules")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "torch imported" not in out.stdout, out.stdout
    assert int(out.stdout.split()[-2]) > 40, out.stdout  # figures' and the planner's modules were found


def test_help_and_version_import_no_torch():
    for argv in (["pmctl", "--help"], ["pmctl", "--version"], ["pmctl", "run", "--help"]):
        code = (
            "import atexit, sys; "
            "atexit.register(lambda: print('TORCH' if 'torch' in sys.modules else 'clean')); "
            f"sys.argv = {argv!r}; from pmctl.cli import main; main()"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith("clean"), (argv, out.stdout[-200:])


def test_help_exits_zero():
    out = subprocess.run([sys.executable, "-m", "pmctl", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "pmctl" in out.stdout


def test_unknown_command_exits_two():
    out = subprocess.run([sys.executable, "-m", "pmctl", "no-such-command"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "name,expected",
    [("ZB-CPU-ReSchedule", "pipemorph"), ("zb-cpu", "pipemorph-cpu"), ("ALL-CPU", "all-cpu"),
     ("1F1B", "1f1b"), ("PipeMorph", "pipemorph"), ("zb", "zb")],
)
def test_artifact_aliases(name, expected):
    assert resolve_method(name).id == expected


def test_unknown_method_names_choices():
    with pytest.raises(UnknownMethodError, match="pipemorph-cpu"):
        resolve_method("fast")
    assert set(METHODS) == {"1f1b", "zb", "pipemorph-cpu", "pipemorph", "pipemorph+", "all-cpu"}


def test_schedule_text_round_trip():
    text = "F0 F1 B0 W0 F2 B1 W1 B2 W2\nF0 B0 F1 B1 F2 B2 W0 W1 W2"
    sched = Schedule.from_text(text)
    assert sched.num_microbatches == 3
    assert sched.to_text() == text
    assert sched.warmup() == [2, 1]
    assert sched.split_backward
    assert Schedule.from_lists(sched.to_lists()) == sched
    assert str(Op(OpKind.BW, 11)) == "BW11" and Op.parse("BW11") == Op(OpKind.BW, 11)
    with pytest.raises(ScheduleParseError, match="X3"):
        Op.parse("X3")


def test_cell_paths_and_trace():
    cell = Cell("fig17", "pipemorph", ((0, 1), (2, 3)), 0.06, fault_at=7)
    assert str(rel_dir(cell)) == "pipemorph/0_1,2_3/0.06"
    assert cell.fault_text() == "7;0_1,2_3;0.06\n"
    healthy = Cell("fig20", "zb")
    assert str(rel_dir(healthy)) == "zb/none/0" and healthy.fault_text() == ""
    crash = Cell("x", "pipemorph", ((1, 2),), math.inf)
    assert crash.to_json()["delay_s"] == "inf" and str(rel_dir(crash)).endswith("/inf")
    assert crash.fault_text() == "2;1_2;inf\n"
    traced = Cell("x", "zb", trace="0123abcd", trace_text="1;;inf\n")
    assert str(rel_dir(traced)) == "zb/trace/0123abcd" and traced.fault_text() == "1;;inf\n"
    json.dumps(cell.to_json())


def test_oplog_iteration_time_is_max_over_stages(tmp_path):
    for stage, ends in ((0, [10.0, 40.0]), (1, [25.0, 55.5])):
        w = OpLogWriter(tmp_path / f"stage{stage}.jsonl", stage)
        for it in range(3):
            w.iteration(it, schedule=[], fault={}, costs=None)
            for k, end in enumerate(ends):
                w.op(it, "F", k, end - 5, end + it, "inline")
        w.close()
    # a line that is not an object, one that is not UTF-8, and a torn last line (a crash
    # mid-write) are skipped, not fatal
    with (tmp_path / "stage1.jsonl").open("ab") as fh:
        fh.write(b'[1]\n{"kind": "op", "op": "\xff"}\n{"kind": "op", "iter": 9')
    times = iteration_times_ms(read_records(tmp_path))
    assert times == {0: 55.5, 1: 56.5, 2: 57.5}
    ops, heads = read_typed(tmp_path)
    assert iteration_times_ms([*ops, *heads]) == times and {r.op for r in ops} == {OpKind.F}
    stats = summarize(times, last=2)
    assert stats.iterations_used == [1, 2]
    assert stats.mean_ms == pytest.approx(57.0)
