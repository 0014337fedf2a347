"""``oceandata publish-request ENTRY --project ID ...``: ask to publish an entry of a
project catalog to the open catalog (docs/projects.md).

The request goes to the allocations service (``POST api/projects/{id}/publish``) with the
user's JupyterHub token (:func:`oceandata.alloc.cli.call`); the service checks
membership, the licence and the entry's strict compliance, and stores the request for an
administrator's review. Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from ..cli_i18n import _
from ..errors import UsageError


def publish_request(
    entry: Annotated[str, typer.Argument(help=_("The entry of the project catalog."))],
    project: Annotated[int, typer.Option("--project", help=_("The project's id."))],
    licence: Annotated[str | None, typer.Option(
        "--licence", "--license", help=_("SPDX licence identifier, e.g. CC-BY-4.0."))] = None,
    citation: Annotated[str | None, typer.Option(
        "--citation", help=_("How to cite the data (text)."))] = None,
    author: Annotated[list[str] | None, typer.Option(
        "--author", help=_("An author as \"Name;Affiliation[;ORCID]\" (repeat for each)."))
    ] = None,
    title: Annotated[str | None, typer.Option(
        "--title", help=_("Title of the published data (default the entry's)."))] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help=_("Desensitisation profile to publish through."))] = None,
    as_json: Annotated[bool, typer.Option("--json", help=_("Print the request as JSON."))] = False,
) -> None:
    from .cli import call

    if project < 1:
        raise UsageError(_("--project: give the project's id (a positive integer; "
                           "`oceandata alloc projects` lists yours)"))
    if not licence or not licence.strip():
        raise UsageError(_("--licence is required to publish (an SPDX identifier, e.g. "
                           "CC-BY-4.0 or CC0-1.0)"))
    if not citation or not citation.strip():
        raise UsageError(_("--citation is required: how the data are to be cited"))
    if not author:
        raise UsageError(_("--author is required: \"Name;Affiliation[;ORCID]\", once per "
                           "author"))
    body: dict[str, Any] = {"entry": entry, "licence": licence, "citation": citation,
                            "authors": list(author)}
    if title:
        body["title"] = title
    if profile:
        body["profile"] = profile
    req = call("POST", f"projects/{project}/publish", body=body)
    if as_json:
        sys.stdout.write(json.dumps(req, indent=2) + "\n")
        return
    typer.echo(_("publish request #%(id)s filed for entry %(entry)s of project %(project)s "
                 "(version %(version)s, graded %(grade)s, compliance %(result)s): an "
                 "administrator will review it", id=req["id"], entry=req["entry"],
                 project=req["project"], version=req["snapshot"], grade=req["grade"],
                 result=req["compliance"].get("result") or "pass"))


def install(app: Any) -> None:
    """Add ``publish-request`` to the main application."""
    app.command("publish-request", help=_(
        "Request the publication of a project entry: an administrator reviews it; on\n"
        "approval the version is frozen, copied to the open catalog and given a persistent\n"
        "identifier and a landing page."),
    )(publish_request)
