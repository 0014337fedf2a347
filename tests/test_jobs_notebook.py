"""Notebooks as batch jobs: ``oceandata submit analysis.ipynb -p NAME VALUE`` (papermill).

The command line talks to the jobs REST API served by uvicorn in a thread, on the local
backend (a SQLite database in a temporary folder, an approved allocation); the notebooks
are written by the tests with nbformat and read a real sample file through
``oceandata.open_dataset``. One test runs a notebook on the real single-node Slurm.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from fastapi import FastAPI
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from sqlalchemy import func, select

from oceandata.alloc import core, db
from oceandata.alloc.auth import current_user
from oceandata.alloc.jobs_api import router
from oceandata.alloc.models import Job, JobState
from oceandata.hub.security import HubUser
from oceandata.jobs import JobSettings, service
from oceandata.jobs.notebook import resolve_type
from oceandata.jobs.service import JobRuntime
from oceandata.jobs.spec import make_spec
from tests.test_jobs_local import jobs_cli

PARAMETERS = "year = 2000\nregion = 'nowhere'\npath = ''\nfail = False\n"
ANALYSIS = """\
import oceandata
ds = oceandata.open_dataset(path, time=(year, year))
mean = float(ds.sst.mean())
print(f"{region} {type(year).__name__} {year} mean SST {mean:.4f}")
"""
FAILING = "if fail:\n    raise ValueError(f'no data for {region} in {year}')\n"
AFTER = "print('after the failure')\n"
WHO = "import os, sys\nprint(os.getuid(), sys.executable)\n"


def write_notebook(path: Path) -> Path:
    """A parameterised notebook: a `parameters` cell, an analysis, a cell that may fail."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [new_markdown_cell("# Mean SST of a year"),
                new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
                new_code_cell(WHO), new_code_cell(ANALYSIS), new_code_cell(FAILING),
                new_code_cell(AFTER)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@dataclass
class Env:
    url: str
    tmp: Path
    runtime: JobRuntime
    alloc_id: int

    def job(self, job_id: str) -> Job:
        with db.session_scope(self.url) as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job

    def wait(self, job_id: str, timeout: float = 120.0) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.state.finished:
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job.state}"
            time.sleep(0.1)

    def count_jobs(self) -> int:
        with db.session_scope(self.url) as session:
            return session.scalar(select(func.count()).select_from(Job))


def _allocation(url: str, owner: str) -> int:
    today = dt.date.today()
    with db.session_scope(url) as session:
        alloc = core.request_allocation(session, owner, {
            "project_title": "Notebook jobs", "pi": "Dr Test", "institution": "NMDC",
            "justification": "testing notebook jobs", "core_hours": 100, "max_cores": 2,
            "memory_per_job_gb": 4, "storage_gb": 10,
            "start_date": today - dt.timedelta(days=1),
            "end_date": today + dt.timedelta(days=30)})
        core.decide(session, alloc.id, "admin", True, approve=True)
        return alloc.id


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    settings = JobSettings(max_concurrent=2, max_cores=2, max_walltime_s=3600,
                           poll_interval=0.2, kill_grace_s=2.0)
    runtime = JobRuntime(url, data_dir=tmp_path / "data", settings=settings,
                         slurm=False).start()
    try:
        yield Env(url, tmp_path, runtime, _allocation(url, "alice"))
    finally:
        runtime.stop(kill_jobs=True)


@pytest.fixture
def cli(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """``cli(*args) -> result``: the jobs commands against the REST API as alice."""
    with jobs_cli(env.url, env.runtime, monkeypatch) as (runner, root):
        yield lambda *args: runner.invoke(root, [str(a) for a in args])


def _expected_line(path: Path, year: int, region: str) -> str:
    import oceandata

    mean = float(oceandata.open_dataset(str(path), time=(year, year)).sst.mean())
    return f"{region} int {year} mean SST {mean:.4f}"


def _kernel_ran_as_the_job(cells: list[nbformat.NotebookNode], owner: str) -> None:
    """The kernel ran as the job's owner (their Unix account, as root) on the job
    environment's interpreter, whatever kernelspecs the account has."""
    import pwd
    import sys

    from oceandata.hub import accounts

    uid = pwd.getpwnam(accounts.unix_name(owner)).pw_uid if accounts.per_user() else os.getuid()
    who = next(c for c in cells if c.source == WHO)
    assert _stream(who).split() == [str(uid), sys.executable]


def _cells(executed: Path) -> list[nbformat.NotebookNode]:
    return nbformat.read(executed, as_version=4).cells


def _stream(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _plant_a_broken_kernelspec(env: Env, owner: str) -> None:
    """As root: a ``python3`` kernelspec in the owner's home that cannot start (jupyter
    prefers it to the environment's outside a virtualenv); the job must not use it."""
    from oceandata.hub import accounts

    if not accounts.per_user():
        return
    entry = accounts.ensure_account(owner, env.tmp / "data")
    spec = Path(entry.pw_dir) / ".local" / "share" / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/bin/false", "{connection_file}"], "display_name": "broken",
        "language": "python"}))
    accounts.chown_tree(Path(entry.pw_dir) / ".local", entry.pw_uid, entry.pw_gid)


