"""Argo: oceandata's user modes against argopy's, both reading the same local GDAC mirror.

argopy (``DataFetcher(src="gdac", gdac=<mirror>, mode=...)``) reads the multi-profile
``<wmo>_prof.nc`` files of the sample mirror offline; every internet connection is refused and
recorded while it runs, so the comparison can never reach a data server. Its "points"
collection and oceandata's ragged dataset are turned into one table each, with a row per
level: platform, cycle, direction, PRES, TEMP, PSAL. In ``expert`` mode argopy returns raw
and adjusted variables side by side, so its own ``ds.argo.datamode.merge()`` picks the
values by data mode, as oceandata does.

Floats: the ten of the sample mirror, whose profiles are in data modes R (2901623),
D (2902696, 5900446, 1900857, 3902131, 5900865), R+D (2901746), A (2901780), A+D (4901079)
and R+A (2902269).

Two rules differ, each marked ``xfail(strict=True)`` on exactly the cases it touches:

- Levels in ``expert`` mode: argopy keeps every level whose *raw* ``PRES`` is present
  (``profile2point`` drops missing raw PRES before any data-mode merge), so in A/D profiles
  it keeps levels whose ``PRES_ADJUSTED`` is missing (flag 4), with a merged PRES of NaN;
  oceandata drops levels without a pressure in the data-mode-selected PRES.
- Pressure resolution: argopy rounds every PRES variable to 0.1 dbar
  (``pre_process_multiprof``); oceandata keeps the file's values.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

argopy = pytest.importorskip("argopy")

from oceandata import argo  # noqa: E402
from oceandata.argo.index import default_mirror  # noqa: E402

# argopy's own deprecation and DAC-name warnings are not under test here
pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::Warning:argopy.*")]

MODES = ("standard", "research", "expert")
#: Sample floats and the data modes of their profiles.
FLOATS = {2901623: "R", 2902696: "D", 2901746: "R+D", 2901780: "A", 4901079: "A+D",
          2902269: "R+A", 5900446: "D", 1900857: "D", 3902131: "D", 5900865: "D"}
KEY = ["platform", "cycle", "direction"]

LEVEL_RULE = ("argopy keeps levels whose raw PRES is present even where the data-mode-selected "
              "PRES_ADJUSTED is missing (flag 4): profile2point drops missing raw PRES before "
              "the data-mode merge; oceandata drops levels without a selected PRES")
#: (float, mode) -> number of extra argopy levels (all with a missing merged PRES).
LEVEL_DIFFERENCES = {(2901780, "expert"): 8, (4901079, "expert"): 7,
                     (2902269, "expert"): 10638}
ROUNDING_RULE = ("argopy rounds PRES to 0.1 dbar (pre_process_multiprof); oceandata keeps "
                 "the file's pressure resolution (2902696 has pressures off the 0.1 dbar grid)")
ROUNDED = {(2902696, mode) for mode in MODES}


def _cases(xfails: dict | set, reason: str) -> list:
    return [pytest.param(wmo, mode, id=f"{wmo}-{mode}",
                         marks=[pytest.mark.xfail(strict=True, reason=reason)]
                         if (wmo, mode) in xfails else [])
            for wmo in FLOATS for mode in MODES]


@contextmanager
def _no_network():
    """Refuse (and record) every internet socket connection inside the block."""
    attempts: list = []
    original = socket.socket.connect

    def refuse(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network disabled in this test: connection to {address}")
        return original(sock, address)

    socket.socket.connect = refuse
    try:
        yield attempts
    finally:
        socket.socket.connect = original


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    root = default_mirror()
    cachedir = tmp_path_factory.mktemp("argopy-cache")
    with argopy.set_options(cachedir=str(cachedir), api_timeout=5):
        yield root


@cache
def _oceandata(wmo: int, mode: str) -> pd.DataFrame:
    ds = argo.load(wmo, mode=mode)
    rows = ds["row_size"].values
    return pd.DataFrame({
        "platform": np.repeat(ds["platform_number"].values, rows).astype(int),
        "cycle": np.repeat(ds["cycle_number"].values, rows).astype(int),
        "direction": np.repeat(ds["direction"].values, rows).astype(str),
        "data_mode": np.repeat(ds["data_mode"].values, rows).astype(str),
        **{p: ds[p].values.astype("f8") for p in ("PRES", "TEMP", "PSAL")},
    })


@cache
def _argopy(wmo: int, mode: str, root: Path) -> pd.DataFrame:
    with _no_network() as attempts:
        ds = argopy.DataFetcher(src="gdac", gdac=str(root), mode=mode,
                                cache=False).float(wmo).to_xarray()
        if mode == "expert" and ds.sizes["N_POINTS"]:
            ds = ds.argo.datamode.merge()  # argopy's own choice of values by data mode
    assert not attempts, f"argopy tried the network: {attempts}"
    # research mode drops DATA_MODE: its filter keeps delayed-mode (D) data only
    modes = ds["DATA_MODE"].values if "DATA_MODE" in ds else np.full(ds.sizes["N_POINTS"], "D")
    return pd.DataFrame({
        "platform": ds["PLATFORM_NUMBER"].values.astype(int),
        "cycle": ds["CYCLE_NUMBER"].values.astype(int),
        "direction": ds["DIRECTION"].values.astype(str),
        "data_mode": modes.astype(str),
        **{p: ds[p].values.astype("f8") for p in ("PRES", "TEMP", "PSAL")},
    })


def _argopy_pressure(pres: np.ndarray) -> np.ndarray:
    """Pressures as argopy stores them: float32, rounded to 0.1 dbar."""
    return np.round(pres.astype("f4"), 1).astype("f8")


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in (platform, cycle, direction, pressure at argopy's resolution, TEMP, PSAL) order."""
    table = table.assign(_p=_argopy_pressure(table["PRES"].values))
    return table.sort_values([*KEY, "_p", "TEMP", "PSAL"], kind="stable",
                             ignore_index=True).drop(columns="_p")


