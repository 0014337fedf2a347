"""REST routes of batch jobs: submit, list, show, logs, cancel, outputs.

Mounted by the allocations service (``app.include_router(router)``); every route needs
a JupyterHub token (:func:`oceandata.alloc.auth.current_user`). Another user's job
answers 404, as if it did not exist; admins see every job.

``POST /jobs`` takes either

- ``multipart/form-data``: a ``script`` file and the fields ``cores``, ``memory``,
  ``walltime``, ``allocation_id``, ``backend``, ``name``, ``args`` (a JSON list, or
  the field repeated) and, for a job with Dask workers, ``workers``, ``worker_cores``
  and ``worker_memory`` (:mod:`oceandata.jobs.workers`), or
- JSON: ``{"script": "<text>", "script_name": "run.py", "args": [...], "cores": 2,
  "memory": "4GB", "walltime": "1:00:00", "allocation_id": 1, "backend": "local"}``.

A notebook (a ``script`` named ``*.ipynb``) takes no arguments but parameters: ``args``
as ``["-p", "year", "1997", ...]`` (what ``oceandata submit`` sends), or ``parameters``,
a JSON object ``{"year": "1997"}`` (``true``/``false``/``null`` become
``True``/``False``/``None``; values typed in the job as papermill's ``-p`` types
them, :func:`oceandata.jobs.notebook.resolve_type`). Bad notebooks and parameters are
refused with 400 before anything is queued.

Errors: 400 bad request (one line saying what and what is valid), 403 over quota (or a
cookie session without its CSRF token), 404 no such job (or not yours), 409 already ended,
413 body too large, 415 a body that is neither multipart/form-data nor application/json
(a ``text/plain`` "JSON" body from another site's form is refused), 503 backend
unavailable.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ..errors import NotAuthorized, UsageError
from ..governance import audit
from ..hub.security import MAX_INT64, HubUser, parse_json_object
from ..jobs import service
from ..jobs.notebook import is_notebook
from ..jobs.spec import make_spec
from . import db
from .auth import current_user
from .core import NotFound

router = APIRouter()

#: largest script accepted, in bytes
MAX_SCRIPT_BYTES = 4 * 2**20
#: most arguments of a job, and the longest one
MAX_ARGS, MAX_ARG_CHARS = 256, 4096
#: a job id in a path (ids are 16 hexadecimal digits; anything else is simply not found)
JobId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                 description="The job's id, as `jobs list` shows it.")]
Tail = Annotated[int | None, Query(ge=1, le=100_000, description="Last lines only.")]
Limit = Annotated[int, Query(ge=1, le=1000, description="Largest number of jobs.")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT64, description="Jobs to skip.")]
#: the JSON form of a submission, for the OpenAPI schema (multipart takes the same fields)
SUBMIT_SCHEMA = {
    "type": "object", "required": ["script"],
    "properties": {
        "script": {"type": "string", "description": "The script's text."},
        "script_name": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "parameters": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "A notebook's parameters (name: value)."},
        "cores": {"type": "integer"}, "memory": {"type": "string"},
        "walltime": {"type": "string"}, "allocation_id": {"type": "integer"},
        "backend": {"type": "string", "enum": ["local", "slurm"]},
        "name": {"type": "string"},
        "workers": {"type": "integer", "minimum": 1,
                    "description": "Dask workers of the job's cluster."},
        "worker_cores": {"type": "integer", "minimum": 1},
        "worker_memory": {"type": "string", "description": "e.g. 4GB"}}}


@contextmanager
def _http_errors() -> Iterator[None]:
    """Map the platform's errors to HTTP statuses with their one-line message."""
    try:
        yield
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except service.JobFinished as exc:
        raise HTTPException(409, str(exc)) from None
    except NotAuthorized as exc:
        raise HTTPException(403, str(exc)) from None
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from None


def _db_url(request: Request) -> str:
    return getattr(request.app.state, "db_url", None) or db.default_url()


def _runtime(request: Request) -> service.JobRuntime:
    runtime = getattr(request.app.state, "jobs", None)
    return runtime if runtime is not None else service.get_runtime(_db_url(request))


