"""Command line of batch jobs: ``oceandata submit`` and ``oceandata jobs ...``.

The commands talk to the allocations service's REST API at ``OCEANDATA_ALLOC_URL``
(default ``http://127.0.0.1:8000/services/allocations``) with the JupyterHub token in
``JUPYTERHUB_API_TOKEN`` (set in every platform server) or ``OCEANDATA_TOKEN``::

    oceandata submit run.py --cores 4 --memory 8GB --walltime 2:00:00 --allocation 3 \\
        -- --year 2020
    oceandata submit analysis.ipynb -p year 1997 -p region nino34 --cores 2
    oceandata submit clim.py --backend slurm --workers 4 --worker-cores 2 --worker-memory 8GB
    oceandata jobs list
    oceandata jobs logs 3f2a...
    oceandata jobs outputs 3f2a... --get maps/sst.nc --to results/

Errors are one line on stderr and exit code 2. Add the commands to the main app with
:func:`install`.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from ..cli_i18n import _, accept_language
from ..errors import OceandataError, UsageError
from .notebook import PARAMETER_OPTIONS, check_parameters, is_notebook
from .spec import check_script, check_workers, parse_cores, parse_memory, parse_walltime

DEFAULT_URL = "http://127.0.0.1:8000/services/allocations"

jobs_app = typer.Typer(help=_("Batch jobs: list, show, logs, cancel, outputs."),
                       no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])
JobArg = Annotated[str, typer.Argument(help=_("The job's id (from `oceandata jobs list`)."))]
JsonOpt = Annotated[bool, typer.Option("--json", help=_("Print JSON."))]


class ApiError(OceandataError):
    """The service refused the request or could not be reached."""


def _fail(message: str) -> typer.Exit:
    err.print(_("oceandata: error: %(message)s", message=" ".join(message.split())),
              markup=False)
    return typer.Exit(2)


def _one_line_errors(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OceandataError as exc:
            raise _fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _client() -> Any:
    """An ``httpx.Client`` on the service's URL with the user's token."""
    import httpx

    token = os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("OCEANDATA_TOKEN")
    if not token:
        raise UsageError(_("no token: set JUPYTERHUB_API_TOKEN (set in every platform "
                           "server) or OCEANDATA_TOKEN to a JupyterHub API token"))
    base = os.environ.get("OCEANDATA_ALLOC_URL", DEFAULT_URL).rstrip("/")
    # the service serves its REST API, jobs included, under <prefix>api/
    return httpx.Client(base_url=f"{base}/api", headers={"Authorization": f"token {token}",
                                                         **accept_language()},
                        timeout=60.0)


def _request(method: str, path: str, **kwargs: Any) -> Any:
    """Call the API; an error status or no connection becomes :class:`ApiError`."""
    import httpx

    try:
        with _client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        base = os.environ.get("OCEANDATA_ALLOC_URL", DEFAULT_URL)
        raise ApiError(_("cannot reach the allocations service at %(url)s (%(reason)s); set "
                         "OCEANDATA_ALLOC_URL", url=base, reason=exc)) from None
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("error") or body.get("detail") or response.text
        except (ValueError, AttributeError):
            detail = response.text
        if isinstance(detail, list):  # validation errors
            detail = "; ".join(str(d.get("msg", d)) for d in detail)
        raise ApiError(f"{detail} (HTTP {response.status_code})")
    return response


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _show(job: dict[str, Any]) -> None:
    for key in ("id", "state", "reason", "exit_code", "script", "args", "backend",
                "backend_id", "cores", "memory_mb", "walltime_s", "workers", "worker_cores",
                "worker_memory_mb", "allocation_id", "submitted_at", "started_at",
                "ended_at"):
        out.print(f"{key:14} {job.get(key)}", markup=False, highlight=False)


_PARAMETERS = "oceandata.parameters"


def split_parameters(tokens: list[str], options: frozenset[str] = frozenset(),
                     ) -> tuple[list[str], list[str]]:
    """Take the ``-p NAME VALUE`` triples out of a command line (before any ``--``).

    They are read here rather than by click, so that a value may start with ``-``
    (``-p offset -5``) and a ``-p`` without NAME and VALUE is one line and exit 2.
    *options* are the command's own options (``--cores`` ...): one of them after ``-p``
    means a NAME or VALUE is missing, not that it is the value.

    Returns
    -------
    tuple of list of str
        The other tokens, and the triples.
    """
    rest: list[str] = []
    triples: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            rest += tokens[i:]
            break
        if token in PARAMETER_OPTIONS:
            known = {"--", *PARAMETER_OPTIONS, *options}
            values: list[str] = []
            for value in tokens[i + 1:i + 3]:
                if value in known or value.split("=", 1)[0] in known:
                    break
                values.append(value)
            if len(values) < 2:
                given = " ".join(values)
                raise UsageError(_("%(option)s: give a NAME and a VALUE, e.g. -p year 1997",
                                   option=f"{token} {given}".rstrip()))
            triples += [token, *values]
            i += 3
            continue
        rest.append(token)
        i += 1
    return rest, triples


class SubmitCommand(TyperCommand):
    """``submit`` with its ``-p NAME VALUE`` parameters read by :func:`split_parameters`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            options = frozenset(o for p in self.params for o in getattr(p, "opts", ())
                                if o.startswith("--"))
            rest, triples = split_parameters(list(args), options)
        except UsageError as exc:
            raise _fail(str(exc)) from None
        ctx.meta[_PARAMETERS] = triples
        return super().parse_args(ctx, rest)