def test_notebook_job_keeps_its_executed_notebook_and_html(env: Env, cli, sample) -> None:
    data = sample("oisst_med_nc")
    _plant_a_broken_kernelspec(env, "alice")
    notebook = write_notebook(env.tmp / "nb" / "analysis.ipynb")
    result = cli("submit", notebook, "-p", "year", "1997", "-p", "region", "Med",
                 "-p", "path", data, "--cores", "1", "--memory", "1GB", "--walltime", "5:00",
                 "--allocation", env.alloc_id, "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["id"]
    job = env.wait(job_id)
    log = (Path(job.workdir) / "job.log").read_text()
    assert job.state == JobState.COMPLETED, (job.reason, log)
    assert job.script == "analysis.ipynb"
    assert job.args == ["-p", "year", "1997", "-p", "region", "Med", "-p", "path", str(data)]
    listed = cli("jobs", "outputs", job_id, "--json")
    assert [f["path"] for f in json.loads(listed.stdout)] == ["analysis.html", "analysis.ipynb"]
    fetched = env.tmp / "fetched"
    for name in ("analysis.ipynb", "analysis.html"):
        result = cli("jobs", "outputs", job_id, "--get", name, "--to", fetched)
        assert result.exit_code == 0, result.output
    cells = _cells(fetched / "analysis.ipynb")
    injected = [c for c in cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "year = 1997\n" in injected[0].source and 'region = "Med"\n' in injected[0].source
    _kernel_ran_as_the_job(cells, "alice")
    analysis = next(c for c in cells if c.source == ANALYSIS)
    expected = _expected_line(data, 1997, "Med")
    assert _stream(analysis).strip() == expected
    assert _stream(cells[-1]).strip() == "after the failure"
    html = (fetched / "analysis.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and expected in html
    assert "Mean SST of a year" in html
    with db.session_scope(env.url) as session:  # charged like any job
        assert core.used_core_hours(session, env.alloc_id) > 0


def test_failing_cell_fails_the_job_with_its_error(env: Env, cli, sample) -> None:
    data = sample("oisst_med_nc")
    notebook = write_notebook(env.tmp / "nb" / "analysis.ipynb")
    result = cli("submit", notebook, "-p", "year", "1998", "-p", "fail", "True",
                 "-p", "path", data, "--memory", "1GB", "--walltime", "5:00", "--json")
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["id"]
    job = env.wait(job_id)
    assert job.state == JobState.FAILED and job.exit_code == 1
    error = "ValueError: no data for nowhere in 1998"
    assert job.reason.startswith(error), job.reason
    shown = cli("jobs", "show", job_id)
    assert shown.exit_code == 0 and "FAILED" in shown.stdout
    assert f"reason         {error} (cell In [" in shown.stdout, shown.stdout
    outputs = Path(job.workdir) / "outputs"
    assert sorted(p.name for p in outputs.iterdir()) == ["analysis.html", "analysis.ipynb"]
    cells = _cells(outputs / "analysis.ipynb")
    analysis = next(c for c in cells if c.source == ANALYSIS)
    assert _stream(analysis).strip() == _expected_line(data, 1998, "nowhere")
    failing = next(c for c in cells if c.source == FAILING)
    assert [o.get("ename") for o in failing.outputs if o.output_type == "error"] == ["ValueError"]
    assert _stream(cells[-1]) == "" and cells[-1].get("execution_count") is None


def test_bad_notebooks_and_parameters_are_refused_before_anything_is_queued(
        env: Env, cli) -> None:
    notebook = write_notebook(env.tmp / "nb" / "analysis.ipynb")
    not_json = env.tmp / "nb" / "broken.ipynb"
    not_json.write_text('{"cells": [')
    not_nbformat = env.tmp / "nb" / "schema.ipynb"
    not_nbformat.write_text(json.dumps({"cells": [{"cell_type": "code"}], "metadata": {},
                                        "nbformat": 4, "nbformat_minor": 5}))
    untagged = env.tmp / "nb" / "untagged.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), untagged)
    script = env.tmp / "nb" / "run.py"
    script.write_text("print('hi')\n")
    for args, message in (
            ([not_json], "'broken.ipynb' is not JSON"),
            ([not_nbformat], "'schema.ipynb' is not a valid notebook (nbformat:"),
            ([notebook, "-p", "year"], "-p year: give a NAME and a VALUE"),
            ([notebook, "-p"], "-p: give a NAME and a VALUE"),
            ([notebook, "-p", "1997", "year"], "-p '1997': a parameter's NAME is a Python name"),
            ([notebook, "year", "1997"], "'year': a notebook takes no arguments"),
            ([notebook, "-p", "yaer", "1997"],
             "declares no parameter 'yaer' in its cell tagged 'parameters'; it declares: "
             "year, region, path, fail"),
            ([untagged, "-p", "x", "2"], "has no cell tagged 'parameters'"),
            ([script, "-p", "year", "1997"], "is not a notebook (.ipynb)")):
        result = cli("submit", *args, "--walltime", "5:00")
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("oceandata: error: "), result.stderr
        assert message in lines[0], (args, lines)
    # the service checks again what it is sent
    for args, message in ((["-p", "yaer", "1"], "declares no parameter 'yaer'"),
                          (["-p", "year"], "give a NAME and a VALUE")):
        with pytest.raises(Exception, match=message):
            make_spec(notebook, args)
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.include_router(router)
    app.state.db_url, app.state.jobs = env.url, env.runtime
    app.dependency_overrides[current_user] = lambda: HubUser(name="alice")
    text = notebook.read_text()
    with TestClient(app) as client:
        for body, message in (
                ({"parameters": {"yaer": 1997}}, "declares no parameter 'yaer'"),
                ({"parameters": ["year", "1997"]}, "parameters: give a JSON object"),
                ({"args": ["-p", "year"]}, "give a NAME and a VALUE"),
                ({"script": "{", "script_name": "x.ipynb"}, "'x.ipynb' is not JSON"),
                ({"script_name": "run.py", "parameters": {"year": 1}}, "is not a notebook")):
            r = client.post("/jobs", json={"script": text, "script_name": "analysis.ipynb",
                                           "walltime": "5:00", **body})
            assert r.status_code == 400 and message in r.json()["detail"], (body, r.text)
        assert env.count_jobs() == 0
        assert not (env.tmp / "data" / "jobs").exists() or not any(
            (env.tmp / "data" / "jobs").rglob("*.ipynb"))
        # and a good one through the REST API: parameters become the job's -p triples
        r = client.post("/jobs", json={"script": text, "script_name": "analysis.ipynb",
                                       "walltime": "5:00", "memory": "1GB",
                                       "parameters": {"year": 1997, "fail": True}})
        assert r.status_code == 201, r.text
        assert r.json()["args"] == ["-p", "year", "1997", "-p", "fail", "True"]
        client.post(f"/jobs/{r.json()['id']}/cancel")


def _processes_of_job(job_id: str, kernel: bool = False) -> list[int]:
    """Processes whose environment names the job (the kernel: and ``-m ipykernel...``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if (f"OCEANDATA_JOB_ID={job_id}\0".encode() in (proc / "environ").read_bytes()
                        and (not kernel or b"ipykernel" in (proc / "cmdline").read_bytes())):
                    found.append(int(proc.name))
    return found


def test_walltime_stops_the_kernel_too(env: Env) -> None:
    """The kernel is papermill's child in a session of its own (jupyter_client starts it
    so): when the job's process group is killed, the kernel notices its parent is gone
    and exits; nothing of the job outlives it."""
    notebook = env.tmp / "nb" / "slow.ipynb"
    notebook.parent.mkdir(parents=True)
    nbformat.write(new_notebook(cells=[new_code_cell("import time\ntime.sleep(300)")]),
                   notebook)
    spec = make_spec(notebook, [], memory="1GB", walltime="0:10", max_cores=2)
    with db.session_scope(env.url) as session:
        job_id = service.submit(session, "alice", spec, env.alloc_id, "local",
                                runtime=env.runtime).id
    deadline = time.monotonic() + 10
    while not _processes_of_job(job_id, kernel=True):
        assert time.monotonic() < deadline and not env.job(job_id).state.finished
        time.sleep(0.1)
    job = env.wait(job_id)
    assert job.state == JobState.TIMEOUT, job.reason
    deadline = time.monotonic() + 20
    while _processes_of_job(job_id):
        assert time.monotonic() < deadline, _processes_of_job(job_id)
        time.sleep(0.2)


@pytest.mark.parametrize("text", ["1997", "-5", "0.5", "1e3", "True", "False", "None",
                                  "nino34", "1997-01", "", " 7"])
def test_values_are_typed_as_papermills_command_line_types_them(text: str) -> None:
    from papermill.cli import _resolve_type

    assert repr(resolve_type(text)) == repr(_resolve_type(text))


# ---------------------------------------------------------------------------- Slurm


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from hub_helpers import reachable_by_accounts

    from oceandata.testing.slurm import SlurmUnavailable, in_ci, single_node_slurm

    with contextlib.ExitStack() as stack:
        try:
            folder = reachable_by_accounts(tmp_path_factory.mktemp("slurm"))
            cluster = stack.enter_context(single_node_slurm(folder))
        except SlurmUnavailable as exc:
            if in_ci():
                pytest.fail(f"Slurm is required in CI: {exc}", pytrace=False)
            pytest.skip(f"no single-node Slurm here: {exc}")
        yield cluster


@pytest.fixture(scope="module")
def multi_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from hub_helpers import reachable_by_accounts
    from slurm_helpers import multi_node_or_skip

    with contextlib.ExitStack() as stack:
        folder = reachable_by_accounts(tmp_path_factory.mktemp("mn"))
        cluster = stack.enter_context(multi_node_or_skip(folder, enforce=""))
        yield cluster


def _notebook_jobs_on(cluster, tmp_path: Path, data: Path) -> None:
    """A notebook with parameters completes with its outputs; a failing one is FAILED
    with the failing cell's error, on the cluster's Slurm."""
    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    alloc_id = _allocation(url, "alice")
    settings = JobSettings(max_concurrent=2, max_cores=2, max_walltime_s=3600,
                           poll_interval=0.2, kill_grace_s=2.0)
    runtime = JobRuntime(url, data_dir=tmp_path / "data", settings=settings,
                         slurm_env=cluster.env(), slurm=True).start()
    env = Env(url, tmp_path, runtime, alloc_id)
    try:
        notebook = write_notebook(tmp_path / "nb" / "analysis.ipynb")
        ids = {}
        for fail in ("False", "True"):
            spec = make_spec(notebook, ["-p", "year", "1997", "-p", "path", str(data),
                                        "-p", "fail", fail], memory="1GB", walltime="10:00",
                             max_cores=runtime.backends["slurm"].max_cores())
            with db.session_scope(url) as session:
                ids[fail] = service.submit(session, "alice", spec, alloc_id, "slurm",
                                           runtime=runtime).id
        done, failed = env.wait(ids["False"], 240), env.wait(ids["True"], 240)
        log = (Path(done.workdir) / "job.log").read_text()
        assert done.state == JobState.COMPLETED, (done.reason, log)
        cells = _cells(Path(done.workdir) / "outputs" / "analysis.ipynb")
        _kernel_ran_as_the_job(cells, "alice")
        analysis = next(c for c in cells if c.source == ANALYSIS)
        assert _stream(analysis).strip() == _expected_line(data, 1997, "nowhere")
        assert (Path(done.workdir) / "outputs" / "analysis.html").stat().st_size > 0
        assert failed.state == JobState.FAILED
        assert failed.reason.startswith("ValueError: no data for nowhere in 1997"), failed.reason
        assert (Path(failed.workdir) / "outputs" / "analysis.ipynb").exists()
        if hasattr(cluster, "node_names"):  # ran on a compute node, in its namespace
            record = cluster.job_record(int(done.backend_id))
            assert record.fields.get("NodeList") in cluster.node_names, record.fields
    finally:
        runtime.stop(kill_jobs=True)


@pytest.mark.slow
@pytest.mark.slurm
def test_notebook_jobs_on_slurm(slurm, tmp_path: Path, sample) -> None:
    _notebook_jobs_on(slurm, tmp_path, sample("oisst_med_nc"))


@pytest.mark.slow
@pytest.mark.slurm
def test_notebook_jobs_on_the_multi_node_slurm(multi_node, tmp_path: Path, sample) -> None:
    _notebook_jobs_on(multi_node, tmp_path, sample("oisst_med_nc"))
