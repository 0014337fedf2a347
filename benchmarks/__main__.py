"""Run the analysis benchmarks: ``python -m benchmarks SUBCOMMAND [options]``.

Subcommands
-----------
``analysis [options]``
    :mod:`benchmarks.bench_climatology` then :mod:`benchmarks.bench_mhw`, each with its
    defaults. *options* are passed to the climatology benchmark; the marine heatwave one
    gets only those both understand (``--repeat N`` and ``--data-dir DIR``), so
    ``analysis --small --repeat 1`` is a quick check of both. Both run even if the first
    fails; the exit code is non-zero if either failed.
``climatology [options]``
    Only :mod:`benchmarks.bench_climatology` (``--help`` for its options).
``mhw [options]``
    Only :mod:`benchmarks.bench_mhw`.
``all [--quick] [--only NAME,NAME] [--timeout SECONDS]``
    Every benchmark of :data:`BENCHMARKS`, each in its own subprocess (one failing does
    not stop the others; its output goes to ``var/bench/logs/<name>.log``), then
    ``benchmarks/results/summary.md`` from every results file (:mod:`benchmarks.summary`).
    ``--quick`` gives each benchmark its small/short options; ``--only`` runs a subset
    and still rebuilds the table from all results files. ``scaling`` runs only as root
    (the multi-node Slurm fixture); otherwise its row says it was skipped. The exit code
    is 1 if a benchmark failed.
``summary``
    Only rebuild ``benchmarks/results/summary.md`` from the results files (nothing runs;
    every benchmark counts as taken from an earlier run).
``scaling [options]``
    :mod:`benchmarks.bench_scaling`: strong scaling of a climatology on a LocalCluster and
    on Slurm workers of the multi-node test fixture (root for the Slurm rows). Not part
    of ``analysis``.

Run from the repository root. Without a subcommand, or with an unknown one, the usage is
printed and the exit code is 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

USAGE = """usage: python -m benchmarks {all,analysis,climatology,mhw,scaling} [options]

  all          every benchmark, then benchmarks/results/summary.md (--quick, --only a,b)
  summary      only rebuild benchmarks/results/summary.md from the results files
  analysis     climatology then mhw (mhw gets only --repeat and --data-dir)
  climatology  monthly climatology + anomaly: oceandata vs xarray vs CDO vs raw read
  mhw          marine heatwaves (benchmarks/bench_mhw.py)
  scaling      climatology on 1 and 2 workers: LocalCluster vs Slurm nodes (root)

Options are those of each benchmark: python -m benchmarks climatology --help
"""


def _climatology(argv: list[str]) -> int:
    from benchmarks import bench_climatology

    return bench_climatology.main(argv)


def _mhw(argv: list[str]) -> int:
    from benchmarks import bench_mhw

    return bench_mhw.main(argv)


def _scaling(argv: list[str]) -> int:
    from benchmarks import bench_scaling

    return bench_scaling.main(argv)


#: Options of ``analysis`` passed on to the marine heatwave benchmark too (each takes a value).
SHARED = ("--repeat", "--data-dir")


def shared_options(argv: Sequence[str]) -> list[str]:
    """The options of *argv* in :data:`SHARED`, with their values, in order.

    Both ``--repeat 1`` and ``--repeat=1`` are recognised; anything else is dropped.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.split("=", 1)[0] in SHARED:
            if "=" in arg:
                out.append(arg)
            else:
                out += list(argv[i:i + 2])
                i += 1
        i += 1
    return out