@_one_line_errors
def submit_command(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(
        help=_("The script (Python, or an executable), or a notebook (.ipynb)."))],
    args: Annotated[list[str] | None, typer.Argument(
        help=_("Arguments of the script (put `--` before ones starting with '-')."))] = None,
    parameter: Annotated[list[str] | None, typer.Option(
        "-p", "--parameter", metavar="NAME VALUE",
        help=_("A notebook's parameter (repeat it): a name its cell tagged `parameters` "
             "sets, and a value typed as papermill's -p types it (1997 a whole number, "
             "0.5 a decimal, True/False/None, otherwise text)."))] = None,
    cores: Annotated[str, typer.Option(help=_("Cores, 1 to the node's."))] = "1",
    memory: Annotated[str, typer.Option(help=_("Memory with a unit: KB, MB, GB, KiB, MiB, GiB."))]
    = "2GB",
    walltime: Annotated[str, typer.Option(help=_("Longest run: HH:MM:SS, MM:SS or D-HH:MM:SS."))]
    = "1:00:00",
    allocation: Annotated[int | None, typer.Option(
        help=_("Allocation to charge (default your active one)."))] = None,
    backend: Annotated[str, typer.Option(help=_("local or slurm."))] = "local",
    workers: Annotated[str | None, typer.Option(
        help=_("Dask workers of the job's cluster (oceandata.compute.cluster()): on slurm "
             "each a Slurm job of its own under your account and allocation, started and "
             "torn down with the job and charged to it; on local, inside the job's "
             "--cores and --memory."))] = None,
    worker_cores: Annotated[str | None, typer.Option(
        help=_("Cores of each worker (default 1; needs --workers)."))] = None,
    worker_memory: Annotated[str | None, typer.Option(
        help=_("Memory of each worker with a unit (default 2GB; needs --workers)."))] = None,
    as_json: JsonOpt = False,
) -> None:
    path = check_script(script)
    triples = list(parameter or []) + list(ctx.meta.get(_PARAMETERS, []))
    if is_notebook(path):
        if args:
            raise UsageError(_("%(argument)r: a notebook takes no arguments; give its "
                               "parameters as -p NAME VALUE, e.g. -p year 1997",
                               argument=args[0]))
        args = check_parameters(path, triples)
    elif triples:
        raise UsageError(_("%(parameter)s: -p gives a notebook's parameters; %(name)r is "
                           "not a notebook (.ipynb): give a script's own arguments after `--`",
                           parameter=f"{triples[0]} {triples[1]}", name=path.name))
    parse_cores(cores, None)
    parse_memory(memory)
    parse_walltime(walltime, None)
    check_workers(workers, worker_cores, worker_memory)
    if backend not in ("local", "slurm"):
        raise UsageError(_("--backend %(backend)r is not a backend; give local or slurm",
                           backend=backend))
    data = {"cores": cores, "memory": memory, "walltime": walltime, "backend": backend,
            "args": json.dumps(list(args or []))}
    for key, value in (("workers", workers), ("worker_cores", worker_cores),
                       ("worker_memory", worker_memory)):
        if value is not None:
            data[key] = value
    if allocation is not None:
        data["allocation_id"] = str(allocation)
    with open(path, "rb") as handle:
        job = _request("POST", "/jobs", data=data,
                       files={"script": (path.name, handle, "text/plain")}).json()
    if as_json:
        _print_json(job)
    else:
        out.print(_("submitted job %(id)s (%(state)s); follow it with `oceandata jobs show "
                    "%(id)s`", id=job["id"], state=job["state"]), markup=False)
    if job.get("allocation_id") is not None:
        _storage_warning(int(job["allocation_id"]))


