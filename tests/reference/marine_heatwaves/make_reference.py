"""Regenerate the marine-heatwave reference tables from the original implementation.

The tables in this folder are the output of ``marineHeatWaves.detect`` by E. C. J. Oliver
(https://github.com/ecjoliver/marineHeatWaves), the reference implementation of the
Hobday et al. (2016) definition, run with its default options on the three OISST site
series of the sample data, for the full record and for a 1983-2012 climatology. The
module is not on PyPI and is not vendored here: fetch ``marineHeatWaves.py`` yourself
and give its path::

    python tests/reference/marine_heatwaves/make_reference.py /path/to/marineHeatWaves.py

``category`` is the Hobday et al. (2018) category of the peak, ``min(floor(
intensity_max_norm), 4)`` (``intensity_max_norm`` is ``1 + (sst - thresh) /
(thresh - seas)`` at the peak), named as upstream names them.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

HERE = Path(__file__).parent
SITES = {"WA": "oisst_WA.nc", "Med": "oisst_Med.nc", "NW_Atl": "oisst_NW_Atl.nc"}
PERIODS = {"full": None, "1983-2012": [1983, 2012]}
NAMES = np.array(["Moderate", "Strong", "Severe", "Extreme"])
COLUMNS = ["date_start", "date_peak", "date_end", "duration", "intensity_max",
           "intensity_mean", "intensity_var", "intensity_cumulative", "rate_onset",
           "rate_decline", "category"]


def main(module_path: str) -> None:
    """Run the reference ``detect`` and write one CSV per site and period."""
    spec = importlib.util.spec_from_file_location("marineHeatWaves", module_path)
    mhw_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mhw_module)
    series = Path(os.environ.get("OCEANDATA_SAMPLE_DATA", HERE.parents[3] / "shared/data"))
    for site, name in SITES.items():
        ds = xr.open_dataset(series / "series" / name)
        temp = ds["sst"].values.astype(float)
        t = np.array([d.toordinal() for d in pd.DatetimeIndex(ds["time"].values).date])
        for label, period in PERIODS.items():
            years = period or [int(ds["time"].dt.year.min()), int(ds["time"].dt.year.max())]
            events, _ = mhw_module.detect(t, temp.copy(), climatologyPeriod=years)
            table = pd.DataFrame({c: events[c] for c in COLUMNS[:-1]})
            norm = np.asarray(events["intensity_max_norm"], dtype=float)
            table["category"] = NAMES[np.minimum(np.floor(norm), 4).astype(int) - 1]
            table.to_csv(HERE / f"{site}_{label}.csv", index=False, float_format="%.10g")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_reference.py PATH/TO/marineHeatWaves.py")
    main(sys.argv[1])
