"""``oceandata audit``: verify, export, prune and show the audit trail.

For administrators on the platform's machine: the commands open the trail directly
(``OCEANDATA_GOVERNANCE__AUDIT_URL``, else ``<data dir>/audit.sqlite``); see docs/audit.md.

- ``oceandata audit verify [--json] [--file EXPORT.jsonl]``: walk the chain; exit 0 when
  intact, 1 (one line naming the first broken record) when not;
- ``oceandata audit export [--since 7d|DATE] [--action X] [--output FILE]``: JSON lines for
  a SIEM (a file is written under a temporary name, then renamed);
- ``oceandata audit prune [--json]``: remove records older than the retention
  (``governance.audit_retention_days``, 180), leaving an anchor;
- ``oceandata audit show [--action X] [--since ...] [--limit N] [--json]``: a table.
"""

from __future__ import annotations

import collections
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from ..cli_i18n import _
from ..errors import DataError, UsageError

audit_app = typer.Typer(help=_("The tamper-evident audit trail: verify, export, prune, show."),
                        no_args_is_help=True)

SinceOpt = Annotated[str | None, typer.Option(
    help=_("From this UTC day on: 12h, 1d, 7d, 2w back from now, or a date YYYY-MM-DD "
         "(whole UTC days)."))]
ActionOpt = Annotated[str | None, typer.Option(
    help=_("Only this action (hub.login), or a prefix ending in '.' (hub.)."))]
JsonOpt = Annotated[bool, typer.Option("--json", help=_("Print JSON instead of text."))]


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    """A database that cannot be reached is one line (exit 2), not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import audit

    try:
        yield
    except SQLAlchemyError as exc:
        from sqlalchemy.engine import make_url

        try:
            where = make_url(audit.audit_url()).render_as_string(hide_password=True)
        except Exception:  # the URL itself is what is wrong
            where = "OCEANDATA_GOVERNANCE__AUDIT_URL"
        cause = getattr(exc, "orig", None) or exc
        raise DataError(f"the audit trail {where} cannot be used: "
                        f"{audit._redact(str(cause), audit.audit_url())}") from None


def _since(text: str | None) -> Any:
    if text is None:
        return None
    from ..cli import parse_since

    return parse_since(text)


def _action(value: str | None) -> str | None:
    from . import audit

    if value is None:
        return None
    name = value.rstrip(".")
    if not audit.ACTION_RE.fullmatch(name) and not name.isidentifier():
        raise UsageError(f"--action {value[:40]!r}: give an action such as hub.login, or a "
                         "prefix such as hub.")
    return value


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--file {path}: {exc.strerror}") from None
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path} line {number} is not JSON: give a file written "
                                "by oceandata audit export") from None
            if not isinstance(rec, dict) or not {"id", "hash", "prev_hash"} <= set(rec):
                raise DataError(f"{path} line {number} is not an audit record")
            yield rec


@audit_app.command("verify", help=_(
        "Walk the chain and name the first broken record (exit 1), else exit 0."))
def verify_command(
    as_json: JsonOpt = False,
    file: Annotated[Path | None, typer.Option(
        "--file", help=_("Check an export (JSON lines) instead of the database."))] = None,
) -> None:
    from . import audit

    with _storage_errors():
        result = (audit.verify_records(_read_export(file)) if file is not None
                  else audit.verify())
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    elif result.ok:
        start = (f"from the anchor after record {result.anchor}" if result.anchor
                 else "from the first record")
        sys.stdout.write(f"audit trail intact: {result.records} records {start}, head "
                         f"{result.head_id} {result.head_hash}\n")
    else:
        sys.stderr.write(f"oceandata: audit trail broken at record {result.broken_id} "
                         f"({result.problem}): {result.message}\n")
    if not result.ok:
        raise typer.Exit(1)


@audit_app.command("export", help=_("Write records as JSON lines, oldest first, for a SIEM."))
def export_command(
    since: SinceOpt = None,
    action: ActionOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help=_("File to write (default: standard output)."))] = None,
) -> None:
    from . import audit

    first = _since(since)
    with _storage_errors():
        n = audit.export(output, since=first, action=_action(action))
    if output is not None:
        sys.stderr.write(f"{n} records written to {output}\n")


@audit_app.command("prune", help=_(
        "Remove records older than the retention (governance.audit_retention_days)."))
def prune_command(
    as_json: JsonOpt = False,
) -> None:
    from . import audit

    with _storage_errors():
        result = audit.prune()
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    elif result["anchor"] is None:
        sys.stdout.write(f"nothing older than {result['cutoff']}: no record removed\n")
    else:
        sys.stdout.write(f"{result['removed']} records older than {result['cutoff']} removed; "
                         f"the chain now starts after record {result['anchor']['through_id']} "
                         f"{result['anchor']['hash']}\n")


@audit_app.command("show", help=_("The newest records as a table (oldest of them first)."))
def show_command(
    action: ActionOpt = None,
    since: SinceOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000,
                                       help=_("The newest N records."))] = 50,
    as_json: JsonOpt = False,
) -> None:
    from rich.console import Console
    from rich.table import Table

    from . import audit

    first = _since(since)
    with _storage_errors():
        rows = list(collections.deque(
            audit.iter_records(since=first, action=_action(action)), maxlen=limit))
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    table = Table(title="audit trail" + (f" since {first} (UTC)" if first else ""))
    for col in ("id", "at (UTC)", "actor", "action", "target", "outcome", "source"):
        table.add_column(col, justify="right" if col == "id" else "left", overflow="fold")
    for rec in rows:
        table.add_row(str(rec["id"]), rec["at"][:19].replace("T", " "), rec["actor"] or "-",
                      rec["action"], rec["target"], rec["outcome"], rec["source"] or "-")
    out = Console(soft_wrap=True, markup=False, highlight=False)
    out.print(table)
    if not rows:
        out.print("no records")


def install(app: Any) -> None:
    """Add ``oceandata audit`` to the main typer *app*."""
    app.add_typer(audit_app, name="audit")
