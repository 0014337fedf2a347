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
``scaling [options]``
    :mod:`benchmarks.bench_scaling`: strong scaling of a climatology on a LocalCluster and
    on Slurm workers of the multi-node test fixture (root for the Slurm rows). Not part
    of ``analysis``.

Run from the repository root. Without a subcommand, or with an unknown one, the usage is
printed and the exit code is 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

USAGE = """usage: python -m benchmarks {analysis,climatology,mhw,scaling} [options]

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


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to the benchmark(s) named by the first argument; return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    benches = {"climatology": _climatology, "mhw": _mhw}
    alone = {"scaling": _scaling}  # not part of ``analysis``
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
