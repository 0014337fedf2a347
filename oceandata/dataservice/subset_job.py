"""The batch job behind an asynchronous download: one subset file, as the service writes it.

:mod:`.asyncjobs` submits this program as a batch job (local processes or Slurm, charged
to the caller's allocation) when a subset is too large to stream. The job opens the same
catalog as the service (``--catalog``), selects with :func:`oceandata.io.subset.subset`,
adds the download's provenance (:func:`.downloads.provenance`) and writes with the
service's writer of the format (:data:`.downloads.FORMATS`): the file is the one the
synchronous download of the same request would give. It is written under a temporary
name in the job's ``outputs/`` and renamed when complete, so a file of that name is
always whole.

The job does not widen access: the service checked that the caller may see the dataset
and passes the caller's grants (``--group``, ``--granted``, ``--project``); the job opens
the entry only if the same rule (:meth:`oceandata.catalog.Entry.granted`) lets them, and
it runs as the caller (a project entry, ``p<id>.<name>``, is read from the project's
workspace, which only its members' accounts can read). A failure prints one line
starting with :data:`ERROR_MARK` to the job's log, which the service shows as the job's
reason.

Run as ``python -m oceandata.dataservice.subset_job --catalog ... --dataset ...``, or
through the short script :data:`SCRIPT` that the jobs layer copies into the job's folder.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ERROR_MARK", "SCRIPT", "SCRIPT_NAME", "job_arguments", "main", "parse_arguments",
           "plain_name", "write_subset"]

#: the line of the job's log that says why it failed
ERROR_MARK = "oceandata subset job failed: "
#: the script the jobs layer runs (its copy in the job's folder); the work is done here
SCRIPT_NAME = "oceandata_subset.py"
SCRIPT = ("import sys\n"
          "from oceandata.dataservice.subset_job import main\n"
          "sys.exit(main(sys.argv[1:]))\n")


#: what an ``--output`` may be: a file name of the service's characters
#: (:func:`.downloads.filename`), not starting with a dot (the job's temporary name does)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_,+-][A-Za-z0-9._,+-]{0,254}")


def plain_name(text: str) -> bool:
    """Whether *text* is a plain file name the job may write and the service may serve.

    No ``/`` or ``\\`` (so no ``..`` component and nothing outside ``outputs/``), no
    leading dot, no control character, quote or space: letters, digits and ``._,+-``,
    at most 255 characters, as :func:`.downloads.filename` makes them.

    Parameters
    ----------
    text
        The ``--output`` argument.

    Returns
    -------
    bool
        True for a plain name.
    """
    return _PLAIN_NAME.fullmatch(text) is not None


def job_arguments(*, catalog: str, dataset: str, version: str | None,
                  subset: dict[str, Any], url: str, output: str,
                  groups: Sequence[str] = (), granted: Sequence[str] = (),
                  projects: Sequence[int] = ()) -> list[str]:
    """The command-line arguments of the job (``--name=value``: values may start with -).

    Parameters
    ----------
    catalog
        Path of the service's root catalog.
    dataset, version
        The entry and the version of a versioned store (None: as the service opens it).
    subset
        ``bbox``, ``time``, ``depth``, ``var`` and ``format`` as the download's query
        gives them (None where absent).
    url
        The equivalent synchronous download's URL (recorded as the file's command).
    output
        File name under the job's ``outputs/``.
    groups, granted
        The caller's hub groups and the datasets of their allocation in force.
    projects
        The caller's projects in force (their project catalogs' entries).
    """
    args = [f"--catalog={catalog}", f"--dataset={dataset}", f"--url={url}",
            f"--output={output}", f"--format={subset.get('format') or 'nc4'}"]
    if version is not None:
        args.append(f"--version={version}")
    for key in ("bbox", "time", "depth", "var"):
        if subset.get(key) is not None:
            args.append(f"--{key}={subset[key]}")
    args += [f"--group={g}" for g in sorted(groups)]
    args += [f"--granted={d}" for d in sorted(granted)]
    args += [f"--project={int(p)}" for p in sorted(projects)]
    return args


class _Parser(argparse.ArgumentParser):
    """Raises :class:`~oceandata.errors.UsageError` instead of exiting (the service reads
    the arguments of stored jobs with it)."""

    def error(self, message: str) -> Any:
        from ..errors import UsageError

        raise UsageError(f"subset job: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="oceandata-subset-job",
                                     description="Write one subset file into the job's "
                                                 "outputs, as the open-data service would.")
    parser.add_argument("--catalog", required=True, help="the service's root catalog")
    parser.add_argument("--dataset", required=True, help="the catalog entry")
    parser.add_argument("--version", help="tag or snapshot of a versioned store")
    parser.add_argument("--bbox")
    parser.add_argument("--time")
    parser.add_argument("--depth")
    parser.add_argument("--var")
    parser.add_argument("--format", default="nc4")
    parser.add_argument("--url", required=True, help="the equivalent download URL")
    parser.add_argument("--output", required=True, help="file name under outputs/")
    parser.add_argument("--group", action="append", default=[], help="a group of the caller")
    parser.add_argument("--granted", action="append", default=[],
                        help="a dataset of the caller's allocation in force")
    parser.add_argument("--project", action="append", default=[], type=int,
                        help="a project of the caller in force")
    parser.add_argument("--output-dir", default=os.environ.get("OCEANDATA_OUTPUT_DIR"),
                        help="default $OCEANDATA_OUTPUT_DIR (set by the jobs layer)")
    return parser


def parse_arguments(args: Sequence[str]) -> argparse.Namespace | None:
    """The options of a job's arguments, None when they are not this program's.

    A job's arguments are whatever its submitter gave: a user may queue this script with
    the allocations service's ``POST api/jobs`` directly. An ``--output`` that is not a
    :func:`plain_name` (``sub/x``, ``../x``, ``.x``) makes them not this program's.

    Parameters
    ----------
    args
        The job's stored arguments.

    Returns
    -------
    argparse.Namespace or None
        The options, or None.
    """
    from ..errors import UsageError

    try:
        options = _parser().parse_args(list(args))
    except UsageError:
        return None
    return options if plain_name(options.output) else None


def write_subset(options: argparse.Namespace) -> Path:
    """Select, add provenance, write under a temporary name and rename; return the file.

    Raises
    ------
    oceandata.errors.NotAuthorized
        The caller's grants do not open the entry.
    oceandata.errors.OceandataError
        A bad request or unreadable data (one line).
    """
    from ..catalog import open_catalog
    from ..errors import NotAuthorized, UsageError
    from ..io.subset import subset
    from .downloads import FORMATS, parse_request, provenance
    from .protocols import DatasetCache

    if not options.output_dir:
        raise UsageError("no output folder: give --output-dir or set OCEANDATA_OUTPUT_DIR")
    name = options.output
    if not plain_name(name):
        raise UsageError(f"--output {name!r} must be a plain file name (letters, digits "
                         "and ._,+- not starting with a dot)")
    fmt = FORMATS.get(options.format)
    if fmt is None:
        raise UsageError(f"format {options.format!r} is not one of {', '.join(FORMATS)}")
    catalog = open_catalog(options.catalog, projects=False)
    from ..catalog.projects import merge_projects, split_qualified

    qualified = split_qualified(options.dataset)
    if qualified is not None and qualified[0] in options.project:
        from ..alloc.workspaces import workspace_path

        merge_projects(catalog, [(qualified[0], workspace_path(qualified[0]))])
    entry = catalog.entry(options.dataset)
    from ..catalog.core import current_user

    if not entry.granted(options.group, options.granted, user=current_user(),
                         projects=options.project):
        raise NotAuthorized(f"dataset {entry.name!r} is not granted to the job's owner")
    parsed = parse_request(options.bbox, options.time, options.depth, options.var)
    # opened as the service opens it (stored chunks of stores); the grant is checked above
    full = DatasetCache(size=1).get(entry, options.version)
    out = provenance(subset(full, **parsed), entry, parsed, options.version, options.url)
    folder = Path(options.output_dir)
    partial = folder / f".{name}.part"
    try:
        fmt.write(out, partial)
        os.replace(partial, folder / name)
    finally:
        partial.unlink(missing_ok=True)
    return folder / name


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; 0 when the file is written, 1 (with one :data:`ERROR_MARK` line) not."""
    from fastapi import HTTPException

    from ..errors import OceandataError

    try:
        path = write_subset(_parser().parse_args(argv))
    except (OceandataError, HTTPException, OSError, ValueError, TypeError) as exc:
        if not isinstance(exc, OceandataError | HTTPException):
            traceback.print_exc()  # for whoever reads the whole log; the last line says why
        text = exc.detail if isinstance(exc, HTTPException) else str(exc)
        first = (str(text).splitlines() or [type(exc).__name__])[0].rstrip(".")
        print(f"{ERROR_MARK}{first}.", file=sys.stderr, flush=True)
        return 1
    print(f"wrote {path.name} ({path.stat().st_size} bytes)", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - run by the jobs layer
    sys.exit(main())
