"""Shared machinery of the benchmarks: child processes, their peak memory, atomic writes.

Each method of a benchmark runs as a child process, so that its peak resident set size is
its own; :func:`run_child` measures wall time and peak RSS (GNU ``time -f %M`` when it
works here, else the rusage of ``os.wait4``).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class MethodFailed(Exception):
    """A method's command failed; the message is the one line to report."""


class MethodSkipped(Exception):
    """A method cannot run here (e.g. its tool is missing); the message says why."""


@dataclass(frozen=True)
class Child:
    """A finished child process: wall seconds, its peak RSS (MiB) and its stdout."""

    seconds: float
    peak_rss_mib: float
    stdout: str


def _gnu_time() -> str | None:
    """Path of GNU time if it works here (``-f %M -o FILE``), else None."""
    exe = "/usr/bin/time"
    if not os.access(exe, os.X_OK):
        return None
    with tempfile.NamedTemporaryFile("r") as rss:
        probe = subprocess.run([exe, "-f", "%M", "-o", rss.name, "true"],
                               capture_output=True, check=False)
        ok = probe.returncode == 0 and rss.read().strip().isdigit()
    return exe if ok else None


#: How peak RSS is measured: GNU time's ``%M`` for the command it forks, if available.
TIME = _gnu_time()


RSS_METHOD = (
    "the command's maximum resident set size as GNU time reports it (`/usr/bin/time -f %M`, "
    "the rusage of the process time forks, so this script's own memory is not counted)"
    if TIME else
    "the child's maximum resident set size from the rusage `os.wait4` returns for it (the "
    "accounting of `getrusage(RUSAGE_CHILDREN)`, per child, since deltas of a maximum "
    "cannot show a child smaller than an earlier one; it includes this script's resident "
    "memory at fork, about 15 MiB)"
)


def run_child(cmd: Sequence[str], *, cwd: Path | None = None) -> Child:
    """Run *cmd* to completion; return its wall time, peak RSS and stdout.

    Raises
    ------
    MethodFailed
        Non-zero exit; the message is the last line of its stderr.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss_file:
        full = [TIME, "-f", "%M", "-o", rss_file.name, *cmd] if TIME else list(cmd)
        start = time.perf_counter()
        proc = subprocess.Popen(full, stdout=out, stderr=err, cwd=cwd, env=os.environ)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        if proc.returncode != 0:
            err.seek(0)
            lines = [ln.strip() for ln in err.read().decode(errors="replace").splitlines()]
            last = next((ln for ln in reversed(lines) if ln), f"exit code {proc.returncode}")
            raise MethodFailed(last)
        if TIME:  # KiB; the last line (GNU time may note a non-zero status above it)
            kib = float(rss_file.read().split()[-1])
        else:  # Linux reports ru_maxrss in KiB, macOS in bytes
            kib = usage.ru_maxrss / (1024 if sys.platform == "darwin" else 1)
        out.seek(0)
        return Child(seconds, kib / 1024, out.read().decode(errors="replace"))


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    if path.is_file():
        return path.stat().st_size
    return sum((Path(root) / name).lstat().st_size
               for root, _, names in os.walk(path) for name in names)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class RunStats:
    """Median seconds and largest peak RSS over ``self.runs`` (for a method's ``Result``)."""

    runs: list

    @property
    def seconds(self) -> float:
        """Median wall time over the runs."""
        return statistics.median(r.seconds for r in self.runs)

    @property
    def peak_rss_mib(self) -> float:
        """Largest peak RSS over the runs."""
        return max(r.peak_rss_mib for r in self.runs)
