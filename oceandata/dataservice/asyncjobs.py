"""Asynchronous jobs of the open-data service: too large to stream, written by a batch job.

A request whose estimate is above the caller's synchronous limit is answered ``413``
(:mod:`.sizing`); for a signed-in caller whose access class offers jobs
(``async_bytes`` of :class:`oceandata.config.ClassLimits`), the 413 carries an offer
(:func:`offer`): the same URL with ``async=1``. That URL answers ``202 Accepted``
(:func:`start`) with the job's ``Location``:

1. the equivalent subset download (the estimate's ``subset``) becomes a batch job of the
   platform's jobs layer, local processes or Slurm, charged to the caller's approved
   allocation (the quota is checked first: over quota, or no allocation, is ``403`` and
   nothing is queued). The job (:mod:`.subset_job`) opens the same catalog, selects,
   adds provenance and writes with the synchronous download's own functions, under a
   temporary name in its ``outputs/``, renamed when complete;
2. ``GET jobs/{id}`` shows the caller's own job (another user's is "not found", as an
   unknown id): its state, then a download link ``jobs/{id}/download?expires=...&sig=...``
   valid ``link_expiry`` seconds (:class:`oceandata.config.TrafficSettings`), signed with
   HMAC-SHA256 over the job, its owner, the file and the expiry (a 0600 secret of the
   data dir); a failed job shows the one sentence its program logged;
3. the link needs no credentials (a browser or ``curl`` can follow it); the bytes are
   charged to the job's owner in the ledger (``request.state.ledger_key``), and the link
   keeps to the owner's daily quota (an owner has an allocation: the ``partner`` limits;
   ``429`` until 00:00 UTC once it is used), whoever follows it.

A job's arguments are not trusted: a hub user may queue :data:`.subset_job.SCRIPT_NAME`
with arguments of their own through the allocations service's ``POST api/jobs``. A job
whose ``--output`` is not a plain file name (:func:`.subset_job.plain_name`) is not a
download job of this service (its status is ``404``, a link to it ``403``), and a job's
file is opened without following a link anywhere under ``<data dir>/jobs``
(:func:`oceandata.jobs.service.open_output`: the job's folders are its owner's in
per-user mode). Likewise the job re-checks the grants it is given (``--group``,
``--granted``), which such a user could set as they like: the real check is the
service's, before it submits the job, and restricted files on disk are protected by the
operating system's permissions (the job runs as its owner).

Two submitters fill one small interface, ``inner.state.jobs`` (:class:`JobSubmitter`):

:class:`AllocationsServiceJobs`
    In the hub: ``POST api/jobs`` of the allocations service (:mod:`oceandata.alloc.jobs_api`)
    with the caller's own hub token, so the job is theirs and its quota check is the
    service's. The data service runs no :class:`~oceandata.jobs.service.JobRuntime` (one
    process per database runs one: the allocations service's). Configured by
    ``OCEANDATA_ALLOC_URL`` (the service's URL; ``OCEANDATA_DATA_JOBS_BACKEND``: ``local``
    or ``slurm``, default ``local``).
:class:`RuntimeJobs`
    In-process :func:`oceandata.jobs.service.submit` with a given runtime: a standalone
    deployment that owns its runtime, and tests.

Without a submitter the service offers no jobs. Job states are read from the allocations
database (``inner.state.alloc_db_url``), the one the jobs layer writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, Protocol

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL

from ..errors import NotAuthorized, UsageError
from ..hub.security import whole_number
from ..io.estimate import format_bytes
from . import downloads, metrics, policy, subset_job
from .access import AUTH_PREFIX, COOKIE, Caller, request_token, resolve
from .i18n import gettext, request_lang

__all__ = ["JOB_CORES", "JOB_MEMORY", "AllocationsServiceJobs", "JobRefused", "JobRequest",
           "JobSubmitter", "RuntimeJobs", "default_jobs", "link_signature", "offer", "router",
           "service_url", "start"]

router = APIRouter()

#: cores of a download job (writes are serialised: one is enough)
JOB_CORES = 1
#: memory of a download job (the writers hold about one stored chunk at a time)
JOB_MEMORY = "1GiB"
#: bytes a job is given an hour of walltime for (at least 1 h, at most 24 h)
BYTES_PER_HOUR = 20 * 10**9
#: the secret of the download links, under ``<data dir>/secrets/``
LINK_SECRET = "dataservice-job-links"

JobId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                 description="The job's id, as the 202 answer gave it.")]


# --------------------------------------------------------------------------- submitters


@dataclass(frozen=True)
class JobRequest:
    """A batch job to submit: the script's text and arguments, and its resources."""

    script: str
    script_name: str
    args: list[str]
    cores: int = JOB_CORES
    memory: str = JOB_MEMORY
    walltime: str = "1:00:00"


