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

from ..cli_i18n import _, accept_language
from ..errors import NotAuthorized, OceandataError, UsageError

DEFAULT_URL = "http://127.0.0.1:8000/services/allocations"
TIMEOUT = 60

alloc_app = typer.Typer(help=_("Compute allocations and projects: request, review, usage, "
                        "members, the default project."),
                        no_args_is_help=True)
out = Console(soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help=_("Print JSON instead of a table."))]


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
        raise UsageError(_("no JupyterHub token: set JUPYTERHUB_API_TOKEN (a JupyterLab "
                           "terminal has it) or OCEANDATA_TOKEN (make one at /hub/token)"))
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
                                headers={"Authorization": f"token {api_token()}",
                                         **accept_language()},
                                allow_redirects=False)
    except requests.RequestException as exc:
        raise ServiceError(_("cannot reach the allocations service at %(url)s (%(reason)s): "
                             "is the hub up? (OCEANDATA_ALLOC_URL names the service)",
                             url=service_url(), reason=type(exc).__name__)) from None
    if resp.status_code < 300:
        return resp.text if raw else resp.json()
    raise refusal(resp, url)


def refusal(resp: Any, url: str, usage: tuple[int, ...] = (400, 422)) -> OceandataError:
    """The exception (one line, exit 2) for the service's answer *resp* of status >= 300.

    Parameters
    ----------
    resp
        The ``requests`` response.
    url
        The URL called (named when the answer is unexpected).
    usage
        The statuses that mean a bad request of the user's (:class:`UsageError`).
    """
    try:
        message = str(resp.json().get("error") or resp.json().get("detail"))
    except (ValueError, AttributeError):
        message = resp.text.strip()[:200] or resp.reason
    if resp.status_code == 401:
        return NotAuthorized(_("the service refused the token: %(message)s; make a new one "
                               "at /hub/token", message=message))
    if resp.status_code == 403:
        return NotAuthorized(message)
    if resp.status_code == 404:
        return AllocationNotFound(message)
    if resp.status_code in usage:
        return UsageError(message)
    return ServiceError(_("the allocations service answered %(status)s at %(url)s: "
                          "%(message)s", status=resp.status_code, url=url, message=message))


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


@alloc_app.command("request", help=_("File an allocation request (an administrator reviews it)."))
def request_command(
    title: Annotated[str, typer.Option("--title", help=_("Project title."))],
    pi: Annotated[str, typer.Option("--pi", help=_("Principal investigator."))],
    institution: Annotated[str, typer.Option("--institution", help=_("Institution."))],
    justification: Annotated[str, typer.Option("--justification",
                                               help=_("Scientific justification."))],
    core_hours: Annotated[float, typer.Option("--core-hours", help=_("Core-hours asked."))],
    max_cores: Annotated[int, typer.Option("--max-cores", help=_("Cores at once (max)."))],
    memory_gb: Annotated[float, typer.Option("--memory-gb", help=_("Memory per job, GB."))],
    storage_gb: Annotated[float, typer.Option("--storage-gb", help=_("Storage, GB."))],
    start: Annotated[str, typer.Option("--start", help=_("Start date YYYY-MM-DD."))],
    end: Annotated[str, typer.Option("--end", help=_("End date YYYY-MM-DD."))],
    dataset: Annotated[list[str] | None, typer.Option(
        "--dataset", help=_("Catalog dataset to use (repeat the option)."))] = None,
    as_json: JsonOpt = False,
) -> None:
    body = {"project_title": title, "pi": pi, "institution": institution,
            "justification": justification, "core_hours": core_hours, "max_cores": max_cores,
            "memory_per_job_gb": memory_gb, "storage_gb": storage_gb, "start_date": start,
            "end_date": end, "datasets": dataset or []}
    a = call("POST", "allocations", body=body)
    if as_json:
        _print_json(a)
    else:
        out.print(_("request %(id)s filed (%(status)s): an administrator will review it",
                    id=a["id"], status=a["status"]), markup=False)


@alloc_app.command("list", help=_("List your allocations (every allocation for an administrator)."))
def list_command(
    status: Annotated[str | None, typer.Option(help=_("pending, approved or denied."))] = None,
    as_json: JsonOpt = False,
) -> None:
    rows = call("GET", "allocations", params={"status": status} if status else None)
    if as_json:
        _print_json(rows)
    else:
        out.print(_table(rows, f"{len(rows)} allocation(s)"))


@alloc_app.command("show", help=_("One allocation: amounts, use so far and its audit log."))
def show_command(alloc_id: Annotated[int, typer.Argument(help=_("Allocation number."))],
                 as_json: JsonOpt = False) -> None:
    a = call("GET", f"allocations/{alloc_id}")
    if as_json:
        _print_json(a)
    else:
        _show(a)


@alloc_app.command("approve", help=_(
        "Approve a request, optionally with changed amounts (administrators)."))
def approve_command(
    alloc_id: Annotated[int, typer.Argument(help=_("Allocation number."))],
    core_hours: Annotated[float | None, typer.Option("--core-hours")] = None,
    max_cores: Annotated[int | None, typer.Option("--max-cores")] = None,
    memory_gb: Annotated[float | None, typer.Option("--memory-gb")] = None,
    storage_gb: Annotated[float | None, typer.Option("--storage-gb")] = None,
    start: Annotated[str | None, typer.Option("--start")] = None,
    end: Annotated[str | None, typer.Option("--end")] = None,
    note: Annotated[str | None, typer.Option("--note", help=_("Note kept with the decision."))]
    = None,
    as_json: JsonOpt = False,
) -> None:
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


