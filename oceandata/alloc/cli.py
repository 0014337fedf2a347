"""``oceandata alloc ...``: compute allocations through the allocations service's REST API.

The commands talk to the service (``OCEANDATA_ALLOC_URL``, default
``http://127.0.0.1:8000/services/allocations``) with the user's JupyterHub token
(``JUPYTERHUB_API_TOKEN``, set in every JupyterLab terminal, or ``OCEANDATA_TOKEN``).
Errors are :class:`oceandata.errors.OceandataError` subclasses: one line on stderr and
exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import NotAuthorized, OceandataError, UsageError

DEFAULT_URL = "http://127.0.0.1:8000/services/allocations"
TIMEOUT = 60

alloc_app = typer.Typer(help="Compute allocations: request, review, usage.",
                        no_args_is_help=True)
out = Console(soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class ServiceError(OceandataError):
    """The allocations service cannot be reached or answered something unexpected."""


class AllocationNotFound(OceandataError):
    """The service knows no such allocation of the caller's."""


def service_url() -> str:
    """Base URL of the allocations service (``OCEANDATA_ALLOC_URL``), without a final /."""
    return (os.environ.get("OCEANDATA_ALLOC_URL") or DEFAULT_URL).rstrip("/")


def api_token() -> str:
    """The user's JupyterHub token, else :class:`~oceandata.errors.UsageError`."""
    token = os.environ.get("JUPYTERHUB_API_TOKEN") or os.environ.get("OCEANDATA_TOKEN")
    if not token:
        raise UsageError("no JupyterHub token: set JUPYTERHUB_API_TOKEN (a JupyterLab terminal "
                         "has it) or OCEANDATA_TOKEN (make one at /hub/token)")
    return token


