"""The results store keeps what it was given, whatever goes wrong (issue 13): atomic writes are
fsynced (file before its rename, folder after), a corrupt finished cell keeps its history, a
full disk or a bad fact sheet while recording keeps the collected logs and the run goes on,
a host whose logs did not come back keeps its run dir (``pmctl stop --purge`` removes it), and
two runs never write into one results folder at once."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.jsonio import write_json_atomic
from figures.cells import Cell, cell_folder
from figures.store import DONE, FAILED, MISSING, CellRecord, Staging, cell_status, is_done
from tests.orchestration.support import FAKE_ENGINE, fake_entry, pmctl_env, run_pmctl

CELL = Cell("fig15", "zb", ((2, 3),), 0.06)
# Two quick cells of the stand-in engine (a direct launcher: one process per "host").
TWO_CELLS = ["fig15", "--quick", "--methods", "zb", "--delays", "60,120", "--iters", "3", "--fault-at", "1",
             "--preset", "tiny"]
VARIANT = "results/tiny-it3-at1-direct/fig15/zb/2_3"


def _record(status: str, run_id: str, cell: Cell = CELL) -> CellRecord:
    return CellRecord(spec=cell.to_json(), spec_hash=cell.spec_hash, status=status, run_id=run_id,
                      started="t0", ended="t1")


def _committed(root: Path, status: str, run_id: str) -> Path:
    st = Staging(root, CELL)
    (st.path / "stage0.jsonl").write_text(f"{run_id}\n")
    return st.commit(_record(status, run_id))


# -- fsync ------------------------------------------------------------------------------


@pytest.fixture
def disk_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The real ``os.fsync`` and ``os.replace``, each call noted as (what, path) in order:
    a power cut cannot be staged in a test, the order of the calls that survive one can."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: str | Path, dst: str | Path) -> None:
        calls.append(("replace", str(Path(dst).resolve())))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", rename)
    return calls


def test_atomic_json_is_fsynced_before_its_rename_and_the_folder_after(tmp_path: Path, disk_calls: list) -> None:
    path = write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    renamed = disk_calls.index(("replace", str(path.resolve())))
    synced_files = [p for what, p in disk_calls[:renamed] if what == "fsync"]
    assert any(Path(p).name.startswith(".a.json.") for p in synced_files), disk_calls  # the temporary
    assert ("fsync", str(tmp_path.resolve())) in disk_calls[renamed:], disk_calls  # the rename itself


def test_a_commit_fsyncs_every_staged_file_before_the_cell_appears(tmp_path: Path, disk_calls: list) -> None:
    st = Staging(tmp_path, CELL)
    for s in range(2):
        (st.path / f"stage{s}.jsonl").write_text("{}\n")
    final = st.commit(_record(DONE, "r1")).resolve()
    into_place = disk_calls.index(("replace", str(final)))
    before = {Path(p).name for what, p in disk_calls[:into_place] if what == "fsync"}
    assert {"stage0.jsonl", "stage1.jsonl", "cell.json"} <= before, disk_calls
    assert ("fsync", str(final.parent)) in disk_calls[into_place:], disk_calls


# -- history survives ---------------------------------------------------------------------


def test_a_corrupt_finished_cell_keeps_its_history_on_the_next_commit(tmp_path: Path) -> None:
    _committed(tmp_path, DONE, "first")
    final = _committed(tmp_path, DONE, "second")  # first -> previous/first
    assert _committed(tmp_path, FAILED, "bad") == final / "attempts" / "bad"
    (final / "cell.json").write_bytes(b'{"status": "done", \xff')  # torn by a crash, say
    assert cell_status(tmp_path, CELL) == MISSING
    assert _committed(tmp_path, DONE, "third") == final
    assert json.loads((final / "cell.json").read_text())["run_id"] == "third"
    assert (final / "previous/first/stage0.jsonl").read_text() == "first\n"
    assert json.loads((final / "attempts/bad/cell.json").read_text())["status"] == FAILED
    corrupt = [p for p in (final / "attempts").iterdir() if p.name.endswith("-corrupt")]
    assert len(corrupt) == 1, list((final / "attempts").iterdir())
    assert (corrupt[0] / "stage0.jsonl").read_text() == "second\n"  # the corrupt cell itself, kept
    assert [p.name for p in final.parent.iterdir()] == ["0.06"]


# -- recording errors ---------------------------------------------------------------------


@contextmanager
def _tiny_tmpfs(where: Path, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    """A real small file system (root only): disk-full conditions without filling a disk,
    and a read-only one (which root cannot write either)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(fs: Path) -> None:
    """Fills ``fs`` to the last byte."""
    with open(fs / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(os.urandom(4096))
        except OSError:
            pass


def test_a_full_disk_while_recording_keeps_the_logs(tmp_path: Path, local_inventory: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from pmctl.cellrecord import record_cell
    from pmctl.cellstop import Teardown
    from pmctl.inventory import load_inventory
    from pmctl.session import Session

    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    with _tiny_tmpfs(tmp_path / "results") as root, Session(load_inventory(local_inventory)) as session:
        st = Staging(root, CELL)
        for s in range(4):
            (st.path / f"stage{s}.jsonl").write_text(f"log of stage {s}\n")
        _fill(root)
        rec = record_cell(session, CELL, "full-1", st, DONE, "", {}, "t0", Teardown())
        st.discard()  # what run_cell does after every cell: must not lose them
        assert rec.record.status == FAILED and "No space left on device" in rec.reason, rec.reason
        assert rec.folder == cell_folder(root, CELL) / "attempts" / "full-1"
        assert str(rec.folder) in rec.reason
        assert (rec.folder / "stage3.jsonl").read_text() == "log of stage 3\n"
        assert not is_done(root, CELL)


def test_op_log_lines_that_are_not_utf8_or_not_objects_are_skipped(tmp_path: Path, local_inventory: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pmctl.cellrecord import record_cell
    from pmctl.cellstop import Teardown
    from pmctl.inventory import load_inventory
    from pmctl.session import Session

    monkeypatch.setenv("PMCTL_STATE_DIR", str(tmp_path / ".pmctl"))
    from engine.oplog import OpLogWriter

    st = Staging(tmp_path / "results", CELL)
    for s in range(4):
        log = OpLogWriter(st.path / f"stage{s}.jsonl", s)
        log.iteration(0, schedule=[], fault={}, costs={})
        log.op(0, "F", 0, 0.0, 5.0 + s, "inline")
        log.close()
        good = log.path.read_bytes()
        log.path.write_bytes(b"\xff\xfe not utf-8\n[1, 2]\n\"text\"\n" + good + b"{\"kind\": \"op\", \"stage\": [\n")
    with Session(load_inventory(local_inventory)) as session:
        rec = record_cell(session, CELL, "junk-1", st, DONE, "", {}, "t0", Teardown())
    assert rec.record.status == DONE, rec.reason
    assert rec.record.iteration_ms == {"0": 8.0}
    assert is_done(tmp_path / "results", CELL)


def _junk_engine(tmp_path: Path, junk_bytes: int) -> str:
    """An engine entry: the stand-in engine, whose stage 0 first writes ``junk_bytes`` of
    incompressible data into the op-log folder (which the collect then has to carry)."""
    script = tmp_path / "junk_engine.py"
    script.write_text(
        "import os, runpy, sys\n"
        "out = sys.argv[sys.argv.index('--out') + 1]\n"
        "os.makedirs(out, exist_ok=True)\n"
        f"if os.environ['RANK'] == '0' and {junk_bytes}:\n"
        f"    open(os.path.join(out, 'junk.bin'), 'wb').write(os.urandom({junk_bytes}))\n"
        f"sys.argv[0] = {str(FAKE_ENGINE)!r}\n"
        f"runpy.run_path({str(FAKE_ENGINE)!r}, run_name='__main__')\n"
    )
    return fake_entry(tmp_path, iter_s=0.05).replace(str(FAKE_ENGINE), str(script))


def _cell_lines(stdout: str) -> list[dict]:
    return [d for d in map(json.loads, stdout.splitlines()) if d["type"] == "cell"]


@pytest.mark.slow
def test_a_bad_fact_sheet_fails_each_cell_with_one_reason_and_keeps_its_logs(tmp_path: Path,
                                                                          direct_inventory: Path) -> None:
    hosts = tmp_path / ".pmctl" / "hosts"
    hosts.mkdir(parents=True)
    (hosts / "stage0.json").write_bytes(b'{"python": "\xff"}')  # not UTF-8: reading it raises
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path, iter_s=0.05, gloo=False))
    r = run_pmctl(["run", *TWO_CELLS, "--json", "--inventory", str(direct_inventory)], tmp_path, env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    cells = _cell_lines(r.stdout)
    assert [c["status"] for c in cells] == [FAILED, FAILED], r.stdout  # the run went on
    for c in cells:
        assert "recording failed" in c["reason"] and "\n" not in c["reason"], c["reason"]
        kept = tmp_path / c["folder"]
        assert kept.parent.name == "attempts", kept
        assert sorted(p.name for p in kept.glob("stage*.jsonl")) == [f"stage{i}.jsonl" for i in range(4)]


# -- a host whose logs did not come back ----------------------------------------------------


@pytest.mark.slow
def test_a_failed_collect_keeps_the_run_dir_until_stop_purge(tmp_path: Path, direct_inventory: Path) -> None:
    work = tmp_path / "work"
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=_junk_engine(tmp_path, 512 * 1024))
    with _tiny_tmpfs(tmp_path / "results", "256k"):  # the collected tarball cannot fit
        r = run_pmctl(["run", *TWO_CELLS, "--json", "--inventory", str(direct_inventory)], tmp_path, env)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
        cells = _cell_lines(r.stdout)
        assert [c["status"] for c in cells] == [FAILED, FAILED], r.stdout
        kept_dirs = set()
        for c in cells:
            rec = json.loads((tmp_path / c["folder"] / "cell.json").read_text())
            assert rec["status"] == FAILED and rec["collect_failed"], rec
            assert "stage0" in rec["collect_failed"] and "No space left" in rec["collect_failed"]["stage0"]
            for host, d in rec["kept_run_dirs"].items():
                assert host in rec["collect_failed"]
                assert Path(d, "out", "stage0.jsonl").exists() and Path(d, "out", "junk.bin").exists()
                kept_dirs.add(d)
            assert "pmctl stop --purge" in c["reason"], c["reason"]
        assert len(kept_dirs) == 2  # one per cell: the first cell's leftover survived the second
        inv = ["--inventory", str(direct_inventory)]
        stop = run_pmctl(["stop", *inv], tmp_path, env)
        assert stop.returncode == 0, stop.stderr
        assert all(d in stop.stdout for d in kept_dirs) and "--purge" in stop.stdout, stop.stdout
        assert all(Path(d).is_dir() for d in kept_dirs)  # stop alone keeps them
        purge = run_pmctl(["stop", "--purge", *inv], tmp_path, env)
        assert purge.returncode == 0, purge.stderr
        assert not any(Path(d).exists() for d in kept_dirs), purge.stdout
        assert not list(work.glob("runs/*")), list(work.glob("runs/*"))
        assert run_pmctl(["stop", *inv], tmp_path, env).stdout.strip() == "nothing running"


def test_a_commit_whose_cell_is_in_place_has_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The new cell is renamed into place, then its parent folder cannot be fsynced (an I/O
    # error): the commit must report the cell it put in place, not a failure.
    import figures.store as store

    final = cell_folder(tmp_path, CELL)
    real = store.fsync_path

    def fsync_path(path: str | Path) -> None:
        if Path(path) == final.parent and final.exists():
            raise OSError(errno.EIO, "Input/output error")
        real(path)

    monkeypatch.setattr(store, "fsync_path", fsync_path)
    assert _committed(tmp_path, DONE, "r1") == final
    assert is_done(tmp_path, CELL) and json.loads((final / "cell.json").read_text())["run_id"] == "r1"
    assert _committed(tmp_path, DONE, "r2") == final  # over a finished cell (moved aside first)
    assert (final / "previous/r1/stage0.jsonl").read_text() == "r1\n"


def test_an_unwritable_results_or_state_folder_is_one_line(tmp_path: Path, local_inventory: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path))
    run = ["run", *TWO_CELLS, "--inventory", str(local_inventory)]
    r = run_pmctl([*run, "--results", "a-file/results"], tmp_path, env)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write into a-file/results: Not a directory" in lines[0], r.stderr
    with _tiny_tmpfs(tmp_path / "ro", read_only=True) as ro:
        r = run_pmctl(run, tmp_path, env | {"PMCTL_STATE_DIR": str(ro / "state")})
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"cannot write into {ro / 'state'}: Read-only file system" in lines[0], r.stderr
    assert not list(tmp_path.glob("work/runs/*"))  # nothing started


# -- one run per results folder -------------------------------------------------------------


def test_a_second_run_into_the_same_results_is_refused_and_plot_still_reads(
    tmp_path: Path, local_inventory: Path
) -> None:
    from pmctl.locks import results_lock

    results = tmp_path / "results"
    # another state folder (another checkout, another shell): only the results lock sees it
    env = pmctl_env(tmp_path, PMCTL_ENGINE_ENTRY=fake_entry(tmp_path)) | {"PMCTL_STATE_DIR": str(tmp_path / "other")}
    with results_lock(results):  # as a pmctl run writing its cells holds it
        r = run_pmctl(["run", *TWO_CELLS, "--inventory", str(local_inventory)], tmp_path, env)
        assert r.returncode == 2, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pid {os.getpid()}) is writing into results" in lines[0], r.stderr
        assert not list(tmp_path.glob("work/runs/*"))  # nothing started
        plot = run_pmctl(["plot", "fig15", "--quick", "--json", "--inventory", str(local_inventory)], tmp_path, env)
        assert plot.returncode == 0, plot.stderr
    with results_lock(results):  # released with the block
        pass


def test_the_results_lock_is_released_by_a_killed_holder(tmp_path: Path) -> None:
    from pmctl.locks import results_lock

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from pmctl.locks import results_lock\n"
         f"with results_lock(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        from pmctl.errors import UserError

        with pytest.raises(UserError, match=f"pid {holder.pid}"), results_lock(tmp_path):
            pass
    finally:
        holder.kill()
        holder.wait()
    with results_lock(tmp_path):
        pass

