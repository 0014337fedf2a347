"""The ``oceandata`` command line (typer + rich).

Every error raised on purpose (:class:`oceandata.errors.OceandataError`) becomes one
line on stderr and exit code 2; a traceback means a bug.

English by default; Simplified Chinese under a Chinese locale (``LANG=zh_CN.UTF-8``):
help texts and our own errors through :func:`oceandata.cli_i18n._`, typer's and click's
texts through :func:`oceandata.cli_i18n.install` (docs/i18n.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import cli_i18n
from .cli_i18n import _
from .errors import OceandataError, UsageError
from .times import TIME_OPTION_HELP

app = typer.Typer(help=_("oceandata: ocean data catalogs, access and compute."),
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
catalog_app = typer.Typer(help=_("Browse, search and validate the data catalog."),
                          no_args_is_help=True)
sample_app = typer.Typer(help=_("The registry of real sample files."), no_args_is_help=True)
config_app = typer.Typer(help=_("Settings (environment variables OCEANDATA_*)."),
                         no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(sample_app, name="sample")
app.add_typer(config_app, name="config")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)

CatalogOpt = Annotated[Path | None, typer.Option("--catalog", "-c", help=(
    _("Catalog YAML (default: OCEANDATA_CATALOG, catalogs/ocean.yaml in a checkout).")))]
JsonOpt = Annotated[bool, typer.Option("--json", help=_("Print JSON instead of a table."))]


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _summary(entry: Any) -> dict[str, Any]:
    md = entry.metadata
    return {
        "name": entry.name,
        "title": md.title,
        "driver": entry.driver,
        "grid": md.grid,
        "variables": md.variable_names,
        "bbox": md.bbox.as_tuple() if md.bbox else None,
        "time_range": md.time_range.model_dump() if md.time_range else None,
        "grade": md.classification.grade,
        "release": entry.release(),
    }


def _entries_table(entries: Any, title: str) -> Table:
    table = Table(title=title)
    for col in ("name", "title", "grid", "variables", "time"):
        table.add_column(col, overflow="fold")
    for entry in entries:
        md = entry.metadata
        tr = md.time_range
        time = f"{tr.start or ''}/{tr.end or ''}" if tr and (tr.start or tr.end) else ""
        table.add_row(entry.name, md.title, md.grid, ", ".join(md.variable_names), time)
    return table


@catalog_app.command("list", help=_("List every dataset of the catalog tree."))
def catalog_list(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    from .catalog import open_catalog

    cat = open_catalog(catalog)
    if as_json:
        _print_json([_summary(e) for e in cat.entries.values()])
    else:
        out.print(_entries_table(cat.entries.values(), f"{cat.path} ({len(cat)} datasets)"))


@catalog_app.command("search", help=_("Find datasets by text, CF standard name, area and period."))
def catalog_search(
    text: Annotated[str | None, typer.Argument(help=_("Words to look for."))] = None,
    standard_name: Annotated[str | None, typer.Option(help=_("CF standard name (* allowed)."))]
    = None,
    bbox: Annotated[str | None, typer.Option(help=_("W,S,E,N in degrees."))] = None,
    time: Annotated[str | None, typer.Option(help=_(TIME_OPTION_HELP))] = None,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from .catalog import open_catalog
    from .io.subset import parse_bbox, parse_range

    box = parse_bbox(bbox) if bbox else None
    period = parse_range(time, option="--time") if time else None
    found = open_catalog(catalog).search(text, standard_name=standard_name, bbox=box,
                                         time=period)
    if as_json:
        _print_json([_summary(e) for e in found.entries.values()])
    else:
        out.print(_entries_table(found.entries.values(), f"{len(found)} datasets found"))


def _entry(cat: Any, name: str) -> Any:
    """The data entry *name* of catalog *cat*; an unknown name is refused in the command
    line's language."""
    from .errors import DatasetNotFound, suggest

    if cli_i18n.LANG == "en" or name in cat.entries:
        return cat.entry(name)
    try:
        return cat.entry(name)
    except DatasetNotFound:
        hint = suggest(name, cat.entries)
        raise DatasetNotFound("".join(filter(None, (
            _("no dataset %(name)r in catalog %(path)s.", name=name, path=cat.path),
            _("Did you mean: %(names)s?", names=hint.split(":", 1)[1].strip(" ?"))
            if hint else "",
            _("Run `oceandata catalog list` to see every name."))))) from None


