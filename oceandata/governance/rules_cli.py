"""``oceandata catalog grades``: every entry's classification and its release today."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..cli_i18n import _


def catalog_grades(
    path: Annotated[Path | None, typer.Argument(help=_("Catalog YAML (default: root)."))] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_("Print JSON."))] = False,
) -> None:
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from ..catalog import open_catalog
    from .rules import effective_release, load_negative_list, negative_list_path

    cat = open_catalog(path)
    negative = load_negative_list(root=cat.path)
    rows: list[dict[str, Any]] = []
    for name, entry in cat.entries.items():
        c = entry.metadata.classification
        release, reason = effective_release(entry, negative=negative)
        rows.append({"name": name, "category": c.category, "grade": c.grade,
                     "owner": c.owner, "declared": c.release, "release": release,
                     "reason": reason,
                     "embargo_until": c.embargo_until.isoformat() if c.embargo_until else None,
                     "groups": entry.metadata.access.groups})
    if as_json:
        sys.stdout.write(json.dumps({"catalog": str(cat.path),
                                     "negative_list": str(negative_list_path(cat.path) or ""),
                                     "entries": rows}, indent=2) + "\n")
        return
    table = Table(title=f"{cat.path} (negative list: {negative_list_path(cat.path) or 'none'})")
    for col in ("name", "category", "grade", "owner", "declared", "release", "reason"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(str(row[k]) for k in ("name", "category", "grade", "owner",
                                              "declared", "release", "reason")))
    Console().print(table)


def install(app: Any) -> None:
    """Add ``catalog grades`` to the `oceandata` typer *app*."""
    from ..cli import catalog_app

    catalog_app.command("grades", help=_(
        "List every entry's category, grade, owner, declared release and release today\n"
        "(after the site's negative list and any embargo), with the reason."),
    )(catalog_grades)
