"""One writer per store: real `oceandata` processes against a real Icechunk store of COBE-SST2.

The lock is held by this test process with :func:`store_lock` (or by a real concurrent
`oceandata ingest --append`) and the other writer is a real subprocess; what the second
writer gets is judged by its exit code, its stderr and the store's log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from oceandata.errors import DataError
from oceandata.governance.locks import StoreLocked, lock_path, store_lock
from oceandata.ingest import ingest, log, open_store, tag

OCEANDATA = [sys.executable, "-m", "oceandata.cli"]


def cobe(sample, *years: int) -> list[str]:
    return [str(sample(f"gridded/cobe-sst2/year{y}.nc")) for y in years]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OCEANDATA, *args], capture_output=True, text=True, timeout=600)


def one_line(proc: subprocess.CompletedProcess[str] | tuple[int, str]) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    code, stderr = (proc.returncode, proc.stderr) if hasattr(proc, "stderr") else proc
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("oceandata: error: "), stderr
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def _own_data_dir(tmp_path_factory):
    """The audit records of these writes go to a data folder of this module, and so do
    those of the `oceandata` subprocesses (they inherit the environment)."""
    from oceandata.config import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OCEANDATA_DATA_DIR", str(tmp_path_factory.mktemp("locks-data")))
        get_settings(reload=True)
        yield
    get_settings(reload=True)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory, sample) -> Path:
    """COBE-SST2 1950 in map chunks, made once; each test works on a copy."""
    store = tmp_path_factory.mktemp("locks-base") / "cobe.icechunk"
    ingest(cobe(sample, 1950), store, name="cobe", chunks="map", check=False)
    return store


@pytest.fixture
def store(base_store, tmp_path) -> Path:
    copy = tmp_path / "cobe.icechunk"
    shutil.copytree(base_store, copy)
    return copy


def test_writers_refuse_while_another_holds_the_lock(store, tmp_path, sample) -> None:
    """ingest --append, store tag and store rechunk: exit 2, one line naming the holder."""
    before = [v.id for v in log(store)]
    series = tmp_path / "cobe-ts.icechunk"
    holding = "oceandata ingest --append archive/*.nc (held by the test)"
    with store_lock(store, command=holding) as lock, \
            store_lock(series, command=holding):
        assert lock == tmp_path / ".cobe.icechunk.lock"  # beside the store, not inside
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        refused = [run("ingest", *cobe(sample, 1951), "--store", str(store), "--append",
                       "--no-check"),
                   run("store", "tag", str(store), "v1"),
                   run("store", "rechunk", str(store), "--to", str(series))]
    for proc in refused:
        line = one_line(proc)
        assert f"is being written by pid {os.getpid()} on host {socket.gethostname()}" in line
        assert f"(`{holding}`" in line and "run the command again" in line
    assert [v.id for v in log(store)] == before and not log(store)[0].tags
    assert not series.exists()
    assert not lock.exists()  # released: nothing left beside the store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cobe.icechunk"]


def test_a_stale_lock_file_is_taken_over(store, sample) -> None:
    """A lock file naming a dead process, with no OS lock held: the next writer takes it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = lock_path(store)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                "command": "oceandata ingest --append killed.nc",
                                "user": "someone", "since": "2026-01-01T00:00:00+00:00"}))
    proc = run("store", "tag", str(store), "after-crash")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "taking over the stale lock" in proc.stderr and f"pid {dead.pid}" in proc.stderr
    assert log(store)[0].tags == ("after-crash",)
    assert not lock.exists()