class JobRefused(Exception):
    """The jobs layer refused the job (nothing was queued).

    Parameters
    ----------
    status
        The HTTP status to answer (403 over quota or no allocation, 400 a bad request,
        503 the jobs service unreachable).
    message
        What the jobs layer said (one line).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class JobSubmitter(Protocol):
    """What ``inner.state.jobs`` offers: submit a job as the caller, return its id."""

    async def submit(self, request: Request, owner: str, job: JobRequest) -> str:
        """Queue *job* for *owner* (the caller of *request*); raise :class:`JobRefused`."""
        ...


class AllocationsServiceJobs:
    """Jobs submitted to the allocations service's REST API with the caller's token.

    Parameters
    ----------
    url
        The allocations service's base URL (``.../services/allocations``).
    backend
        ``local`` or ``slurm``.
    timeout
        Seconds the service may take to answer.
    """

    def __init__(self, url: str, backend: str = "local", timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.backend = backend
        self.timeout = timeout

    async def submit(self, request: Request, owner: str, job: JobRequest) -> str:
        """``POST api/jobs`` (JSON) with the caller's token (header or login cookie)."""
        import httpx

        lang = request_lang(request)
        token = request_token(request.headers.get("Authorization"), lang) or \
            request.cookies.get(COOKIE)
        if not token:
            raise JobRefused(401, gettext(lang, "Asynchronous jobs need your JupyterHub "
                                                "token."))
        body = {"script": job.script, "script_name": job.script_name, "args": job.args,
                "cores": job.cores, "memory": job.memory, "walltime": job.walltime,
                "backend": self.backend}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                answer = await client.post(f"{self.url}/api/jobs", json=body,
                                           headers={"Authorization": f"token {token}"})
        except httpx.HTTPError:
            raise JobRefused(503, gettext(lang, "The jobs service cannot be reached now; try "
                                                "again in a few minutes.")) from None
        if answer.status_code == 201:
            return str(answer.json()["id"])
        try:
            detail = str(answer.json().get("detail", ""))
        except ValueError:
            detail = ""
        if answer.status_code in (400, 401, 403):
            raise JobRefused(answer.status_code, detail or answer.reason_phrase)
        raise JobRefused(503, gettext(lang, "The jobs service failed to queue the job; try "
                                            "again in a few minutes."))


class RuntimeJobs:
    """Jobs submitted in-process (:func:`oceandata.jobs.service.submit`) to *runtime*.

    Parameters
    ----------
    runtime
        A started :class:`oceandata.jobs.service.JobRuntime` this process owns.
    backend
        ``local`` or ``slurm``.
    """

    def __init__(self, runtime: Any, backend: str = "local") -> None:
        self.runtime = runtime
        self.backend = backend

    async def submit(self, request: Request, owner: str, job: JobRequest) -> str:
        """Check the quota and queue the job, as ``POST api/jobs`` does."""
        from ..alloc.core import NotFound
        from ..alloc.db import session_scope
        from ..jobs import service
        from ..jobs.spec import make_spec

        def work() -> str:
            engine = self.runtime.backend(self.backend)
            with tempfile.TemporaryDirectory(prefix="oceandata-job-") as tmp:
                script = Path(tmp) / job.script_name
                script.write_text(job.script)
                spec = make_spec(script, job.args, cores=job.cores, memory=job.memory,
                                 walltime=job.walltime, max_cores=engine.max_cores(),
                                 max_walltime_s=self.runtime.settings.max_walltime_s)
                with session_scope(self.runtime.db_url) as session:
                    return service.submit(session, owner, spec, None, self.backend,
                                          runtime=self.runtime).id

        try:
            return await run_in_threadpool(work)
        except (NotAuthorized, NotFound) as exc:
            raise JobRefused(403, str(exc).splitlines()[0]) from None
        except UsageError as exc:
            raise JobRefused(400, str(exc).splitlines()[0]) from None