@catalog_app.command("show", help=_("Show one dataset's metadata and how to open it."))
def catalog_show(name: str, catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    from .catalog import open_catalog

    entry = _entry(open_catalog(catalog), name)
    info = entry.describe()
    if as_json:
        _print_json(info)
        return
    md = info["metadata"]
    out.print(f"[bold]{entry.name}[/bold]: {md['title']}")
    for key in ("description", "provider", "license", "citation", "doi", "grid",
                "feature_type", "bbox", "time_range", "depth_range", "classification", "access",
                "tags"):
        if md.get(key) not in (None, [], {}):
            out.print(f"  {key}: {md[key]}", markup=False)
    out.print("  variables:")
    for var in md["variables"]:
        extra = ", ".join(f"{k}={v}" for k, v in var.items() if k != "name")
        out.print(f"    {var['name']} ({extra})", markup=False)
    out.print(f"  defined in: {info['defined_in']}", markup=False)
    where = "" if catalog is None else f", catalog={str(catalog)!r}"
    out.print(f"  open with: oceandata.open_dataset({entry.name!r}{where})", markup=False)


@catalog_app.command("validate", help=_(
        "Check the schema, and that every local entry opens and matches its metadata.\n"
        "\n"
        "Many-file NetCDF entries get their reference index built or refreshed first (see\n"
        "docs/catalogs-references.md), so they are validated as users will open them."))
def catalog_validate(
    path: Annotated[Path | None, typer.Argument(help=_("Catalog YAML (default: root)."))] = None,
    schema_only: Annotated[bool, typer.Option(help=_("Check the YAML and schema only."))] = False,
    remote: Annotated[bool, typer.Option(help=_("Also open OPeNDAP/http entries."))] = False,
    index: Annotated[bool, typer.Option(help=(
        _("Build or refresh the reference index of each many-file NetCDF entry first "
        "(`oceandata catalog index`).")))] = True,
    as_json: JsonOpt = False,
) -> None:
    from .catalog import open_catalog
    from .governance.rules import load_negative_list
    from .io.validate import validate_catalog

    cat = open_catalog(path)
    load_negative_list(root=cat.path)  # a malformed negative list is a catalog error too
    if index and not schema_only:  # registration: many-file entries get a reference index
        from .catalog.references import build_indexes

        for result in build_indexes(list(cat.entries.values())):
            if result.error is not None or result.built:
                err.print(str(result), markup=False)
    problems = [] if schema_only else validate_catalog(cat, remote=remote)
    if as_json:
        _print_json({"catalog": str(cat.path), "entries": len(cat),
                     "problems": [p.as_dict() for p in problems]})
    else:
        for problem in problems:
            err.print(str(problem), markup=False)
        status = "FAILED" if problems else "OK"
        out.print(f"{cat.path}: {len(cat)} entries, {len(problems)} problems: {status}",
                  markup=False)
    if problems:
        raise typer.Exit(1)


@catalog_app.command("index", help=_(
        "Build the reference index of many-file NetCDF entries (opened without every header).\n"
        "\n"
        "An index is kept under OCEANDATA_DATA_DIR/references and rebuilt only when an entry's\n"
        "files or arguments changed. Exit 1 if a named entry could not be indexed."))
def catalog_index(
    names: Annotated[list[str] | None, typer.Argument(help=(
        _("Entries to index (default: every NetCDF entry of several files).")))] = None,
    catalog: CatalogOpt = None,
    force: Annotated[bool, typer.Option(help=_("Build again even if the index is current."))]
    = False,
    as_json: JsonOpt = False,
) -> None:
    from .catalog import open_catalog
    from .catalog.references import build_indexes, indexable

    cat = open_catalog(catalog)
    if names:
        entries = [cat.entry(n) for n in names]
        for entry in entries:
            if not indexable(entry):
                raise UsageError(_("entry %(name)r is not a NetCDF entry of several local "
                                   "files: it has no reference index", name=entry.name))
    else:
        entries = list(cat.entries.values())
    results = build_indexes(entries, force=force)
    if as_json:
        _print_json([{"entry": r.entry, "path": r.path, "built": r.built, "error": r.error}
                     for r in results])
    else:
        for result in results:
            (err if result.error else out).print(str(result), markup=False)
        if not results:
            out.print("no NetCDF entry of several files in the catalog", markup=False)
    if any(r.error for r in results):
        raise typer.Exit(1)


@app.command("subset", help=_(
        "Cut a dataset to a box, period, depths and variables, and write it with provenance.\n"
        "\n"
        "The output's size is estimated first (see --dry-run); a write above\n"
        "OCEANDATA_MAX_OUTPUT or the free space is refused unless --force."))
def subset_command(
    name: Annotated[str, typer.Argument(help=_("Catalog entry name or a file path."))],
    output: Annotated[Path, typer.Option("--output", "-o", help=_("OUT.nc, OUT.zarr or OUT.csv"))],
    bbox: Annotated[str | None, typer.Option(help=_("W,S,E,N in degrees."))] = None,
    time: Annotated[str | None, typer.Option(help=_(TIME_OPTION_HELP))] = None,
    depth: Annotated[str | None, typer.Option(help=_("MIN/MAX metres, positive down."))] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help=_("Variable to keep (repeat)."))]
    = None,
    overwrite: Annotated[bool, typer.Option(help=_("Replace OUT if it exists."))] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help=_("Print the estimated size, bytes to read and free space; write "
        "nothing."))] = False,
    force: Annotated[bool, typer.Option(
        help=_("Write even above OCEANDATA_MAX_OUTPUT or the free space."))] = False,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from .io import export, open_dataset
    from .io.export import output_format, with_provenance
    from .io.subset import parse_bbox, parse_depth, parse_range

    output_format(output)  # fail on a bad suffix before reading anything
    request = {"bbox": parse_bbox(bbox) if bbox else None,
               "time": parse_range(time, option="--time") if time else None,
               "depth": parse_depth(depth) if depth else None,
               "variables": list(var) if var else None}
    if dry_run:
        from .io import estimate

        _print_estimate(estimate(name, catalog=catalog, target=output, **request), as_json)
        return
    ds = open_dataset(name, catalog=catalog, **request)
    ds = with_provenance(ds, source=name, request={k: v for k, v in request.items() if v},
                         command=" ".join(["oceandata", *sys.argv[1:]]))
    written = export(ds, output, overwrite=overwrite, progress=sys.stderr.isatty(),
                     force=force)
    out.print(_("wrote %(path)s (%(variables)s; %(sizes)s)", path=written,
                variables=", ".join(map(str, ds.data_vars)), sizes=dict(ds.sizes)),
              markup=False)