def _run(name: str, function: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run one benchmark's ``main``; an exception or ``SystemExit`` becomes its code."""
    try:
        code = function(argv)
    except SystemExit as exc:  # argparse errors, SystemExit("message")
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 1
        code = exc.code
    except Exception as exc:
        print(f"benchmark {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(code or 0)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark as ``all`` runs it.

    ``command`` follows the Python interpreter (run from the repository root); ``quick``
    is appended with ``--quick``; ``results`` is the stem of its results file
    (``benchmarks/results/<results>.json``); ``root`` marks one that needs root.
    """

    name: str
    command: tuple[str, ...]
    quick: tuple[str, ...] = ()
    results: str = ""
    root: bool = False
    full: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        """The results file's stem (the name unless given)."""
        return self.results or self.name


#: every benchmark of the project, in the order ``all`` runs them
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("open_subset", ("benchmarks/bench_open_subset.py",), ("--repeat", "1")),
    Benchmark("ingest", ("-m", "benchmarks.bench_ingest"), ("--repeat", "1")),
    Benchmark("argo", ("benchmarks/bench_argo.py",), ("--repeat", "1")),
    Benchmark("climatology", ("-m", "benchmarks", "climatology"),
              ("--small", "--repeat", "1")),
    Benchmark("mhw", ("-m", "benchmarks", "mhw"), ("--repeat", "1")),
    Benchmark("dataservice_throughput", ("benchmarks/bench_dataservice_throughput.py",
                                         "--output",
                                         "benchmarks/results/dataservice_throughput.md"),
              ("--days", "400", "--stream-mb", "200")),
    Benchmark("dataservice_catalog", ("benchmarks/bench_dataservice_catalog.py", "--output",
                                      "benchmarks/results/dataservice_catalog.md"),
              ("--entries", "2000", "--queries", "50", "--json-runs", "3")),
    Benchmark("dataservice_traffic", ("benchmarks/bench_dataservice_traffic.py",),
              ("--requests", "40")),
    Benchmark("scaling", ("-m", "benchmarks", "scaling"), ("--small", "--repeat", "1"),
              root=True),
)


def _last_line(path: Path) -> str:
    """The last non-empty line of a log file ('' if none)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((ln.strip() for ln in reversed(lines) if ln.strip()), "")


def run_one(bench: Benchmark, *, quick: bool, logs: Path, timeout: float | None,
            python: str = sys.executable, cwd: Path = ROOT) -> tuple[int, str, float]:
    """Run *bench* in its own process group; return its exit code, why it failed, seconds.

    Its standard output and error go to ``<logs>/<name>.log`` and ``<name>.err``. A run
    over *timeout* seconds is stopped (its whole process group) and counts as failed.
    """
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [python, *bench.command, *(bench.quick if quick else bench.full)]
    out_path, err_path = logs / f"{bench.name}.log", logs / f"{bench.name}.err"
    start = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd,
                                    start_new_session=True)
        except OSError as exc:
            return 1, f"could not start: {exc}", time.perf_counter() - start
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return 1, f"stopped after the --timeout of {timeout:.0f} s", \
                time.perf_counter() - start
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    seconds = time.perf_counter() - start
    if code == 0:
        return 0, "", seconds
    why = _last_line(err_path) or _last_line(out_path) or "no output"
    return code, f"exit code {code}: {why} (log {err_path})", seconds


def run_all(argv: Sequence[str], benchmarks: Sequence[Benchmark] = BENCHMARKS, *,
            results_dir: Path | None = None, logs: Path | None = None,
            summary_path: Path | None = None, is_root: bool | None = None) -> int:
    """``python -m benchmarks all``: run the benchmarks, write the summary; the exit code.

    Parameters
    ----------
    argv
        The options after ``all``.
    benchmarks
        The benchmarks known (:data:`BENCHMARKS`; tests pass their own).
    results_dir, logs, summary_path
        ``benchmarks/results``, ``var/bench/logs`` and ``<results_dir>/summary.md`` by
        default.
    is_root
        Whether root-only benchmarks may run (the effective user id by default).

    Returns
    -------
    int
        0 if every benchmark asked for ran (or was skipped), 1 if one failed, 2 for bad
        options (one line on stderr).
    """
    from benchmarks import summary

    parser = argparse.ArgumentParser(prog="python -m benchmarks all",
                                     description="every benchmark, then summary.md")
    parser.add_argument("--quick", action="store_true",
                        help="each benchmark's small/short options (figures for checking)")
    parser.add_argument("--only", default=None,
                        help="comma-separated names to run (the table still shows all): "
                             + ",".join(b.name for b in benchmarks))
    parser.add_argument("--timeout", type=float, default=None,
                        help="stop a benchmark after this many seconds (counts as failed)")
    parser.add_argument("--no-run", action="store_true", help=argparse.SUPPRESS)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    names = [b.name for b in benchmarks]
    chosen = names
    if args.only is not None:
        chosen = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in names]
        if unknown or not chosen:
            print(f"--only: unknown benchmark {', '.join(unknown) or '(none given)'}; "
                  f"known: {', '.join(names)}", file=sys.stderr)
            return 2
    if args.timeout is not None and args.timeout <= 0:
        print("--timeout must be positive", file=sys.stderr)
        return 2
    results_dir = Path(results_dir or summary.RESULTS)
    logs = Path(logs or ROOT / "var" / "bench" / "logs")
    root = (os.geteuid() == 0) if is_root is None else is_root

    started = datetime.now(UTC)
    load_start = summary.load()
    statuses: dict[str, summary.Status] = {}
    by_stem = {b.name: b.stem for b in benchmarks}
    for bench in benchmarks:
        if bench.name not in chosen or args.no_run:
            continue
        if bench.root and not root:
            why = "needs root (the multi-node Slurm fixture); run as root"
            statuses[bench.stem] = summary.Status("skipped", why)
            print(f"{bench.name}: skipped: {why}", file=sys.stderr)
            continue
        print(f"{bench.name}: running{' (quick)' if args.quick else ''}, log "
              f"{logs / bench.name}.log ...", file=sys.stderr, flush=True)
        code, why, seconds = run_one(bench, quick=args.quick, logs=logs,
                                     timeout=args.timeout)
        if code:
            statuses[bench.stem] = summary.Status("failed", why, seconds)
            print(f"{bench.name}: FAILED after {seconds:.0f} s: {why}", file=sys.stderr)
            continue
        path = results_dir / f"{bench.stem}.json"
        stale = "" if path.exists() and path.stat().st_mtime >= started.timestamp() - 1 \
            else f"ran, but did not rewrite {path.name}"
        statuses[bench.stem] = summary.Status("ran", stale, seconds)
        print(f"{bench.name}: done in {seconds:.0f} s", file=sys.stderr)

    rows = summary.collect(results_dir, expected=by_stem.values())
    dates = summary.file_dates(results_dir, rows)
    text = summary.render(rows, statuses=statuses, dates=dates, load_start=load_start,
                          load_end=summary.load(),
                          command="python -m benchmarks summary" if args.no_run else
                          " ".join(["python -m benchmarks all", *argv]))
    try:
        out = summary.write(text, Path(summary_path or results_dir / "summary.md"))
    except OSError as exc:
        print(f"cannot write the summary: {exc}", file=sys.stderr)
        return 1
    print(f"written to {out}", file=sys.stderr)
    failed = [n for n, s in statuses.items() if s.state == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark(s) named by the first argument; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    benches = {"climatology": _climatology, "mhw": _mhw}
    alone = {"scaling": _scaling}  # not part of ``analysis``
    if args and args[0] == "all":
        return run_all(args[1:])
    if args and args[0] == "summary":
        if args[1:]:
            print(f"summary takes no options (got {' '.join(args[1:])})", file=sys.stderr)
            return 2
        return run_all(["--no-run"])
    if not args or args[0] not in (*benches, *alone, "analysis"):
        if args and args[0] not in ("-h", "--help"):
            print(f"unknown subcommand {args[0]!r}", file=sys.stderr)
        print(USAGE, file=sys.stderr, end="")
        return 2
    command, rest = args[0], args[1:]
    if command in alone:
        return _run(command, alone[command], rest)
    if command != "analysis":
        return _run(command, benches[command], rest)
    codes = [_run("climatology", _climatology, list(rest)),
             _run("mhw", _mhw, shared_options(rest))]
    failed = [name for name, code in zip(benches, codes, strict=True) if code != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