def default_jobs() -> JobSubmitter | None:
    """The submitter of a service started by the hub: :class:`AllocationsServiceJobs` at
    ``OCEANDATA_ALLOC_URL`` (backend ``OCEANDATA_DATA_JOBS_BACKEND``), else None."""
    url = os.environ.get("OCEANDATA_ALLOC_URL", "").strip()
    if not url:
        return None
    return AllocationsServiceJobs(url, os.environ.get("OCEANDATA_DATA_JOBS_BACKEND") or "local")


# --------------------------------------------------------------------------- offer, 202


def _async_limit(request: Request) -> int:
    _, limits = policy.limits_for(request)
    return limits.sizes()["async_bytes"]


def _caller(request: Request) -> Caller | None:
    caller = getattr(request.state, "caller", None)
    return caller if caller is not None and not caller.anonymous else None


def offer(request: Request, est: dict[str, Any]) -> dict[str, Any] | None:
    """The asynchronous job a 413 may offer, or None.

    Offered to a signed-in caller whose access class allows jobs at least as large as the
    estimate, for a request with an equivalent subset download, on a service that runs
    jobs. Anonymous callers, and classes whose ``async_bytes`` is ``0``, get None.

    Parameters
    ----------
    request
        The refused request (after the access guard).
    est
        The estimate (see :mod:`.sizing`): ``bytes`` and ``subset`` are read.

    Returns
    -------
    dict or None
        ``{"url": <the URL with async=1>, "limit": <async_bytes>, "detail": <a sentence>}``.
    """
    if _caller(request) is None or est.get("subset") is None:
        return None
    if getattr(request.app.state, "jobs", None) is None:
        return None
    limit = _async_limit(request)
    if limit <= 0 or int(est.get("bytes") or 0) > limit:
        return None
    lang = request_lang(request)
    return {"url": str(request.url.include_query_params(**{"async": "1"})), "limit": limit,
            "detail": gettext(lang, "Ask the same URL with async=1 and a batch job charged to "
                                    "your allocation will write the file; its status gives "
                                    "a download link when it is done.")}