def _print_estimate(est: Any, as_json: bool) -> None:
    """Print an :class:`oceandata.io.estimate.OutputEstimate` as a table or JSON."""
    from .io.estimate import format_bytes

    if as_json:
        _print_json(est.as_dict())
        return
    table = Table(title=f"{est.source}: estimated output ({est.rows:,} points, "
                  f"{', '.join(f'{k}={v}' for k, v in est.dims.items())})")
    for col in ("format", "size", "bytes", "kind", "note"):
        table.add_column(col, overflow="fold")
    for fmt, size in est.sizes.items():
        mark = " (chosen)" if fmt == est.format else ""
        table.add_row(fmt + mark, format_bytes(size.bytes), f"{size.bytes:,}", size.kind,
                      size.note)
    out.print(table)
    out.print(f"to read: {format_bytes(est.read_bytes)} in {est.read_chunks:,} stored chunks "
              "(uncompressed)", markup=False)
    out.print(f"free at {est.target.absolute().parent}: {format_bytes(est.free_bytes)}; "
              f"limit OCEANDATA_MAX_OUTPUT: {format_bytes(est.limit)}", markup=False)
    problem = est.problem()
    out.print(f"would be refused: {problem}" if problem else
              f"would be written to {est.target} (dry run: nothing written)", markup=False)


@sample_app.command("list", help=_("List the sample files of the registry."))
def sample_list(as_json: JsonOpt = False) -> None:
    from . import sample_data

    rows = [sample_data.info(n) for n in sample_data.names()]
    if as_json:
        _print_json([{"name": r.name, "path": r.path, "size": r.size, "sha256": r.sha256,
                      "url": r.url} for r in rows])
        return
    table = Table(title=f"{len(rows)} sample files")
    for col in ("name", "path", "size"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.name, r.path, f"{r.size:,}")
    out.print(table)


@sample_app.command("fetch", help=_(
        "Fetch sample files (from OCEANDATA_SAMPLE_DATA, the cache, or their public URL)."))
