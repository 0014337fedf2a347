"""Command line of :mod:`oceandata.governance.backup`.

``oceandata admin backup|restore|drill|snapshots`` and ``oceandata store gc``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..cli_i18n import _

admin_app = typer.Typer(help=_("Platform administration: backups, restores and restore drills."),
                        no_args_is_help=True)
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)

JsonOpt = Annotated[bool, typer.Option("--json", help=_("Print JSON."))]
WaitOpt = Annotated[float, typer.Option(
    "--wait", help=_("Seconds to wait for each store's write lock."))]


def _json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=1) + "\n")


@admin_app.command("backup", help=_(
        "Back up every store (writers paused), the databases, catalogs and secrets."))
def admin_backup(as_json: JsonOpt = False, wait: WaitOpt = 120.0) -> None:
    from . import backup

    manifest = backup.backup(wait=wait, echo=None if as_json else
                             (lambda line: out.print(line, markup=False)))
    if as_json:
        _json(manifest)
    else:
        snap, secs = manifest["snapshot"], manifest["seconds"]
        out.print(f"backup {snap['short_id']} ({snap['id']}) in {backup.shown_repository()}: "
                  f"{len(manifest['stores'])} stores, "
                  f"{len([d for d in manifest['databases'] if d.get('file')])} databases, "
                  f"{len(manifest['catalogs'])} catalog files; {secs['total']:.1f} s "
                  f"(copies {secs['copies']:.1f} s, upload {secs['upload']:.1f} s)",
                  markup=False)
    bad = [s["path"] for s in manifest["stores"] if s["problems"]]
    if bad:
        err.print(f"oceandata: warning: stores backed up with problems (see `oceandata store "
                  f"verify`): {', '.join(bad)}", markup=False)
        raise typer.Exit(1)


@admin_app.command("restore", help=_("Restore a backup into a folder; print how to put it live."))
def admin_restore(
    snapshot: Annotated[str, typer.Option("--snapshot", help=_("latest, or an id from "
                                          "`oceandata admin snapshots`."))],
    to: Annotated[Path, typer.Option("--to", help=_("New or empty folder to restore into."))],
    in_place: Annotated[bool, typer.Option(
        "--in-place", help=_("Also put the stores back at their live paths (under their "
                           "locks; the old folders are kept)."))] = False,
    wait: WaitOpt = 120.0,
    as_json: JsonOpt = False,
) -> None:
    from . import backup

    result = backup.restore(snapshot, to, in_place=in_place, wait=wait)
    if as_json:
        _json({k: v for k, v in result.items() if k != "manifest"}
              | {"started_at": result["manifest"]["started_at"]})
        return
    out.print(f"restored {result['snapshot'][:8]} (backup of "
              f"{result['manifest']['started_at']}) into {result['to']} in "
              f"{result['seconds']:.1f} s", markup=False)
    for live, kept in result["replaced"].items():
        out.print(f"store {live} restored in place" + (f"; the old one is {kept}" if kept
                                                      else ""), markup=False)
    out.print("To put it live:", markup=False)
    for line in result["procedure"]:
        out.print(line, markup=False)


@admin_app.command("drill", help=_(
        "Restore the latest backup into a scratch folder and verify it against the live system."))
def admin_drill(as_json: JsonOpt = False) -> None:
    from . import backup

    report = backup.drill(echo=None if as_json else
                          (lambda line: out.print(line, markup=False)))
    if as_json:
        _json(report)
    else:
        out.print(f"drill {'PASSED' if report['ok'] else 'FAILED'}: RTO "
                  f"{report['rto_seconds']:.1f} s (restore {report['restore_seconds']:.1f} s"
                  f" + verification {report['verify_seconds']:.1f} s), RPO "
                  f"{report['rpo_seconds']:.0f} s; report {report['report']}", markup=False)
    if not report["ok"]:
        more = len(report["failures"]) - 1
        err.print(f"oceandata: drill failed: {report['failures'][0]}"
                  + (f" (and {more} more in the report)" if more else ""), markup=False)
        raise typer.Exit(1)


@admin_app.command("snapshots", help=_(
        "List the backups in the repository, with their last drill."))
def admin_snapshots(as_json: JsonOpt = False) -> None:
    from . import backup

    rows = backup.snapshots()
    if as_json:
        _json(rows)
        return
    table = Table(title=backup.shown_repository())
    for col in ("snapshot", "time", "copies began", "stores", "databases", "drill"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["short_id"], r["time"], r["started_at"] or "", str(r["stores"]),
                      str(r["databases"]), r["drill"] or "never")
    out.print(table)


def store_gc(
    store: Annotated[Path, typer.Argument(help=_("Icechunk store."))],
    older_than: Annotated[float, typer.Option(
        "--older-than", help=_("Expire snapshots older than this many days, then delete what "
                             "only they held."))],
    wait: Annotated[float, typer.Option("--wait", help=_("Seconds to wait for the store's "
                                                       "lock."))] = 0.0,
    as_json: JsonOpt = False,
) -> None:
    from . import backup

    result = backup.gc_store(store, older_than=backup.cutoff_days(older_than), wait=wait)
    if as_json:
        _json(result)
        return
    out.print(f"{result['store']}: {len(result['expired'])} snapshots expired before "
              f"{result['cutoff']}; deleted {result['snapshots_deleted']} snapshots, "
              f"{result['manifests_deleted']} manifests, {result['chunks_deleted']} chunks "
              f"({result['bytes_deleted']} bytes); backup {result['backup'][:8]} (drilled "
              f"{result['drill']}) holds them", markup=False)


def install(app: Any) -> None:
    """Add ``admin`` to the `oceandata` typer *app*, and ``gc`` to ``oceandata store``."""
    from ..ingest.cli import store_app

    app.add_typer(admin_app, name="admin")
    store_app.command("gc", help=_(
        "Expire old snapshots and garbage-collect (needs a drilled backup newer than the cutoff)."),
    )(store_gc)
