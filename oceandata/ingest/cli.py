"""Command line of ingestion: ``oceandata ingest`` and ``oceandata store ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_i18n import _

store_app = typer.Typer(help=_("Versioned stores: log, tag, verify, rechunk."),
                        no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)

StoreArg = Annotated[Path, typer.Argument(help=_("Store made by `oceandata ingest`."))]
JsonOpt = Annotated[bool, typer.Option("--json", help=_("Print JSON."))]
VersionOpt = Annotated[str | None, typer.Option(help=_("Tag or snapshot id (default newest)."))]
WaitOpt = Annotated[float, typer.Option(
    "--wait", metavar="SECONDS", min=0,
    help=_("Wait this long for another writer of the store to finish (default: refuse at once)."))]


GradeOpt = Annotated[str | None, typer.Option(
    help=_("Grade of the registered entry: general, important or core (docs/governance.md)."))]
ReleaseOpt = Annotated[str | None, typer.Option(
    help=_("Release: open, registered or restricted (default registered until reviewed)."))]
CategoryOpt = Annotated[str | None, typer.Option(
    help=_("Category: observation, survey, model, reanalysis, scientific or derived."))]
OwnerOpt = Annotated[str | None, typer.Option(help=_("Person or unit answerable for the data."))]
RationaleOpt = Annotated[str | None, typer.Option(help=_("Why this grade and release."))]
GroupOpt = Annotated[list[str] | None, typer.Option(
    "--group", help=_("Hub group granted the entry when it is not open (repeat)."))]


def _classification(grade: str | None, release: str | None, category: str | None,
                    owner: str | None, rationale: str | None,
                    groups: list[str] | None) -> dict[str, Any] | None:
    """Registration defaults from the grading options (None when none is given)."""
    given = {"grade": grade, "release": release, "category": category, "owner": owner,
             "rationale": rationale}
    given = {k: v for k, v in given.items() if v is not None}
    if not given and not groups:
        return None
    from .register import default_classification

    if given and "rationale" not in given:
        given["rationale"] = "graded at registration by " + default_classification()["owner"]
    out: dict[str, Any] = {"classification": {**default_classification(), **given}}
    if groups:
        out["access"] = {"groups": list(groups)}
    return out


def _command() -> str:
    return " ".join(["oceandata", *sys.argv[1:]])


def ingest_command(
    sources: Annotated[list[str], typer.Argument(
        help=_("NetCDF files or globs; with --project also the project's upload names."))],
    store: Annotated[Path | None, typer.Option(
        "--store", help=_("Store path (created if missing); not with --project."))] = None,
    name: Annotated[str | None, typer.Option(
        help=_("Dataset name (default: store stem; with --project the first source's stem)."))]
    = None,
    project: Annotated[int | None, typer.Option(
        "--project", metavar="ID", min=1,
        help=_("Ingest into this project's workspace and register the entry in its catalog "
             "(members see it as p<ID>.<name>); the quota is checked first."))] = None,
    chunks: Annotated[str, typer.Option(help=_("auto, map, timeseries or DIM=N,..."))] = "auto",
    append: Annotated[bool, typer.Option(help=_("Add later time steps to the store."))] = False,
    register: Annotated[Path | None, typer.Option(help=_("Catalog YAML to add the entry to."))]
    = None,
    strict: Annotated[bool, typer.Option(help=_("Refuse high-priority CF/ACDD failures."))]
    = False,
    fmt: Annotated[str, typer.Option("--format", help=_("icechunk (versioned) or zarr."))]
    = "icechunk",
    check: Annotated[bool, typer.Option(help=_("Run the CF/ACDD compliance checks."))] = True,
    wait: WaitOpt = 0.0,
    grade: GradeOpt = None, release: ReleaseOpt = None, category: CategoryOpt = None,
    owner: OwnerOpt = None, rationale: RationaleOpt = None, group: GroupOpt = None,
) -> None:
    from ..errors import UsageError
    from .chunks import parse_chunks_option
    from .pipeline import ingest

    layout = parse_chunks_option(chunks)
    if project is not None:
        if store is not None or register is not None:
            raise UsageError("--project writes the project's own store and catalog: drop "
                             "--store and --register")
        if fmt != "icechunk":
            raise UsageError("--project writes versioned (icechunk) stores: drop --format")
        from .projects import ingest_into_project

        done = ingest_into_project(
            sources, project, name=name, append=append, chunks=layout, strict=strict,
            check=check, progress=sys.stderr.isatty(), command=_command(), wait=wait,
            defaults=_classification(grade, release, category, owner, rationale, group))
        if done.report is not None:
            out.print(f"compliance report: {done.report}", markup=False)
        out.print(done.message + (f" (snapshot {done.snapshot})" if done.snapshot else ""),
                  markup=False)
        if done.skipped and done.changed:
            out.print(f"skipped {done.skipped} files already in the store", markup=False)
        out.print(f"registered {done.name!r} in project {done.project}'s catalog: members "
                  f"open it as {done.qualified_name!r}", markup=False)
        return
    if store is None:
        raise UsageError("give --store PATH (or --project ID to ingest into a project)")
    result = ingest(sources, store, name=name, chunks=layout, append=append, fmt=fmt,
                    strict=strict, check=check, progress=sys.stderr.isatty(),
                    command=_command(), wait=wait)
    if result.report is not None:
        out.print(f"compliance report: {result.report}", markup=False)
    out.print(result.message + (f" (snapshot {result.snapshot})" if result.snapshot else ""),
              markup=False)
    if result.skipped and result.changed:
        out.print(f"skipped {len(result.skipped)} files already in the store", markup=False)
    if register is not None:
        from .register import register_store

        entry = register_store(register, name or store.stem, store, defaults=_classification(
            grade, release, category, owner, rationale, group))
        out.print(f"registered {entry!r} in {register}", markup=False)


@store_app.command("log", help=_(
        "List the versions of a store, newest first, with their tags and sources."))
def store_log(store: StoreArg, as_json: JsonOpt = False) -> None:
    from .store import log

    versions = log(store)
    if as_json:
        sys.stdout.write(json.dumps([v.as_dict() for v in versions], indent=2) + "\n")
        return
    table = Table(title=str(store))
    for col in ("snapshot", "written", "tags", "message", "sources"):
        table.add_column(col, overflow="fold")
    for v in versions:
        table.add_row(v.id, v.written_at, ", ".join(v.tags), v.message,
                      str(len(v.metadata.get("sources", []))))
    out.print(table)


@store_app.command("tag", help=_(
        "Name a version (the newest by default) so it can be read back exactly."))
def store_tag(store: StoreArg, tag_name: Annotated[str, typer.Argument(metavar="TAG")],
              version: VersionOpt = None, wait: WaitOpt = 0.0) -> None:
    from .store import tag

    snapshot = tag(store, tag_name, version=version, command=_command(), wait=wait)
    out.print(f"tagged {snapshot} as {tag_name}", markup=False)


@store_app.command("verify", help=_(
        "Recompute every variable's checksum and report each mismatch (exit 1)."))
def store_verify(store: StoreArg, version: VersionOpt = None, as_json: JsonOpt = False
                 ) -> None:
    from .store import verify

    problems = verify(store, version=version)
    if as_json:
        sys.stdout.write(json.dumps({"store": str(store), "problems": problems}) + "\n")
    else:
        for line in problems:
            err.print(line, markup=False)
        out.print(f"{store}: {'FAILED' if problems else 'OK'} "
                  f"({len(problems)} problems)", markup=False)
    if problems:
        raise typer.Exit(1)


@store_app.command("rechunk", help=_(
        "Write a second chunk layout of a store (checksums must agree)."))
def store_rechunk(
    store: StoreArg,
    to: Annotated[Path, typer.Option("--to", help=_("New store path."))],
    chunks: Annotated[str, typer.Option(help=_("auto, map, timeseries or DIM=N,..."))]
    = "timeseries",
    version: VersionOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    from .chunks import parse_chunks_option
    from .pipeline import rechunk

    result = rechunk(store, to, chunks=parse_chunks_option(chunks), version=version,
                     progress=sys.stderr.isatty(), command=_command(), wait=wait)
    out.print(f"{result.message} (snapshot {result.snapshot})", markup=False)


@store_app.command("register", help=_(
        "Add a catalog entry for a store, with its extents read from the data and the\n"
        "classification given (default: general, released to registered users until reviewed)."))
def store_register(
    store: StoreArg,
    catalog: Annotated[Path, typer.Option(
        "--catalog", help=_("Catalog YAML (created if missing)."))],
    name: Annotated[str, typer.Option(help=_("Entry name."))],
    layout: Annotated[list[str] | None, typer.Option(
        "--layout", help=_("Another chunk layout of the same data: NAME=PATH (repeat)."))] = None,
    version: Annotated[str | None, typer.Option(help=_("Pin a tag or snapshot id."))] = None,
    grade: GradeOpt = None, release: ReleaseOpt = None, category: CategoryOpt = None,
    owner: OwnerOpt = None, rationale: RationaleOpt = None, group: GroupOpt = None,
) -> None:
    from ..errors import UsageError
    from .register import register_store

    layouts = {}
    for item in layout or []:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise UsageError(f"--layout {item!r} is not NAME=PATH (e.g. "
                             "timeseries=var/stores/sst-ts.icechunk)")
        layouts[key] = Path(path)
    register_store(catalog, name, store, layouts=layouts or None, version=version,
                   defaults=_classification(grade, release, category, owner, rationale, group))
    pinned = f" pinned to {version}" if version else ""
    out.print(f"registered {name!r} in {catalog}{pinned}", markup=False)


@store_app.command("build-samples", help=_(
        "Ingest every gridded sample entry into a versioned store and catalog them."))
def store_build_samples(
    data_dir: Annotated[Path | None, typer.Option(help=_("Default: OCEANDATA_DATA_DIR."))] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help=_("Entry (repeat)."))] = None,
    check: Annotated[bool, typer.Option(help=_("Run the CF/ACDD compliance checks."))] = True,
) -> None:
    from .samples import build_sample_stores

    root = build_sample_stores(data_dir, names=only, check=check,
                               echo=lambda line: out.print(line, markup=False))
    out.print(f"catalog of versioned stores: {root}", markup=False)


def install(app: Any) -> None:
    """Add ``ingest`` and ``store`` to the main application."""
    app.command("ingest", help=_(
        "Ingest NetCDF files into a versioned store, in one transaction (one writer at a time).\n"
        "\n"
        "With --register, the entry is classified by --grade, --release, --category, --owner,\n"
        "--rationale and --group; without them it is graded general and released to registered\n"
        "users until an operator reviews it (docs/governance.md).\n"
        "\n"
        "With --project ID the sources may be the project's upload names; the store is\n"
        "<workspace>/stores/<name>.icechunk and the entry is registered in the project's\n"
        "catalog, seen by its members only (docs/projects.md)."),
    )(ingest_command)
    app.add_typer(store_app, name="store")