@alloc_app.command("deny", help=_("Deny a request, with a reason (administrators)."))
def deny_command(
    alloc_id: Annotated[int, typer.Argument(help=_("Allocation number."))],
    reason: Annotated[str, typer.Option("--reason", help=_("Why (shown to the requester)."))],
    as_json: JsonOpt = False,
) -> None:
    a = call("POST", f"allocations/{alloc_id}/deny", body={"reason": reason})
    if as_json:
        _print_json(a)
    else:
        out.print(f"allocation {a['id']} denied", markup=False)


@alloc_app.command("usage", help=_(
        "Core-hours used per allocation and source, and bytes downloaded from the open-data\n"
        "service (source ``data``; everybody's for an administrator)."))
def usage_command(
    as_csv: Annotated[bool, typer.Option("--csv", help=_("Print CSV."))] = False,
    as_json: JsonOpt = False,
) -> None:
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


# --- projects: members and the default project -------------------------------------------


def _projects_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(rows)} project(s)")
    for col in ("id", "project", "role", "status", "in force", "default", "core-hours left",
                "storage GB", "period"):
        table.add_column(col, overflow="fold")
    for p in rows:
        table.add_row(str(p["id"]), p["project_title"], p["role"], p["status"],
                      "yes" if p["in_force"] else "no", "default" if p["default"] else "",
                      f"{p['remaining_core_hours']:.2f} of {p['core_hours']:g}",
                      f"{p['storage_gb']:g}", f"{p['start_date']} to {p['end_date']}")
    return table


@alloc_app.command("projects", help=_(
        "List the projects you lead or belong to, and which one is your default."))
def projects_command(as_json: JsonOpt = False) -> None:
    rows = call("GET", "projects")
    if as_json:
        _print_json(rows)
    else:
        out.print(_projects_table(rows))


MEMBER_ACTIONS = ("add", "remove")


@alloc_app.command("members", help=_(
        "List a project's members, or add or remove one (``members 7 add bob``)."))
def members_command(
    alloc_id: Annotated[int, typer.Argument(help=_("Project (allocation) number."))],
    action: Annotated[str | None, typer.Argument(
        help=_("add or remove (the project's PI or an administrator); none: list."))] = None,
    name: Annotated[str | None, typer.Argument(help=_("The member's hub user name."))] = None,
    as_json: JsonOpt = False,
) -> None:
    if action is None:
        project = call("GET", f"projects/{alloc_id}")
    elif action not in MEMBER_ACTIONS:
        raise UsageError(_("%(action)r: give add or remove, e.g. oceandata alloc members "
                           "%(project)s add NAME", action=action[:40], project=alloc_id))
    elif not name:
        raise UsageError(_("whom to %(action)s? e.g. oceandata alloc members %(project)s "
                           "%(action)s NAME", action=action, project=alloc_id))
    elif action == "add":
        project = call("POST", f"projects/{alloc_id}/members", body={"user": name})
    else:
        from urllib.parse import quote

        project = call("DELETE", f"projects/{alloc_id}/members/{quote(name, safe='')}")
    if as_json:
        _print_json(project)
        return
    if action is not None:
        out.print(_("%(name)s added to project %(project)s", name=name, project=project["id"])
                  if action == "add" else
                  _("%(name)s removed from project %(project)s", name=name,
                    project=project["id"]), markup=False)
    table = Table(title=f"project {project['id']}: {project['project_title']}")
    for col in ("user", "role", "added by", "core-hours"):
        table.add_column(col)
    for m in project["members"]:
        table.add_row(m["user"], m["role"], m["added_by"] or "", f"{m['core_hours']:.2f}")
    out.print(table)
    warning = (project.get("storage") or {}).get("warning")
    if warning:
        Console(stderr=True).print(f"warning: {warning}", markup=False)


@alloc_app.command("default", help=_(
        "Show, set or clear your default project (used when you are in several and a\n"
        "notebook, cluster or job names none)."))
def default_command(
    alloc_id: Annotated[int | None, typer.Argument(
        help=_("The project charged when you name none; leave out to show it."))] = None,
    clear: Annotated[bool, typer.Option("--clear", help=_("Have no default project."))] = False,
    as_json: JsonOpt = False,
) -> None:
    if alloc_id is not None and clear:
        raise UsageError(_("give a project number or --clear, not both"))
    if alloc_id is None and not clear:
        settings = call("GET", "settings")
    else:
        settings = call("PUT", "settings", body={"default_allocation": alloc_id})
    if as_json:
        _print_json(settings)
    elif settings["default_allocation"] is None:
        out.print(_("no default project") if settings["projects"] else
                  _("no default project (you are in no project in force)"), markup=False)
    else:
        out.print(_("default project: %(project)s", project=settings["default_allocation"]),
                  markup=False)


def install(app: Any) -> None:
    """Add ``alloc`` to the main application."""
    app.add_typer(alloc_app, name="alloc")
