"""``oceandata argo search|load|ingest``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_i18n import _
from ..times import TIME_OPTION_HELP

argo_app = typer.Typer(help=_("Argo floats from a local GDAC mirror."), no_args_is_help=True)
out = Console(soft_wrap=True)

MirrorOpt = Annotated[Path | None, typer.Option(
    help=_("GDAC mirror folder (holds dac/ and the index); default the sample subset."))]
ModeOpt = Annotated[str, typer.Option(help=_("standard, research or expert."))]


@argo_app.command("search", help=_("Search the GDAC profile index by box, period, DAC and float."))
def argo_search(
    bbox: Annotated[str | None, typer.Option(help=_("W,S,E,N in degrees."))] = None,
    time: Annotated[str | None, typer.Option(help=_(TIME_OPTION_HELP))] = None,
    dac: Annotated[list[str] | None, typer.Option("--dac", help=_("DAC (repeat)."))] = None,
    wmo: Annotated[list[int] | None, typer.Option("--float", help=_("WMO number (repeat)."))]
    = None,
    mirror: MirrorOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help=_("Print JSON."))] = False,
) -> None:
    from ..io.subset import parse_bbox, parse_range
    from .index import search

    found = search(bbox=parse_bbox(bbox) if bbox else None,
                   time=parse_range(time, option="--time") if time else None,
                   dac=dac or None, wmo=wmo or None, mirror=mirror)
    columns = ["file", "time", "latitude", "longitude", "dac", "wmo", "cycle", "direction",
               "available"]
    if as_json:
        rows = found[columns].astype({"time": str, "wmo": int, "cycle": int})
        sys.stdout.write(json.dumps(rows.to_dict(orient="records"), indent=1) + "\n")
        return
    table = Table(title=f"{len(found)} profiles ({int(found['available'].sum())} in the mirror)")
    for col in columns:
        table.add_column(col)
    for row in found[columns].head(50).itertuples(index=False):
        table.add_row(*map(str, row))
    out.print(table)
    if len(found) > 50:
        out.print(f"... {len(found) - 50} more (use --json for all)", markup=False)


@argo_app.command("load", help=_(
        "Load floats with the Argo data-mode and QC rules and write them with provenance."))
def argo_load(
    wmo: Annotated[list[int], typer.Argument(help=_("Float WMO numbers."))],
    output: Annotated[Path, typer.Option("--output", "-o", help=_("OUT.nc, OUT.zarr or OUT.csv"))],
    mode: ModeOpt = "standard",
    bgc: Annotated[bool, typer.Option(help=_("Read the BGC Sprof files (DOXY...)."))] = False,
    levels: Annotated[bool, typer.Option(help=_("Interpolate to standard pressures."))] = False,
    mirror: MirrorOpt = None,
    overwrite: Annotated[bool, typer.Option(help=_("Replace OUT if it exists."))] = False,
) -> None:
    from ..io.export import export, output_format, with_provenance
    from .reader import load, to_standard_levels

    output_format(output)
    ds = load(wmo, mode=mode, bgc=bgc, mirror=mirror)
    if levels:
        ds = to_standard_levels(ds)
    ds = with_provenance(ds, source="argo:" + ",".join(map(str, wmo)),
                         request={"mode": mode, "bgc": bgc, "levels": levels},
                         command=" ".join(["oceandata", *sys.argv[1:]]))
    written = export(ds, output, overwrite=overwrite)
    out.print(f"wrote {written}: {ds.sizes['profile']} profiles, modes "
              f"{ds.attrs['argo_data_modes']}, user mode {mode}", markup=False)


@argo_app.command("ingest", help=_(
        "Append the floats' new profiles to one store (keyed by float, cycle, direction)."))
def argo_ingest(
    wmo: Annotated[list[int] | None, typer.Argument(help=_("Floats (default: every float)."))]
    = None,
    store: Annotated[Path, typer.Option("--store", help=_("Icechunk store of profiles."))]
    = Path("argo.icechunk"),
    mode: ModeOpt = "standard",
    mirror: MirrorOpt = None,
    register: Annotated[Path | None, typer.Option(help=_("Catalog YAML to add it to."))] = None,
    name: Annotated[str, typer.Option(help=_("Catalog entry name."))] = "argo_profiles",
) -> None:
    from .index import mirror_path
    from .store import ingest_floats

    floats = wmo or sorted({int(p.parent.name) for p in
                            mirror_path(mirror).glob("dac/*/*/*_prof.nc")})
    added, snapshot = ingest_floats(floats, store, mode=mode, mirror=mirror,
                                    command=" ".join(["oceandata", *sys.argv[1:]]))
    out.print(f"{added} new profiles" + (f" (snapshot {snapshot})" if snapshot else
                                         "; nothing to do"), markup=False)
    if register is not None:
        from ..ingest.register import register_store
        from .store import ARGO_DEFAULTS

        register_store(register, name, store, defaults=ARGO_DEFAULTS)
        out.print(f"registered {name!r} in {register}", markup=False)

