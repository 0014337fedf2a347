"""Make the README figure: the COBE-SST2 SST anomaly of December 1997 (El Niño) as a PNG.

Usage: ``python scripts/make_readme_figure.py [OUTPUT.png]`` (default
``docs/img/sst_anomaly_1997.png``; ``make figure`` runs it). The anomaly is relative to the
1971-2000 monthly climatology; the map is drawn with :func:`oceandata.viz.field_map`
(offline ETOPO coastlines) and written with :func:`oceandata.viz.save`, which needs
Playwright and a Chromium (``OCEANDATA_CHROMIUM`` or on the ``PATH``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import oceandata
from oceandata.analysis import anomaly, climatology
from oceandata.viz import field_map, save

DEFAULT = Path(__file__).resolve().parents[1] / "docs" / "img" / "sst_anomaly_1997.png"


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else DEFAULT
    sst = oceandata.open_dataset("cobe_sst2", time=("1971", "2000")).sst
    clim = climatology(sst, baseline=("1971", "2000"))
    dec97 = oceandata.open_dataset("cobe_sst2", time=("1997-12", "1997-12")).sst
    anom = anomaly(dec97, clim).compute().rename("sst_anomaly")
    anom.attrs.update(long_name="SST anomaly", units="degC")
    nino = float(anom.sel(lat=slice(5, -5), lon=slice(190, 240)).mean())
    if nino < 1.5:  # the 1997-98 El Nino must be there
        raise SystemExit(f"unexpected Nino 3.4 anomaly in 1997-12: {nino:.2f} degC")
    fig = field_map(anom, cmap="balance", clim=(-4, 4),
                    title="COBE-SST2 SST anomaly, December 1997 (vs 1971-2000), °C")
    path = save(fig, target)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
