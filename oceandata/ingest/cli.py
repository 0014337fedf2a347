"""Command line of ingestion: ``oceandata ingest`` and ``oceandata store ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

store_app = typer.Typer(help="Versioned stores: log, tag, verify, rechunk.",
                        no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True, highlight=False)

StoreArg = Annotated[Path, typer.Argument(help="Store made by `oceandata ingest`.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
VersionOpt = Annotated[str | None, typer.Option(help="Tag or snapshot id (default newest).")]
WaitOpt = Annotated[float, typer.Option(
    "--wait", metavar="SECONDS", min=0,
    help="Wait this long for another writer of the store to finish (default: refuse at once).")]


GradeOpt = Annotated[str | None, typer.Option(
    help="Grade of the registered entry: general, important or core (docs/governance.md).")]
ReleaseOpt = Annotated[str | None, typer.Option(
    help="Release: open, registered or restricted (default registered until reviewed).")]
CategoryOpt = Annotated[str | None, typer.Option(
    help="Category: observation, survey, model, reanalysis, scientific or derived.")]
OwnerOpt = Annotated[str | None, typer.Option(help="Person or unit answerable for the data.")]
RationaleOpt = Annotated[str | None, typer.Option(help="Why this grade and release.")]
GroupOpt = Annotated[list[str] | None, typer.Option(
    "--group", help="Hub group granted the entry when it is not open (repeat).")]


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
    sources: Annotated[list[str], typer.Argument(help="NetCDF files or globs.")],
    store: Annotated[Path, typer.Option("--store", help="Store path (created if missing).")],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: store stem).")]
    = None,
    chunks: Annotated[str, typer.Option(help="auto, map, timeseries or DIM=N,...")] = "auto",
    append: Annotated[bool, typer.Option(help="Add later time steps to the store.")] = False,
    register: Annotated[Path | None, typer.Option(help="Catalog YAML to add the entry to.")]
    = None,
    strict: Annotated[bool, typer.Option(help="Refuse high-priority CF/ACDD failures.")]
    = False,
    fmt: Annotated[str, typer.Option("--format", help="icechunk (versioned) or zarr.")]
    = "icechunk",
    check: Annotated[bool, typer.Option(help="Run the CF/ACDD compliance checks.")] = True,
    wait: WaitOpt = 0.0,
    grade: GradeOpt = None, release: ReleaseOpt = None, category: CategoryOpt = None,
    owner: OwnerOpt = None, rationale: RationaleOpt = None, group: GroupOpt = None,
) -> None:
    """Ingest NetCDF files into a versioned store, in one transaction (one writer at a time).

    With --register, the entry is classified by --grade, --release, --category, --owner,
    --rationale and --group; without them it is graded general and released to registered
    users until an operator reviews it (docs/governance.md).
    """
    from .chunks import parse_chunks_option
    from .pipeline import ingest

    layout = parse_chunks_option(chunks)
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


@store_app.command("log")
def store_log(store: StoreArg, as_json: JsonOpt = False) -> None:
    """List the versions of a store, newest first, with their tags and sources."""
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


@store_app.command("tag")
def store_tag(store: StoreArg, tag_name: Annotated[str, typer.Argument(metavar="TAG")],
              version: VersionOpt = None, wait: WaitOpt = 0.0) -> None:
    """Name a version (the newest by default) so it can be read back exactly."""
    from .store import tag

    snapshot = tag(store, tag_name, version=version, command=_command(), wait=wait)
    out.print(f"tagged {snapshot} as {tag_name}", markup=False)


@store_app.command("verify")
def store_verify(store: StoreArg, version: VersionOpt = None, as_json: JsonOpt = False
                 ) -> None:
    """Recompute every variable's checksum and report each mismatch (exit 1)."""
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


@store_app.command("rechunk")
def store_rechunk(
    store: StoreArg,
    to: Annotated[Path, typer.Option("--to", help="New store path.")],
    chunks: Annotated[str, typer.Option(help="auto, map, timeseries or DIM=N,...")]
    = "timeseries",
    version: VersionOpt = None,
    wait: WaitOpt = 0.0,
) -> None:
    """Write a second chunk layout of a store (checksums must agree)."""
    from .chunks import parse_chunks_option
    from .pipeline import rechunk

    result = rechunk(store, to, chunks=parse_chunks_option(chunks), version=version,
                     progress=sys.stderr.isatty(), command=_command(), wait=wait)
    out.print(f"{result.message} (snapshot {result.snapshot})", markup=False)


@store_app.command("register")
def store_register(
    store: StoreArg,
    catalog: Annotated[Path, typer.Option("--catalog", help="Catalog YAML (created if missing).")],
    name: Annotated[str, typer.Option(help="Entry name.")],
    layout: Annotated[list[str] | None, typer.Option(
        "--layout", help="Another chunk layout of the same data: NAME=PATH (repeat).")] = None,
    version: Annotated[str | None, typer.Option(help="Pin a tag or snapshot id.")] = None,
    grade: GradeOpt = None, release: ReleaseOpt = None, category: CategoryOpt = None,
    owner: OwnerOpt = None, rationale: RationaleOpt = None, group: GroupOpt = None,
) -> None:
    """Add a catalog entry for a store, with its extents read from the data and the
    classification given (default: general, released to registered users until reviewed)."""
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


@store_app.command("build-samples")
def store_build_samples(
    data_dir: Annotated[Path | None, typer.Option(help="Default: OCEANDATA_DATA_DIR.")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Entry (repeat).")] = None,
    check: Annotated[bool, typer.Option(help="Run the CF/ACDD compliance checks.")] = True,
) -> None:
    """Ingest every gridded sample entry into a versioned store and catalog them."""
    from .samples import build_sample_stores

    root = build_sample_stores(data_dir, names=only, check=check,
                               echo=lambda line: out.print(line, markup=False))
    out.print(f"catalog of versioned stores: {root}", markup=False)


def install(app: Any) -> None:
    """Add ``ingest`` and ``store`` to the main application."""
    app.command("ingest")(ingest_command)
    app.add_typer(store_app, name="store")