@pytest.mark.parametrize(("wmo", "mode"), _cases(set(), ""))
def test_same_profiles(mirror, wmo, mode) -> None:
    """The same (platform, cycle, direction) profiles, with the same data mode."""
    ours = _oceandata(wmo, mode).groupby(KEY)["data_mode"].unique()
    theirs = _argopy(wmo, mode, mirror).groupby(KEY)["data_mode"].unique()
    assert sorted(ours.index) == sorted(theirs.index)
    for key in ours.index:
        assert list(ours[key]) == list(theirs[key]), key
    if mode == "research":
        assert set(_oceandata(wmo, mode)["data_mode"]) <= {"D"}


@pytest.mark.parametrize(("wmo", "mode"), _cases(LEVEL_DIFFERENCES, LEVEL_RULE))
def test_same_levels_per_profile(mirror, wmo, mode) -> None:
    ours = _oceandata(wmo, mode).groupby(KEY).size()
    theirs = _argopy(wmo, mode, mirror).groupby(KEY).size()
    differ = ours.index[ours.values != theirs.reindex(ours.index).values]
    assert not len(differ), {k: (int(ours[k]), int(theirs[k])) for k in differ[:10]}
    assert ours.sum() == theirs.sum()


@pytest.mark.parametrize(("wmo", "mode"), _cases(set(), ""))
def test_only_difference_in_levels_is_the_missing_adjusted_pressure(mirror, wmo, mode) -> None:
    """Beyond the expert-mode level rule, the levels are the same: argopy's extra levels are
    exactly those without a (data-mode-selected) pressure, and there are as many as known."""
    ours, theirs = _oceandata(wmo, mode), _argopy(wmo, mode, mirror)
    extra = theirs["PRES"].isna()
    assert int(extra.sum()) == LEVEL_DIFFERENCES.get((wmo, mode), 0)
    assert not ours["PRES"].isna().any()
    assert ours.groupby(KEY).size().to_dict() == theirs[~extra].groupby(KEY).size().to_dict()


@pytest.mark.parametrize(("wmo", "mode"), _cases(set(), ""))
def test_same_values(mirror, wmo, mode) -> None:
    """TEMP and PSAL equal; PRES equal at argopy's 0.1 dbar resolution (and within 0.05 dbar).

    argopy's levels without a pressure (see the level rule) are left out here; the test
    above checks that they are the only extra ones.
    """
    ours = _sorted(_oceandata(wmo, mode))
    theirs = _argopy(wmo, mode, mirror)
    theirs = _sorted(theirs[theirs["PRES"].notna()])
    assert len(ours) == len(theirs)
    pd.testing.assert_frame_equal(ours[[*KEY, "data_mode"]], theirs[[*KEY, "data_mode"]])
    np.testing.assert_array_equal(_argopy_pressure(ours["PRES"].values), theirs["PRES"].values)
    np.testing.assert_allclose(ours["PRES"], theirs["PRES"], rtol=0, atol=0.05 + 1e-4)
    for param in ("TEMP", "PSAL"):
        np.testing.assert_allclose(ours[param], theirs[param], rtol=1e-6, atol=0,
                                   equal_nan=True, err_msg=param)


@pytest.mark.parametrize(("wmo", "mode"), _cases(ROUNDED, ROUNDING_RULE))
def test_same_pressure_at_full_resolution(mirror, wmo, mode) -> None:
    ours = _sorted(_oceandata(wmo, mode))
    theirs = _argopy(wmo, mode, mirror)
    theirs = _sorted(theirs[theirs["PRES"].notna()])
    np.testing.assert_allclose(ours["PRES"], theirs["PRES"], rtol=0, atol=1e-3)