def sample_fetch(
    names: Annotated[list[str] | None, typer.Argument(help=_("Names, paths or globs."))] = None,
    all_: Annotated[bool, typer.Option("--all", help=_("Every file of the registry."))] = False,
    force: Annotated[bool, typer.Option(help=_("Fetch again even if cached."))] = False,
) -> None:
    from . import sample_data

    if all_:
        paths = sample_data.fetch_all(progress=sys.stderr.isatty(), force=force)
    elif names:
        paths = []
        for name in names:
            if any(ch in name for ch in "*?["):
                paths.extend(sample_data.fetch_matching(name, force=force))
            else:
                paths.append(sample_data.fetch(name, force=force))
    else:
        raise OceandataError(_("give sample names (see `oceandata sample list`) or --all"))
    out.print(f"{len(paths)} sample files ready", markup=False)


@config_app.command("show", help=_(
        "Print every setting with its value, environment variable and help."))
def config_show(as_json: JsonOpt = False) -> None:
    from .config import Settings, get_settings

    settings = get_settings()
    rows = [{"name": name, "env": f"OCEANDATA_{name.upper()}",
             "value": getattr(settings, name), "help": field.description}
            for name, field in Settings.model_fields.items()]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="oceandata settings")
    for col in ("env", "value", "help"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["env"], str(row["value"]), row["help"] or "")
    out.print(table)


@app.command("lab", help=_(
        "Run JupyterLab on 127.0.0.1 with oceandata and the catalog configured."))
def lab(
    port: Annotated[int, typer.Option(help=_("Port on 127.0.0.1."))] = 8888,
    root_dir: Annotated[Path | None, typer.Option(help=_("Folder JupyterLab serves."))] = None,
) -> None:
    from .lab import run_lab

    run_lab(port=port, root_dir=root_dir)


@app.command("serve", help=_(
        "Serve the open-data service standalone: portal, STAC, OPeNDAP, Zarr, subsets.\n\n"
        "Without a hub no token can be checked: open datasets only, restricted ones absent."))
def serve(
    port: Annotated[int, typer.Option(help=_("Port to listen on."))] = 8080,
    host: Annotated[str, typer.Option(
        help=_("Address to listen on (loopback by default; 0.0.0.0 exposes it)."))] = "127.0.0.1",
    catalog: Annotated[Path | None, typer.Option(
        help=_("Root catalog YAML (default: the OCEANDATA_CATALOG setting)."))] = None,
) -> None:
    import uvicorn

    from .dataservice import create_app

    if not 1 <= port <= 65535:
        raise UsageError(_("--port %(port)s is not a TCP port: give 1-65535", port=port))
    application = create_app(catalog, prefix="/")
    out.print(f"oceandata open data on http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(application, host=host, port=port, log_level="warning",
                proxy_headers=False, server_header=False)


dataservice_app = typer.Typer(help=_("The open-data service: reports for its operators."),
                              no_args_is_help=True)
app.add_typer(dataservice_app, name="dataservice")


def parse_since(text: str, now: Any = None) -> Any:
    """The first UTC day of ``--since``: ``12h``, ``1d``, ``7d``, ``2w`` back from *now*,
    or an ISO date (``2026-05-01``).

    Parameters
    ----------
    text
        The option's value.
    now
        The current time (default now, UTC).

    Returns
    -------
    datetime.date
        The UTC day the period starts in (the ledger counts per UTC day).

    Raises
    ------
    UsageError
        For anything else, a negative period, or a date in the future.
    """
    import datetime as dt
    import re

    now = now or dt.datetime.now(dt.UTC)
    value = text.strip()
    match = re.fullmatch(r"(\d{1,5})\s*([hdw])", value.lower())
    if match:
        amount = int(match[1])
        delta = {"h": dt.timedelta(hours=amount), "d": dt.timedelta(days=amount),
                 "w": dt.timedelta(weeks=amount)}[match[2]]
        return (now - delta).date()
    day = None
    if len(value) >= 10:
        try:
            moment = dt.datetime.fromisoformat(value)  # a date alone is midnight
        except ValueError:
            pass
        else:
            moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
            day = moment.astimezone(dt.UTC).date()
    if day is None:
        raise UsageError(_("--since %(value)r is not a period: give 12h, 1d, 7d, 2w or a "
                           "date YYYY-MM-DD", value=text[:40]))
    if day > now.date():
        raise UsageError(_("--since %(day)s is in the future: give a past date", day=day))
    return day


