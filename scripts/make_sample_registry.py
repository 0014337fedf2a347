"""Build ``oceandata/registry/sample_data.tsv`` from the shared data folder's ``REGISTRY.tsv``.

Each registry path gets a short, predictable snake_case name (see :func:`short_name`); the
size, sha256 and public URL are copied unchanged (``-`` for *derived* files, which have no
public URL). A path no rule knows is an error, so a new sample file forces a naming decision.

Usage::

    python scripts/make_sample_registry.py ../shared/data/REGISTRY.tsv \
        [-o oceandata/registry/sample_data.tsv]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "oceandata" / "registry" / "sample_data.tsv"
COLUMNS = ("name", "path", "sha256", "size", "url")

#: Single files with a name of their own.
FIXED: dict[str, str] = {
    "argo/gdac/ar_index_global_prof.txt": "argo_index_prof",
    "argo/gdac/ar_index_global_meta.txt": "argo_index_meta",
    "gridded/sst_ndjfm_anom.nc": "sst_ndjfm_anom",
    "gridded/sstdata_netcdf.nc": "str_sst_climatology",
    "gridded/tos_ocean_bipolar_grid.nc": "tos_bipolar",
    "gridded/pop.nc": "pop_surface",
    "gridded/za_PHC2_T_S_gx1v3.nc": "phc2_ts_zonal",
    "gridded/foam.ocean.nc": "foam_ocean",
    "gridded/nemo_seasia_e3t.nc": "nemo_seasia_e3t",
    "gridded/etopo20.cdf": "etopo20",
    "gridded/etopo60.cdf": "etopo60",
    "gridded/basin_mask.nc": "basin_mask",
    "series/CO-OPS_9415020_wl.csv": "tide_point_reyes",
}

#: Families of files: a pattern over the path and how its groups make the name.
RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"gridded/cobe-sst2/year(\d{4})\.nc"), "cobe_sst2_{0}"),
    (re.compile(r"dsg/dsg_(\w+)_example\.nc"), "dsg_{0}"),
    (re.compile(r"series/oisst_(\w+)\.(nc|csv)"), "oisst_{0}_{1}"),
    (re.compile(r"series/sst_(\w+)\.rda"), "oisst_{0}_rda"),
    (re.compile(r"argo/gdac/dac/\w+/(\d+)/\1_(prof|meta|Sprof|tech|Rtraj)\.nc"), "argo_{0}_{1}"),
    (re.compile(r"argo/gdac/dac/\w+/\d+/profiles/(\w+)\.nc"), "argo_{0}"),
]

_SNAKE = re.compile(r"[a-z][a-z0-9_]*")


def short_name(path: str) -> str:
    """Return the short name of a registry *path*.

    Parameters
    ----------
    path
        A path of ``REGISTRY.tsv``, e.g. ``gridded/cobe-sst2/year1950.nc``.

    Returns
    -------
    str
        Lower-case snake_case, e.g. ``cobe_sst2_1950``.

    Raises
    ------
    ValueError
        When no rule names the path.
    """
    if path in FIXED:
        return FIXED[path]
    for pattern, template in RULES:
        match = pattern.fullmatch(path)
        if match:
            return template.format(*match.groups()).lower()
    raise ValueError(f"no naming rule for {path!r}: add it to FIXED or RULES in {__file__}")


def build(registry: Path) -> list[dict[str, str]]:
    """Read *registry* (columns path, size, sha256, url) and return the rows to write."""
    with registry.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    missing = {"path", "size", "sha256", "url"} - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"{registry}: missing columns {sorted(missing)}")
    out: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        name = short_name(row["path"])
        if not _SNAKE.fullmatch(name):
            raise ValueError(f"name {name!r} of {row['path']} is not snake_case")
        if name in seen:
            raise ValueError(f"name {name!r} given to both {seen[name]} and {row['path']}")
        seen[name] = row["path"]
        if not re.fullmatch(r"[0-9a-f]{64}", row["sha256"]):
            raise ValueError(f"{row['path']}: {row['sha256']!r} is not a sha256")
        url = row["url"].strip()
        out.append({"name": name, "path": row["path"], "sha256": row["sha256"],
                    "size": str(int(row["size"])),
                    "url": "-" if url in ("", "-", "derived") else url})
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("registry", type=Path, help="path of the shared REGISTRY.tsv")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"where to write (default {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    rows = build(args.registry)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(args.output)
    print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