def _walltime(nbytes: int) -> str:
    hours = min(24, max(1, 1 + nbytes // BYTES_PER_HOUR))
    return f"{hours}:00:00"


def service_url(request: Request, name: str, **params: Any) -> URL:
    """The absolute URL of the service's route *name*, outside ``auth/`` (a download link
    needs no credentials; the hub's prefix is kept)."""
    root = (request.scope.get("root_path", "") or "").rstrip("/").removesuffix(AUTH_PREFIX)
    path = request.app.url_path_for(name, **params)
    return request.base_url.replace(path=root + path, query="")


def _download_url(request: Request, dataset_id: str, subset: dict[str, Any]) -> str:
    """The equivalent synchronous download's URL (what the file's provenance records)."""
    url = service_url(request, "download_subset", dataset_id=dataset_id)
    params = {k: subset[k] for k in ("bbox", "time", "depth", "var") if subset.get(k)}
    return str(url.include_query_params(**params, format=subset.get("format") or "nc4"))


async def start(request: Request, est: dict[str, Any]) -> Response:
    """Queue the batch job writing the estimate's subset; answer ``202 Accepted``.

    Parameters
    ----------
    request
        The request with ``async=1`` (after the access guard: the caller may see the
        dataset, ``request.state.entry`` is set).
    est
        Its estimate; ``est["subset"]`` is the equivalent subset download request.

    Returns
    -------
    starlette.responses.Response
        ``202`` with ``Location: <service>/jobs/{id}`` and ``{"job", "state",
        "status_url", "estimate", "detail"}``.

    Raises
    ------
    HTTPException
        401 anonymous; 400 no equivalent subset; 403 no jobs for the caller (their class,
        this server, or the jobs layer: no allocation, over quota; nothing is queued);
        413 above the class's job limit.
    """
    lang = request_lang(request)
    caller = _caller(request)
    if caller is None:
        raise HTTPException(401, gettext(lang, "Asynchronous jobs are for signed-in users: "
                                               "send your JupyterHub token."),
                            headers={"WWW-Authenticate": 'Bearer realm="oceandata"'})
    if request.headers.get("Authorization") is None:
        # the login cookie rides along with any top-level navigation (SameSite=Lax): a
        # GET that queues a job charged to an allocation must carry the token itself
        raise HTTPException(403, gettext(lang, "Asynchronous jobs are started with a "
                                               "JupyterHub token in the Authorization "
                                               "header, not with the login cookie, so that "
                                               "no other site can start one for you."))
    sub = est.get("subset")
    if sub is None:
        raise HTTPException(400, gettext(lang, "There is no asynchronous job for this kind "
                                               "of request: split it as the estimate "
                                               "suggests."))
    jobs: JobSubmitter | None = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise HTTPException(403, gettext(lang, "This server runs no asynchronous jobs: "
                                               "split the request as the estimate suggests."))
    limit = _async_limit(request)
    if limit <= 0:
        raise HTTPException(403, gettext(lang, "Asynchronous jobs are charged to an approved "
                                               "allocation, and you have none in force: "
                                               "request one with `oceandata alloc request`."))
    nbytes = int(est.get("bytes") or 0)
    if nbytes > limit:
        raise HTTPException(413, gettext(lang, "This request (%(size)s) is above the largest "
                                               "asynchronous job, %(limit)s: split it as the "
                                               "estimate suggests.",
                                         size=format_bytes(nbytes), limit=format_bytes(limit)))
    entry = getattr(request.state, "entry", None)
    version = getattr(request.state, "version", None) or est.get("version")
    if entry is None:  # a server-wide path (erddap/griddap/{id}): the same access rule
        entry, named = resolve(request.app.state.catalog, str(est.get("dataset") or ""),
                               caller, lang)
        version = version or named
    fmt = downloads.FORMATS.get(str(sub.get("format") or "nc4").strip().lower())
    if fmt is None:
        raise UsageError(f"format {sub.get('format')!r} is not one of "
                         f"{', '.join(downloads.FORMATS)}")
    parsed = downloads.parse_request(sub.get("bbox"), sub.get("time"), sub.get("depth"),
                                     sub.get("var"))  # a bad request fails now, not later
    dataset_id = entry.name if version is None else f"{entry.name}@{version}"
    args = subset_job.job_arguments(
        catalog=str(request.app.state.catalog.path), dataset=entry.name, version=version,
        subset={**sub, "format": fmt.name}, url=_download_url(request, dataset_id, sub),
        output=downloads.filename(dataset_id, parsed, fmt),
        groups=caller.groups, granted=caller.datasets, projects=caller.projects)
    job = JobRequest(subset_job.SCRIPT, subset_job.SCRIPT_NAME, args,
                     walltime=_walltime(nbytes))
    try:
        job_id = await jobs.submit(request, caller.name or "", job)
    except JobRefused as refused:
        sentence = gettext(lang, "No job was queued: %(reason)s.",
                           reason=refused.message.rstrip("."))
        raise HTTPException(refused.status, sentence) from None
    metrics.job_queued(entry.name)
    status_url = str(service_url(request, "job_status", job_id=job_id))
    return JSONResponse(
        {"detail": gettext(lang, "The file will be written by job %(job)s; ask its status "
                                 "for a download link when it is done.", job=job_id),
         "job": job_id, "state": "PENDING", "status_url": status_url, "estimate": est},
        status_code=202, headers={"Location": status_url, "Cache-Control": "no-store"})


# --------------------------------------------------------------------------- links


@functools.lru_cache(maxsize=4)
def _secret(path: str) -> bytes:
    from ..lab import secret_file

    return secret_file(Path(path)).encode()


def _link_key() -> bytes:
    from ..config import get_settings

    return _secret(str(get_settings().data_dir / "secrets" / LINK_SECRET))


def link_signature(job_id: str, owner: str, filename: str, expires: int) -> str:
    """HMAC-SHA256 (hex) of a download link: the job, its owner, the file and the expiry."""
    message = "\0".join((job_id, owner, filename, str(expires))).encode()
    return hmac.new(_link_key(), message, hashlib.sha256).hexdigest()


def _link_expiry(request: Request) -> int:
    settings = getattr(request.app.state, "traffic", None) or policy.traffic_settings()
    return int(settings.link_expiry)


# --------------------------------------------------------------------------- routes


def _not_found(lang: str, job_id: str) -> HTTPException:
    return HTTPException(404, gettext(lang, "There is no job %(job)s of yours.",
                                      job=repr(job_id)))


def _job_options(job: Any) -> Any | None:
    """The job's parsed arguments if it is a download job of this service, else None."""
    if job.script != subset_job.SCRIPT_NAME:
        return None
    return subset_job.parse_arguments(list(job.args or []))


def _failure(session: Any, job: Any) -> str | None:
    """The sentence the job's program logged, else the jobs layer's reason."""
    from ..jobs import service

    try:
        log = service.logs(session, job.owner, job.id, tail=200)
    except Exception:  # an unreadable log: the jobs layer's reason says enough
        log = ""
    for line in reversed(log.splitlines()):
        if line.startswith(subset_job.ERROR_MARK):
            return line[len(subset_job.ERROR_MARK):].strip()
    return job.reason


@router.get("/jobs/{job_id}", name="job_status", summary="The state of an asynchronous job")
async def job_status(request: Request, job_id: JobId) -> dict[str, Any]:
    """The caller's job: its state, and a download link once it is COMPLETED.

    Parameters
    ----------
    request
        The request (the caller must be the job's owner).
    job_id
        The id the ``202`` answer gave.

    Returns
    -------
    dict
        ``job``, ``state``, ``dataset``, ``format``, ``submitted_at``, ``started_at``,
        ``ended_at``; ``download`` (``url``, ``expires``, ``filename``, ``bytes``) when
        COMPLETED; ``detail`` (one sentence) when it did not complete.
    """
    from ..alloc.core import NotFound
    from ..alloc.db import session_scope
    from ..alloc.models import JobState
    from ..jobs import service

    lang = request_lang(request)
    caller = _caller(request)
    if caller is None:
        raise HTTPException(401, gettext(lang, "A job's status is shown to its owner only: "
                                               "send your JupyterHub token."),
                            headers={"WWW-Authenticate": 'Bearer realm="oceandata"'})
    db_url = getattr(request.app.state, "alloc_db_url", None)
    if not db_url:
        raise _not_found(lang, job_id)

    def read() -> dict[str, Any] | None:
        with session_scope(db_url) as session:
            try:
                job = service.get_job(session, caller.name or "", job_id)
            except NotFound:
                return None
            options = _job_options(job)
            if options is None:
                return None
            state = JobState(job.state)
            out: dict[str, Any] = {
                "job": job.id, "state": state.value, "dataset": options.dataset,
                "format": options.format,
                **{k: (v.isoformat() if v is not None else None) for k, v in (
                    ("submitted_at", job.submitted_at), ("started_at", job.started_at),
                    ("ended_at", job.ended_at))}}
            if state == JobState.COMPLETED:
                try:
                    path = service.output_file(session, job.owner, job.id, options.output)
                    out["bytes"] = path.stat().st_size
                    out["filename"] = options.output
                except (NotFound, UsageError, OSError):
                    out["state"] = "FAILED"
                    out["reason"] = f"its file {options.output} is missing"
            elif state.finished:
                out["reason"] = _failure(session, job)
            out["owner"] = job.owner
            return out

    found = await run_in_threadpool(read)
    if found is None:
        raise _not_found(lang, job_id)
    owner = found.pop("owner")
    reason = found.pop("reason", None)
    if "filename" in found:
        expires = int(time.time()) + _link_expiry(request)
        sig = link_signature(job_id, owner, found["filename"], expires)
        url = service_url(request, "job_download", job_id=job_id).include_query_params(
            expires=expires, sig=sig)
        found["download"] = {
            "url": str(url), "expires": expires,
            "expires_at": dt.datetime.fromtimestamp(expires, dt.UTC).isoformat(),
            "filename": found.pop("filename"), "bytes": found.pop("bytes")}
        found["detail"] = gettext(lang, "The file is ready: download it from the link "
                                        "before it expires.")
    elif found["state"] in ("PENDING", "RUNNING"):
        found["detail"] = gettext(lang, "The job is %(state)s; ask again in a while.",
                                  state=found["state"].lower())
    else:
        found["detail"] = gettext(lang, "The job ended %(state)s: %(reason)s.",
                                  state=found["state"],
                                  reason=str(reason or "no reason given").rstrip("."))
    return found


def _check_quota(request: Request, owner: str, lang: str) -> None:
    """Refuse (429) a link of *owner*'s job once they were served their daily bytes.

    The traffic layer checks the quota of the link's client (anonymous without
    credentials), while the bytes are charged to the owner: this keeps a link to the
    owner's quota. An owner has an allocation: the ``partner`` class's ``daily_bytes``.

    Parameters
    ----------
    request
        The download request.
    owner
        The job's owner.
    lang
        The answer's language.

    Raises
    ------
    HTTPException
        429 with ``Retry-After`` (seconds to 00:00 UTC) and one sentence.
    """
    from .traffic import seconds_to_midnight

    settings = getattr(request.app.state, "traffic", None) or policy.traffic_settings()
    quota = settings.partner.sizes()["daily_bytes"]
    ledger = getattr(request.app.state, "ledger", None)
    served = 0 if ledger is None else ledger.served_today(f"user:{owner}")
    if served >= quota:
        retry = seconds_to_midnight()
        raise HTTPException(429, gettext(
            lang, "The owner of this job has downloaded %(served)s today, their daily "
                  "quota of %(quota)s: the link works again after 00:00 UTC, in "
                  "%(seconds)s seconds.",
            served=format_bytes(served), quota=format_bytes(quota), seconds=retry),
            headers={"Retry-After": str(retry)})


async def _stream(fh: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await anyio.to_thread.run_sync(fh.read, downloads.CHUNK):
            yield chunk
    finally:
        fh.close()


@router.get("/jobs/{job_id}/download", name="job_download",
            summary="Download the file of a finished job (a signed link)")
async def job_download(
    request: Request, job_id: JobId,
    expires: Annotated[str | None, Query(description="Unix time the link expires")] = None,
    sig: Annotated[str | None, Query(description="The link's signature")] = None,
) -> Response:
    """The job's file, for whoever holds a valid link (no credentials needed).

    The bytes are charged to the job's owner (``request.state.ledger_key``) and kept to
    their daily quota; the file is opened without following links in the job's folder.

    Returns
    -------
    starlette.responses.Response
        The file streamed with ``Content-Length`` and ``Content-Disposition``; 403 for a
        link that is not valid or has expired, or whose file is gone or was replaced by a
        link; 429 once the owner was served their daily quota.
    """
    from ..alloc.core import NotFound
    from ..alloc.db import session_scope
    from ..alloc.models import Job, JobState
    from ..jobs import service

    lang = request_lang(request)
    bad = HTTPException(403, gettext(lang, "This download link is not valid: ask the job's "
                                           "status for a new one."))
    expiry = whole_number(expires)
    if not sig or expiry is None or len(expires or "") > 12:
        raise bad
    db_url = getattr(request.app.state, "alloc_db_url", None)
    if not db_url:
        raise bad

    def open_file() -> tuple[str, IO[bytes], int, Any] | None:
        with session_scope(db_url) as session:
            job = session.get(Job, job_id)
            if job is None or JobState(job.state) != JobState.COMPLETED:
                return None
            options = _job_options(job)
            if options is None:
                return None
            expected = link_signature(job.id, job.owner, options.output, expiry)
            if not hmac.compare_digest(expected, sig):
                return None
            if expiry < time.time():
                raise HTTPException(403, gettext(
                    lang, "This download link expired; ask the job's status for a new one."))
            _check_quota(request, job.owner, lang)
            try:
                fd = service.open_output(session, job.owner, job.id, options.output)
            except (NotFound, UsageError):
                return None
            fh = os.fdopen(fd, "rb")
            return job.owner, fh, os.fstat(fd).st_size, options

    opened = await run_in_threadpool(open_file)
    if opened is None:
        raise bad
    owner, fh, size, options = opened
    request.state.ledger_key = f"user:{owner}"
    fmt = downloads.FORMATS.get(options.format) or downloads.FORMATS["nc4"]
    return StreamingResponse(
        _stream(fh), media_type=fmt.media_type,
        headers={"Content-Length": str(size),
                 "Content-Disposition": f'attachment; filename="{options.output}"',
                 "Cache-Control": "private, no-store"})