def _storage_warning(alloc_id: int) -> None:
    """Print the project's storage warning line (80%/100%) to stderr, if it has one: the
    job's outputs will count against that storage. Best effort: the job is submitted."""
    try:
        status = _request("GET", f"/projects/{alloc_id}/storage").json()
    except (OceandataError, ValueError):
        return
    if isinstance(status, dict) and status.get("message"):
        sys.stderr.write(f"warning: {status['message']}\n")


@jobs_app.command("list", help=_("Your jobs, newest first."))
@_one_line_errors
def list_command(as_json: JsonOpt = False) -> None:
    jobs = _request("GET", "/jobs").json()
    if as_json:
        _print_json(jobs)
        return
    table = Table(title="jobs")
    table.add_column("id", no_wrap=True, min_width=16)
    table.add_column("state", no_wrap=True)
    for col in ("script", "backend", "cores", "submitted", "reason"):
        table.add_column(col, overflow="fold")
    for job in jobs:
        table.add_row(job["id"], job["state"], job["script"], job["backend"],
                      str(job["cores"]), str(job["submitted_at"])[:19], job.get("reason") or "")
    out.print(table)


@jobs_app.command("show", help=_("One job: state, resources, times."))
@_one_line_errors
def show_command(job: JobArg, as_json: JsonOpt = False) -> None:
    body = _request("GET", f"/jobs/{job}").json()
    _print_json(body) if as_json else _show(body)


@jobs_app.command("logs", help=_("The job's output (stdout and stderr)."))
@_one_line_errors
def logs_command(job: JobArg, tail: Annotated[int | None, typer.Option(
        help=_("Only the last N lines."))] = None) -> None:
    params = {"tail": tail} if tail is not None else None
    sys.stdout.write(_request("GET", f"/jobs/{job}/logs", params=params).text)


@jobs_app.command("cancel", help=_("Cancel a queued or running job."))
@_one_line_errors
def cancel_command(job: JobArg) -> None:
    body = _request("POST", f"/jobs/{job}/cancel").json()
    out.print(f"job {body['id']}: {body['state']}", markup=False)


@jobs_app.command("outputs", help=_(
        "List the job's output files, or fetch one with --get PATH [--to DIR]."))
@_one_line_errors
def outputs_command(
    job: JobArg,
    get: Annotated[str | None, typer.Option("--get", help=_("Fetch this output file."))] = None,
    to: Annotated[Path, typer.Option("--to", help=_("Folder to fetch into."))] = Path("."),
    as_json: JsonOpt = False,
) -> None:
    if get is None:
        files = _request("GET", f"/jobs/{job}/outputs").json()
        if as_json:
            _print_json(files)
        else:
            for entry in files:
                out.print(f"{entry['size']:>12}  {entry['path']}", markup=False)
        return
    from urllib.parse import quote

    parts = get.replace("\\", "/").split("/")
    if get.startswith(("/", "\\")) or ".." in parts:
        raise UsageError(_("--get %(path)r contains '..' or is absolute; give a path inside "
                           "the job's outputs, as `oceandata jobs outputs JOB` lists them",
                           path=get))
    response = _request("GET", f"/jobs/{job}/outputs/{quote(get, safe='/')}")
    if to.exists() and not to.is_dir():
        raise UsageError(_("--to %(path)r is not a folder", path=str(to)))
    to.mkdir(parents=True, exist_ok=True)
    target = to / Path(get).name
    target.write_bytes(response.content)
    out.print(_("wrote %(path)s (%(size)s bytes)", path=target, size=len(response.content)),
              markup=False)


def install(app: Any) -> None:
    """Add ``submit`` and ``jobs`` to the main application."""
    app.command("submit", cls=SubmitCommand, help=_(
        "Submit a batch job or a notebook (checked against your allocation before it is\n"
        "queued)."),
    )(submit_command)
    app.add_typer(jobs_app, name="jobs")
