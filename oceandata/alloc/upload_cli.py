"""``oceandata upload FILES... --project ID``: send NetCDF files to a project's ``uploads/``.

Each file goes in chunks through the allocations service's upload API
(:mod:`oceandata.alloc.uploads_api`), with the user's JupyterHub token
(``JUPYTERHUB_API_TOKEN`` or ``OCEANDATA_TOKEN``) at ``OCEANDATA_ALLOC_URL``. The file is
read once: its SHA-256 is computed while the chunks are read and checked by the service
when the upload completes.

Resuming: an interrupted upload (lost connection, Ctrl-C, a killed process) stays open on
the service. Run the same command again: the CLI finds the caller's open upload of the
same name and size in the project, asks the service what it has (``received``, and the
SHA-256 of those bytes, compared with the local file's first bytes: a different file of
the same name and size is not resumed, its upload is aborted) and sends the rest. A lost
connection during a run is retried (three times per chunk) the same way.

Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..cli_i18n import _, accept_language
from ..errors import UsageError
from .cli import ServiceError, api_token, refusal, service_url

#: default chunk: 32 MiB (the service takes at most 64 MiB)
DEFAULT_CHUNK = 32 * 2**20
#: tries of one chunk when the connection is lost
TRIES = 3
#: seconds a chunk, or the service's final check of a file, may take
CHUNK_TIMEOUT, COMPLETE_TIMEOUT = 600, 3600

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

__all__ = ["install", "upload_command", "upload_file"]


class _Lost(ServiceError):
    """The connection to the service was lost (retried while sending chunks; elsewhere
    one line like every service error)."""


def _request(method: str, path: str, *, json: dict | None = None, data: bytes | None = None,
             params: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """One call to the service's API; its refusal becomes one line (exit 2)."""
    import requests

    url = f"{service_url()}/api/{path}"
    headers = {"Authorization": f"token {api_token()}", **accept_language()}
    if data is not None:
        headers["Content-Type"] = "application/octet-stream"
    try:
        resp = requests.request(method, url, json=json, data=data, params=params,
                                headers=headers, timeout=timeout, allow_redirects=False)
    except requests.ConnectionError as exc:
        raise _Lost(_("the connection to the allocations service at %(url)s failed "
                      "(%(reason)s): is the hub up?", url=service_url(),
                      reason=type(exc).__name__)) from None
    except requests.Timeout:
        raise _Lost(_("the allocations service at %(url)s did not answer within "
                      "%(seconds)s s", url=service_url(), seconds=timeout)) from None
    if resp.status_code < 300:
        return resp.json()
    if resp.status_code == 408:  # the service cut a chunk that went silent: resume
        raise _Lost(f"the service cut a silent chunk ({resp.text.strip()[:200]})")
    raise refusal(resp, url, usage=(400, 409, 413, 415, 422))


def _find_open(project: int, name: str, size: int) -> dict[str, Any] | None:
    for upload in _request("GET", f"projects/{project}/uploads"):
        if (upload["state"] == "open" and upload["filename"] == name
                and upload["size"] == size):
            return upload
    return None


def _prefix_digest(fh: Any, length: int, progress: Progress, task: Any) -> Any:
    digest = hashlib.sha256()
    fh.seek(0)
    left = length
    while left:
        block = fh.read(min(8 * 2**20, left))
        if not block:
            raise UsageError(_("%(path)s became shorter while it was read", path=fh.name))
        digest.update(block)
        left -= len(block)
        progress.update(task, advance=len(block))
    return digest


