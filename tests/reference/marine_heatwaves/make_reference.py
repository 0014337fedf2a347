"""Regenerate the marine-heatwave reference tables from the original implementation.

The tables in this folder are the output of ``marineHeatWaves.detect`` by E. C. J. Oliver
(https://github.com/ecjoliver/marineHeatWaves), the reference implementation of the
Hobday et al. (2016) definition, run unmodified with its default options on the three
OISST site series of the sample data, for the full record and for a 1983-2012
climatology. The module is not on PyPI and is not vendored here: fetch
``marineHeatWaves.py`` yourself and run this script with an interpreter that has what it
needs (numpy < 2: it uses ``np.NaN``; scipy; plus xarray and netCDF4 to read the
series)::

    python tests/reference/marine_heatwaves/make_reference.py /path/to/marineHeatWaves.py

``category`` is upstream's own ``category`` column (the Hobday et al. 2018 category of
the day of largest ``(sst - thresh) / (thresh - seas)``, i.e. the highest category
reached on any day of the event). ``p_moderate`` ... ``p_extreme`` are upstream's
``duration_moderate`` ... ``duration_extreme`` divided by ``duration``.
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
COLUMNS = ["date_start", "date_peak", "date_end", "duration", "intensity_max",
           "intensity_mean", "intensity_var", "intensity_cumulative", "rate_onset",
           "rate_decline", "category"]
SHARES = {"p_moderate": "duration_moderate", "p_strong": "duration_strong",
          "p_severe": "duration_severe", "p_extreme": "duration_extreme"}


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
            table = pd.DataFrame({c: events[c] for c in COLUMNS})
            duration = np.asarray(events["duration"], dtype=float)
            for col, days in SHARES.items():
                table[col] = np.asarray(events[days], dtype=float) / duration
            table.to_csv(HERE / f"{site}_{label}.csv", index=False, float_format="%.10g")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_reference.py PATH/TO/marineHeatWaves.py")
    main(sys.argv[1])
