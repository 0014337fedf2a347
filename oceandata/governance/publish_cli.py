"""Command line of :mod:`oceandata.governance.desensitise`: ``oceandata publish``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..cli_i18n import _


def _parse_now(text: str | None) -> dt.datetime | None:
    """``--now`` as a UTC datetime (ISO date or date-time; a zone offset is honoured)."""
    from ..errors import UsageError

    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--now {text!r} is not an ISO date or date-time: give e.g. "
                         "2024-06-30 or 2024-06-30T12:00:00Z") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def publish_command(
    entry: Annotated[str, typer.Argument(
        help=_("The restricted entry to derive an open copy of."))],
    profile: Annotated[str, typer.Option("--profile", help=_("Desensitisation profile name."))],
    to: Annotated[Path, typer.Option("--to", help=_("The new store (an Icechunk folder that "
                                                 "must not exist)."))],
    name: Annotated[str | None, typer.Option("--name", help=_("The new entry's name (default "
                                                           "<entry>_public)."))] = None,
    catalog: Annotated[Path | None, typer.Option("--catalog", help=(
        _("Catalog YAML to register the copy in (default <data dir>/catalogs/stores.yaml).")))]
    = None,
    source_catalog: Annotated[Path | None, typer.Option("--source-catalog", help=(
        _("Catalog to find ENTRY in (default: OCEANDATA_CATALOG, the root catalog).")))] = None,
    profiles: Annotated[Path | None, typer.Option("--profiles", help=(
        _("Profiles YAML (default profiles.yaml beside the root catalog).")))] = None,
    now: Annotated[str | None, typer.Option("--now", help=(
        _("The clock for delay_days, ISO date or date-time in UTC (default: now).")))] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_("Print JSON."))] = False,
) -> None:
    from .desensitise import publish

    result = publish(entry, profile=profile, to=to, name=name, catalog=source_catalog,
                     register_in=catalog, profiles=profiles, now=_parse_now(now),
                     command=" ".join(["oceandata", *sys.argv[1:]]))
    if as_json:
        sys.stdout.write(json.dumps({
            "name": result.name, "store": str(result.store), "snapshot": result.snapshot,
            "source": result.source, "version": result.version, "profile": result.profile,
            "profile_sha256": result.profile_sha256, "catalog": str(result.catalog),
            "changes": result.changes}, indent=2) + "\n")
        return
    typer.echo(f"published {result.name!r} from {result.source}@{result.version} by profile "
               f"{result.profile}: {result.store} (snapshot {result.snapshot})")
    for change in result.changes:
        typer.echo(f"  {change}")
    typer.echo(f"registered {result.name!r} (open) in {result.catalog}")


def install(app: Any) -> None:
    """Add ``publish`` to the `oceandata` typer *app*."""
    app.command("publish", help=_(
        "Derive an open copy of ENTRY by a declared profile, as a new versioned store, and\n"
        "register it as its own open entry citing the source (docs/desensitisation.md)."),
    )(publish_command)