def upload_file(path: Path, project: int, *, name: str | None = None,
                chunk_size: int = DEFAULT_CHUNK, progress: Progress | None = None
                ) -> dict[str, Any]:
    """Upload one file to project *project*'s ``uploads/`` (resuming an open upload of the
    same name and size).

    Parameters
    ----------
    path
        The NetCDF file.
    project
        The project (allocation id).
    name
        Its name in ``uploads/`` (default: the file's name).
    chunk_size
        Bytes per request.
    progress
        Where to show the progress (a :class:`rich.progress.Progress`), or None.

    Returns
    -------
    dict
        The completed upload as the service describes it (``path``, ``sha256``, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(_("%(path)s: no such file", path=path))
    size = path.stat().st_size
    if size == 0:
        raise UsageError(_("%(path)s is empty", path=path))
    name = name or path.name
    progress = progress or Progress(disable=True)
    with path.open("rb") as fh:
        upload = _find_open(project, name, size)
        task = progress.add_task(name, total=size)
        digest = hashlib.sha256()
        if upload is not None:
            state = _request("GET", f"uploads/{upload['id']}", params={"digest": "1"})
            digest = _prefix_digest(fh, state["received"], progress, task)
            if digest.hexdigest() != state.get("received_sha256"):
                _request("DELETE", f"uploads/{upload['id']}")  # another file's bytes
                err.print(f"the open upload {upload['id']} of {name} holds other bytes than "
                          f"{path}: aborted, sending {path} from the start", markup=False,
                          highlight=False)
                upload, digest = None, hashlib.sha256()
                progress.reset(task)
            else:
                upload = state
                err.print(f"resuming {name} at byte {state['received']} of {size} "
                          f"(upload {state['id']})", markup=False, highlight=False)
        if upload is None:
            upload = _request("POST", f"projects/{project}/uploads",
                              json={"filename": name, "size": size})
        at = upload["received"]
        fh.seek(at)
        while at < size:
            block = fh.read(min(chunk_size, size - at))
            if not block:
                raise UsageError(_("%(path)s became shorter while it was read", path=path))
            digest.update(block)
            _send(upload["id"], at, block)
            at += len(block)
            progress.update(task, completed=at)
        try:
            return _request("POST", f"uploads/{upload['id']}/complete",
                            json={"sha256": digest.hexdigest()}, timeout=COMPLETE_TIMEOUT)
        except _Lost as exc:
            raise ServiceError(_("the connection was lost while the service checked "
                                 "%(name)s (%(reason)s); run the command again", name=name,
                                 reason=exc)) from None


def _send(upload_id: str, at: int, block: bytes) -> int:
    """Send *block* (the file's bytes from *at*); after a lost connection, ask the service
    what arrived and send the rest. Returns the bytes received after it."""
    start = at
    for attempt in range(TRIES + 1):
        try:
            answer = _request("PUT", f"uploads/{upload_id}/chunks",
                              params={"offset": str(start)}, data=block[start - at:],
                              timeout=CHUNK_TIMEOUT)
            return int(answer["received"])
        except _Lost:
            if attempt == TRIES:
                raise ServiceError(_("the connection to %(url)s was lost %(num)s times; run "
                                     "the command again to resume", url=service_url(),
                                     num=TRIES + 1)) from None
        state = _request("GET", f"uploads/{upload_id}")
        if state.get("receiving"):  # the cut-off chunk is still being recorded
            state = _wait_received(upload_id)
        start = int(state["received"])
        if not at <= start <= at + len(block):
            raise ServiceError(f"upload {upload_id} has {start} bytes, expected between "
                               f"{at} and {at + len(block)}: run the command again")
        if start == at + len(block):
            return start
    raise AssertionError("unreachable")


def _wait_received(upload_id: str) -> dict[str, Any]:
    import time

    for _attempt in range(600):
        state = _request("GET", f"uploads/{upload_id}")
        if not state.get("receiving"):
            return state
        time.sleep(0.5)  # poll: the service finishes recording the cut-off chunk
    raise ServiceError(f"upload {upload_id} is still receiving a chunk: run the command again")


def upload_command(
    files: Annotated[list[Path], typer.Argument(help=_("NetCDF files to upload."),
                                                show_default=False)],
    project: Annotated[int, typer.Option("--project", "-p",
                                         help=_("The project (allocation id)."))],
    name: Annotated[str | None, typer.Option(
        "--name", help=_("The name in uploads/ (one file only; default: the file's name)."))
    ] = None,
    chunk_mib: Annotated[float, typer.Option(
        "--chunk-mib", min=0.0625, max=64, help=_("MiB per request (at most 64)."))
    ] = DEFAULT_CHUNK / 2**20,
) -> None:
    if name is not None and len(files) != 1:
        raise UsageError(_("--name names one file: give one file with it"))
    for path in files:
        if not path.is_file():
            raise UsageError(_("%(path)s: no such file", path=path))
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=err,
                  transient=True, disable=not err.is_terminal) as progress:
        for path in files:
            done = upload_file(path, project, name=name, chunk_size=int(chunk_mib * 2**20),
                               progress=progress)
            out.print(_("%(file)s -> project %(project)s %(path)s (%(size)s bytes, sha256 "
                        "%(sha256)s)", file=path, project=project, path=done["path"],
                        size=done["size"], sha256=done["sha256"]), markup=False,
                      highlight=False)
            sys.stdout.flush()


def install(app: Any) -> None:
    """Add ``upload`` to the main application."""
    app.command("upload", help=_(
        "Upload NetCDF files to a project's uploads/ folder (resumes an interrupted upload)."),
    )(upload_command)