@dataservice_app.command("top", help=_(
        "The heaviest clients (or datasets) of the open-data service, from its ledger.\n"
        "\n"
        "For administrators on the service machine: reads the allocations database\n"
        "(``OCEANDATA_ALLOC_DB_URL``, else the platform's default) directly."))
def dataservice_top(
    since: Annotated[str, typer.Option(
        help=_("Period: 12h, 1d, 7d, 2w back from now, or a date YYYY-MM-DD (whole UTC days "
             "are counted)."))] = "1d",
    by: Annotated[str, typer.Option(help=_("client, dataset or protocol."))] = "client",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help=_("Most rows shown."))] = 10,
    as_json: JsonOpt = False,
) -> None:
    from .dataservice.ledger import top
    from .io.estimate import format_bytes

    if by not in ("client", "dataset", "protocol"):
        raise UsageError(_("--by %(value)r: give client, dataset or protocol",
                           value=by[:40]))
    first = parse_since(since)
    rows = top(None, by=by, since=first, limit=limit)  # type: ignore[arg-type]
    if as_json:
        _print_json({"since": first.isoformat(), "by": by, "rows": rows})
        return
    spread = "clients" if by == "dataset" else "datasets"
    table = Table(title=f"heaviest {by}s since {first} (UTC)")
    for col in ("#", by, "bytes", "requests", spread):
        table.add_column(col, justify="left" if col == by else "right", overflow="fold")
    for rank, row in enumerate(rows, 1):
        table.add_row(str(rank), row["name"] or "(none)", format_bytes(row["bytes"]),
                      str(row["requests"]), str(row[spread]))
    out.print(table)
    if not rows:
        out.print(f"nothing served since {first}", markup=False)


hub_app = typer.Typer(help=_("The hosted platform: JupyterHub + dask-gateway on 127.0.0.1."),
                      no_args_is_help=True)
app.add_typer(hub_app, name="hub")


@hub_app.command("up", help=_(
        "Start JupyterHub, its proxy, dask-gateway and the idle culler; Ctrl-C stops them."))
def hub_up_command(
    data_dir: Annotated[Path | None, typer.Option(
        help=_("Runtime state: databases, secrets (0600), user homes, logs."))] = None,
    port: Annotated[int, typer.Option(help=_("Public port on 127.0.0.1."))] = 8000,
    db_url: Annotated[str | None, typer.Option(
        help=_("Hub database (default SQLite under the data dir), e.g. postgresql://..."))] = None,
    backend: Annotated[str | None, typer.Option(
        help=_("Where gateway clusters (and servers) run: local (this machine) or slurm "
             "(Slurm jobs; needs `scontrol ping` to answer). Default: "
             "$OCEANDATA_HUB_BACKEND, else local."))] = None,
) -> None:
    from .hub import hub_up

    raise typer.Exit(hub_up(data_dir=data_dir, port=port, db_url=db_url, backend=backend))


@app.command("version", help=_("Print the oceandata version."))
def version() -> None:
    from . import __version__

    out.print(__version__)


def _install_subcommands() -> None:
    from .argo.cli import argo_app
    from .ingest.cli import install

    install(app)
    app.add_typer(argo_app, name="argo")
    from .alloc.cli import install as install_alloc
    from .jobs.cli import install as install_jobs

    install_alloc(app)
    install_jobs(app)
    __import__("oceandata.alloc.upload_cli", fromlist=["install"]).install(app)
    from .governance import audit_cli, backup_cli, publish_cli, rules_cli

    for module in (audit_cli, backup_cli, publish_cli, rules_cli):
        module.install(app)
    from .alloc.publish_cli import install as install_publish_request
    install_publish_request(app)


_install_subcommands()
cli_i18n.install()


def main() -> None:
    """Console-script entry point: run the app, map known errors to one line and exit 2."""
    from .errors import Interrupted

    try:
        app()
    except OceandataError as exc:
        message = " ".join(str(exc).split())
        err.print(_("oceandata: error: %(message)s", message=message), markup=False)
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        import signal

        err.print(_("oceandata: interrupted by %(signal)s; nothing was written under the "
                    "requested name", signal=signal.Signals(exc.signum).name), markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print(_("oceandata: interrupted; nothing was written under the requested name"),
                  markup=False)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