def call(method: str, path: str, *, body: dict[str, Any] | None = None,
         params: dict[str, str] | None = None, raw: bool = False) -> Any:
    """One REST call; the service's error becomes the matching exception.

    Parameters
    ----------
    method
        HTTP method.
    path
        Path under the service's ``api/``.
    body
        JSON body.
    params
        Query parameters.
    raw
        Return the text of the answer instead of its JSON.

    Returns
    -------
    object
        The decoded JSON (or text with *raw*).
    """
    import requests

    url = f"{service_url()}/api/{path.lstrip('/')}"
    try:
        resp = requests.request(method, url, json=body, params=params, timeout=TIMEOUT,
                                headers={"Authorization": f"token {api_token()}"},
                                allow_redirects=False)
    except requests.RequestException as exc:
        raise ServiceError(f"cannot reach the allocations service at {service_url()} "
                           f"({type(exc).__name__}): is the hub up? (OCEANDATA_ALLOC_URL "
                           "names the service)") from None
    if resp.status_code < 300:
        return resp.text if raw else resp.json()
    try:
        message = str(resp.json().get("error") or resp.json().get("detail"))
    except (ValueError, AttributeError):
        message = resp.text.strip()[:200] or resp.reason
    if resp.status_code == 401:
        raise NotAuthorized(f"the service refused the token: {message}; make a new one at "
                            "/hub/token")
    if resp.status_code == 403:
        raise NotAuthorized(message)
    if resp.status_code == 404:
        raise AllocationNotFound(message)
    if resp.status_code in (400, 422):
        raise UsageError(message)
    raise ServiceError(f"the allocations service answered {resp.status_code} at {url}: "
                       f"{message}")


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _table(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for col in ("id", "owner", "project", "status", "core-hours", "cores", "memory GB",
                "period"):
        table.add_column(col, overflow="fold")
    for a in rows:
        table.add_row(str(a["id"]), a["owner"], a["project_title"], a["status"],
                      f"{a['core_hours']:g}", str(a["max_cores"]),
                      f"{a['memory_per_job_gb']:g}", f"{a['start_date']} to {a['end_date']}")
    return table


def _show(a: dict[str, Any]) -> None:
    out.print(_table([a], f"allocation {a['id']}"))
    out.print(f"used {a['used_core_hours']:.2f} core-hours, {a['remaining_core_hours']:.2f} "
              "left", markup=False)
    if a.get("reason"):
        out.print(f"note/reason: {a['reason']}", markup=False)
    for e in a.get("audit", []):
        changes = ", ".join(f"{k}: {e['before'][k]} -> {e['after'][k]}" for k in e["changed"])
        out.print(f"{e['at']}  {e['actor']}  {e['action']}  {changes}", markup=False)


@alloc_app.command("request")
def request_command(
    title: Annotated[str, typer.Option("--title", help="Project title.")],
    pi: Annotated[str, typer.Option("--pi", help="Principal investigator.")],
    institution: Annotated[str, typer.Option("--institution", help="Institution.")],
    justification: Annotated[str, typer.Option("--justification",
                                               help="Scientific justification.")],
    core_hours: Annotated[float, typer.Option("--core-hours", help="Core-hours asked.")],
    max_cores: Annotated[int, typer.Option("--max-cores", help="Cores at once (max).")],
    memory_gb: Annotated[float, typer.Option("--memory-gb", help="Memory per job, GB.")],
    storage_gb: Annotated[float, typer.Option("--storage-gb", help="Storage, GB.")],
    start: Annotated[str, typer.Option("--start", help="Start date YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--end", help="End date YYYY-MM-DD.")],
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help="Catalog dataset to use (repeat the option).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """File an allocation request (an administrator reviews it)."""
    body = {"project_title": title, "pi": pi, "institution": institution,
            "justification": justification, "core_hours": core_hours, "max_cores": max_cores,
            "memory_per_job_gb": memory_gb, "storage_gb": storage_gb, "start_date": start,
            "end_date": end, "datasets": dataset or []}
    a = call("POST", "allocations", body=body)
    if as_json:
        _print_json(a)
    else:
        out.print(f"request {a['id']} filed ({a['status']}): an administrator will review it",
                  markup=False)


@alloc_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="pending, approved or denied.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List your allocations (every allocation for an administrator)."""
    rows = call("GET", "allocations", params={"status": status} if status else None)
    if as_json:
        _print_json(rows)
    else:
        out.print(_table(rows, f"{len(rows)} allocation(s)"))


@alloc_app.command("show")
def show_command(alloc_id: Annotated[int, typer.Argument(help="Allocation number.")],
                 as_json: JsonOpt = False) -> None:
    """One allocation: amounts, use so far and its audit log."""
    a = call("GET", f"allocations/{alloc_id}")
    if as_json:
        _print_json(a)
    else:
        _show(a)


@alloc_app.command("approve")
def approve_command(
    alloc_id: Annotated[int, typer.Argument(help="Allocation number.")],
    core_hours: Annotated[float | None, typer.Option("--core-hours")] = None,
    max_cores: Annotated[int | None, typer.Option("--max-cores")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb")] = None,
    storage_gb: Annotated[float | None, typer.Option("--storage-gb")] = None,
    start: Annotated[str | None, typer.Option("--start")] = None,
    end: Annotated[str | None, typer.Option("--end")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Note kept with the decision.")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve a request, optionally with changed amounts (administrators)."""
    given = {"core_hours": core_hours, "max_cores": max_cores, "memory_per_job_gb": memory_gb,
             "storage_gb": storage_gb, "start_date": start, "end_date": end}
    body: dict[str, Any] = {"changes": {k: v for k, v in given.items() if v is not None}}
    if note is not None:
        body["note"] = note
    a = call("POST", f"allocations/{alloc_id}/approve", body=body)
    if as_json:
        _print_json(a)
    else:
        out.print(f"allocation {a['id']} approved: {a['core_hours']:g} core-hours, "
                  f"{a['max_cores']} cores, {a['start_date']} to {a['end_date']}",
                  markup=False)


@alloc_app.command("deny")
def deny_command(
    alloc_id: Annotated[int, typer.Argument(help="Allocation number.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown to the requester).")],
    as_json: JsonOpt = False,
) -> None:
    """Deny a request, with a reason (administrators)."""
    a = call("POST", f"allocations/{alloc_id}/deny", body={"reason": reason})
    if as_json:
        _print_json(a)
    else:
        out.print(f"allocation {a['id']} denied", markup=False)


@alloc_app.command("usage")
def usage_command(
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Core-hours used per allocation and source, and bytes downloaded from the open-data
    service (source ``data``; everybody's for an administrator)."""
    from ..io.estimate import format_bytes

    if as_csv:
        sys.stdout.write(call("GET", "usage", params={"csv": "1"}, raw=True))
        return
    rows = call("GET", "usage")
    if as_json:
        _print_json(rows)
        return
    table = Table(title="usage")
    for col in ("allocation", "user", "source", "core-hours", "downloaded", "records"):
        table.add_column(col, justify="right" if col in ("core-hours", "downloaded",
                                                          "records") else "left")
    for r in rows:
        data = r["source"] == "data"
        table.add_row("-" if r["allocation_id"] is None else str(r["allocation_id"]),
                      r["user"], r["source"], "-" if data else f"{r['core_hours']:.2f}",
                      format_bytes(r.get("bytes", 0)) if data else "-", str(r["records"]))
    out.print(table)


def install(app: Any) -> None:
    """Add ``alloc`` to the main application."""
    app.add_typer(alloc_app, name="alloc")