def _args(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            parsed = json.loads(value) if len(value) <= MAX_ARGS * MAX_ARG_CHARS else None
        except (json.JSONDecodeError, RecursionError):
            parsed = None
        value = parsed if isinstance(parsed, list) else [value]
    if not isinstance(value, list) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        raise UsageError("args: give a JSON list of strings")
    if len(value) > MAX_ARGS or any(len(str(v)) > MAX_ARG_CHARS for v in value):
        raise UsageError(f"args: at most {MAX_ARGS} arguments of at most {MAX_ARG_CHARS} "
                         "characters")
    return [str(v) for v in value]


def _parameters(value: Any) -> list[str]:
    """A notebook's ``parameters`` field (a JSON object, or its text) as ``-p`` triples."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value) if len(value) <= MAX_ARGS * MAX_ARG_CHARS else None
        except (json.JSONDecodeError, RecursionError):
            value = None
    if not isinstance(value, dict) or not all(
            v is None or isinstance(v, (str, int, float)) for v in value.values()):
        raise UsageError('parameters: give a JSON object of names and values, e.g. '
                         '{"year": "1997"}')
    return _args([token for name, v in value.items() for token in ("-p", str(name), str(v))])


def _allocation(value: Any) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"allocation_id {str(value)[:40]!r} is not a whole number") from None
    if not 1 <= number <= MAX_INT64:
        raise UsageError(f"allocation_id {number} is not a positive 64-bit id")
    return number


async def _read_request(request: Request) -> tuple[str, bytes, dict[str, Any]]:
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data") or kind.startswith(
            "application/x-www-form-urlencoded"):
        form = await request.form()
        upload = form.get("script")
        if upload is None or isinstance(upload, str):
            raise UsageError("script: upload the script file as the multipart field 'script'")
        data = await upload.read(MAX_SCRIPT_BYTES + 1)
        fields: dict[str, Any] = {k: v for k, v in form.items() if k != "script"}
        arg_values = form.getlist("args")
        fields["args"] = arg_values[0] if len(arg_values) == 1 else [str(a) for a in arg_values]
        name = upload.filename or "job.py"
    elif kind.split(";")[0].strip().lower() == "application/json":
        try:
            fields = parse_json_object(await request.body())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not isinstance(fields.get("script"), str):
            raise UsageError("script: give the script's text as the JSON field 'script'")
        data = fields["script"].encode()
        name = str(fields.get("script_name") or "job.py")
    else:
        raise HTTPException(415, "send the job as multipart/form-data or application/json")
    for key in ("name", "memory", "walltime", "backend", "worker_memory"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            raise UsageError(f"{key}: give text, not {type(fields[key]).__name__}")
    for key in ("cores", "workers", "worker_cores"):
        if isinstance(fields.get(key), (dict, list, bool)):
            raise UsageError(f"{key}: give a whole number")
    if len(data) > MAX_SCRIPT_BYTES:
        raise UsageError(f"script is larger than {MAX_SCRIPT_BYTES // 2**20} MiB")
    name = Path(str(name).replace("\\", "/")).name
    if not re.fullmatch(r"[\w][\w.+-]{0,127}", name):
        raise UsageError(f"script name {name!r}: use letters, digits, '.', '_', '+' or '-'")
    return name, data, fields


@router.post("/jobs", status_code=201, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": SUBMIT_SCHEMA}}}})
async def submit_job(request: Request, user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Submit a job (quota checked before anything is queued)."""
    with _http_errors():
        name, data, fields = await _read_request(request)
        runtime = _runtime(request)
        url = _db_url(request)
        backend = str(fields.get("backend") or "local")
        source = audit.request_source(request.client.host if request.client else None,
                                      request.headers.get("x-forwarded-for"))

        def work() -> dict[str, Any]:
            engine = runtime.backend(backend)
            with tempfile.TemporaryDirectory(prefix="oceandata-upload-") as tmp:
                script = Path(tmp) / name
                script.write_bytes(data)
                parameters = _parameters(fields.get("parameters"))
                if parameters and not is_notebook(name):
                    raise UsageError(f"parameters: {name!r} is not a notebook (.ipynb); give "
                                     "a script's arguments as args")
                spec = make_spec(script, _args(fields.get("args")) + parameters,
                                 cores=fields.get("cores", 1),
                                 memory=fields.get("memory", "2GB"),
                                 walltime=fields.get("walltime", "1:00:00"),
                                 max_cores=engine.max_cores(),
                                 max_walltime_s=runtime.settings.max_walltime_s,
                                 name=fields.get("name") or None,
                                 workers=fields.get("workers"),
                                 worker_cores=fields.get("worker_cores"),
                                 worker_memory=fields.get("worker_memory"),
                                 max_workers=runtime.settings.max_workers)
                with db.session_scope(url) as session:
                    audit.set_source(session, source)
                    job = service.submit(session, user.name, spec,
                                         _allocation(fields.get("allocation_id")), backend,
                                         runtime=runtime)
                    return service.job_dict(job)

        return await run_in_threadpool(work)


@router.get("/jobs")
async def list_jobs(request: Request, limit: Limit = 100, offset: Offset = 0,
                    user: HubUser = Depends(current_user)) -> list[dict]:
    """The caller's jobs (every job for an admin), newest first, a page at a time."""
    def work() -> list[dict[str, Any]]:
        with db.session_scope(_db_url(request)) as session:
            jobs = service.list_jobs(session, user.name, user.admin)
            return [service.job_dict(j) for j in jobs[offset:offset + limit]]

    return await run_in_threadpool(work)


@router.get("/jobs/{job_id}")
async def show_job(job_id: JobId, request: Request,
                   user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """One job."""
    def work() -> dict[str, Any]:
        with _http_errors(), db.session_scope(_db_url(request)) as session:
            return service.job_dict(service.get_job(session, user.name, job_id, user.admin))

    return await run_in_threadpool(work)


@router.get("/jobs/{job_id}/logs", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
async def job_logs(job_id: JobId, request: Request, tail: Tail = None,
                   user: HubUser = Depends(current_user)) -> str:
    """The job's ``job.log`` (``?tail=N`` for its last lines)."""
    def work() -> str:
        with _http_errors(), db.session_scope(_db_url(request)) as session:
            return service.logs(session, user.name, job_id, user.admin, tail=tail)

    return PlainTextResponse(await run_in_threadpool(work))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: JobId, request: Request,
                     user: HubUser = Depends(current_user)) -> dict[str, Any]:
    """Cancel a queued or running job."""
    runtime = _runtime(request)
    source = audit.request_source(request.client.host if request.client else None,
                                  request.headers.get("x-forwarded-for"))

    def work() -> dict[str, Any]:
        with _http_errors(), db.session_scope(_db_url(request)) as session:
            audit.set_source(session, source)
            return service.job_dict(service.cancel(session, user.name, job_id, user.admin,
                                                   runtime=runtime))

    return await run_in_threadpool(work)


@router.get("/jobs/{job_id}/outputs")
async def job_outputs(job_id: JobId, request: Request,
                      user: HubUser = Depends(current_user)) -> list[dict[str, Any]]:
    """The files the job wrote under ``outputs/``."""
    def work() -> list[dict[str, Any]]:
        with _http_errors(), db.session_scope(_db_url(request)) as session:
            return service.outputs(session, user.name, job_id, user.admin)

    return await run_in_threadpool(work)


@router.get("/jobs/{job_id}/outputs/{path:path}")
async def job_output_file(job_id: JobId, path: str, request: Request,
                          user: HubUser = Depends(current_user)) -> FileResponse:
    """One output file (400 for ``..`` or absolute paths, 404 for links leaving it)."""
    def work() -> Path:
        with _http_errors(), db.session_scope(_db_url(request)) as session:
            return service.output_file(session, user.name, job_id, path, user.admin)

    target = await run_in_threadpool(work)
    return FileResponse(target, filename=target.name)