def test_two_concurrent_appends_never_race(store, sample) -> None:
    """Two real `ingest --append` started together: each succeeds with one commit, or is
    refused in one line; the store holds exactly the successful appends and verifies."""
    before = len(log(store))
    procs = {y: subprocess.Popen([*OCEANDATA, "ingest", *cobe(sample, y), "--store",
                                  str(store), "--append", "--no-check"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for y in (1951, 1952)}
    errs = {y: proc.communicate(timeout=600)[1] for y, proc in procs.items()}
    years = {y: (proc.returncode, errs[y]) for y, proc in procs.items()}
    won = [y for y, (code, _) in years.items() if code == 0]
    for code, err in years.values():
        assert "Traceback" not in err, err
        if code != 0:  # lost the lock, or came second with times before the store's last
            line = one_line((code, err))
            assert "is being written by pid" in line or "not after the store's last" in line
    assert won, years
    assert len(log(store)) == before + len(won)
    ds = open_store(store)
    ref = xr.concat([xr.open_dataset(p) for p in cobe(sample, 1950, *sorted(won))], dim="time")
    np.testing.assert_array_equal(ds.time.values, ref.time.values)
    np.testing.assert_array_equal(ds.sst.values, ref.sst.values)
    verified = run("store", "verify", str(store))
    assert verified.returncode == 0 and "OK" in verified.stdout, verified.stderr


def test_commit_conflict_outside_the_lock_is_one_data_error_and_commits_are_audited(
        store, monkeypatch) -> None:
    """Someone writing the store without oceandata's lock: the loser's commit is a DataError
    (one line at the CLI), not a raw icechunk.ConflictError; successes are audited."""
    import zarr

    from oceandata.governance import audit
    from oceandata.ingest.store import commit, open_repository

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(audit, "record", lambda action, **kw: calls.append((action, kw)))
    repo = open_repository(store)
    first, second = repo.writable_session("main"), repo.writable_session("main")
    for n, session in enumerate((first, second)):
        zarr.open_group(session.store, mode="r+").attrs["note"] = f"writer {n}"
    snapshot = commit(first, store, "outside writer", metadata={}, command="test")
    with pytest.raises(DataError, match=r"changed by another writer while this one was "
                                        r"writing.*nothing was committed"):
        commit(second, store, "the loser", metadata={}, command="test")
    assert log(store)[0].id == snapshot
    # reentrant: a tag inside a held lock of the same thread does not deadlock
    with store_lock(store, command="test: tag inside the lock"):
        tagged = tag(store, "inside", command="test tag")
    assert tagged == snapshot
    assert [a for a, _ in calls] == ["store.commit", "store.tag"]
    target = f"store:{os.path.abspath(store)}"
    assert all(kw["target"] == target for _, kw in calls)
    assert calls[0][1]["detail"] == {"snapshot": snapshot, "message": "outside writer",
                                     "command": "test"}
    assert calls[1][1]["detail"] == {"snapshot": snapshot, "tag": "inside",
                                     "command": "test tag"}
    assert calls[1][1]["source"] == f"cli@{socket.gethostname()}"


def test_wait_takes_the_lock_once_it_is_free(store) -> None:
    """--wait polls the OS lock: refused while held past the deadline, taken when free."""
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys\nfrom oceandata.governance.locks import store_lock\n"
                               f"with store_lock({str(store)!r}, command='holder'):\n"
                               "    print('held', flush=True)\n    sys.stdin.readline()\n"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLocked, match=re.escape("(`holder`")):
            tag(store, "too-early", wait=0.3)
        waiting = subprocess.Popen([*OCEANDATA, "store", "tag", str(store), "later",
                                    "--wait", "300"], stderr=subprocess.PIPE, text=True)
        holder.stdin.close()  # the holder finishes; the waiting tag gets the lock
        assert holder.wait(timeout=60) == 0
        assert waiting.wait(timeout=300) == 0, waiting.stderr.read()
    finally:
        holder.kill()
    assert log(store)[0].tags == ("later",)


def test_a_lock_inherited_by_a_process_left_running_is_named_not_broken(store, caplog) -> None:
    """The recorded holder died but a process it forked still holds the OS lock: the
    message says so and how to find it; once that process ends the lock is taken over."""
    script = ("import os, sys\nfrom oceandata.governance.locks import store_lock\n"
              f"with store_lock({str(store)!r}, command='forking writer'):\n"
              "    if os.fork() == 0:\n"
              "        print('child', flush=True)\n        sys.stdin.readline()\n"
              "        os._exit(0)\n"
              "    os._exit(0)\n")  # the parent dies holding the lock, releasing nothing
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "child"
        assert parent.wait(timeout=60) == 0
        with pytest.raises(StoreLocked, match=rf"left running on this host by pid "
                                              rf"{parent.pid} \(`forking writer`\), which is "
                                              r"gone; find it with `fuser -v "):
            tag(store, "blocked")
    finally:
        parent.stdin.close()  # the child reads EOF and exits
    assert parent.stdout.read() == ""  # EOF: the child is exiting
    with caplog.at_level("WARNING", logger="oceandata.governance.locks"):
        tag(store, "after", wait=60)  # its lock goes with its last open files
    assert f"pid {parent.pid}" in caplog.text and "stale lock" in caplog.text
    assert log(store)[0].tags == ("after",)
