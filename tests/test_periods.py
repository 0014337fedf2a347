"""One period syntax: every public function that takes a period reads it the same way.

Each function of :data:`CALLS` is called with every form of :data:`FORMS` for the same
years and must give the same result; every form of :data:`BAD` must raise a one-line
:class:`~oceandata.errors.UsageError` naming the argument and giving a valid example.
:func:`test_every_period_parameter_is_listed` discovers the public functions (and the
command-line commands) with a period parameter, so a new one cannot be missed. The
synthetic grid is small (2 x 2 points, 33 years daily); the heatwave series is the real
Western Australia OISST sample.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import json
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import oceandata
from oceandata.errors import UsageError
from oceandata.times import Period, period

#: Parameter names that take a period.
PERIOD_PARAMETERS = {"baseline", "climatology_period", "time", "period"}
#: Packages whose public functions are walked for a period parameter.
PACKAGES = ("oceandata.analysis", "oceandata.io", "oceandata.viz", "oceandata.catalog",
            "oceandata.argo", "oceandata.ingest")

#: Every accepted form of the whole years ``a`` to ``b``, inclusive.
FORMS: dict[str, Callable[[int, int], Any]] = {
    "int years": lambda a, b: (a, b),
    "numpy int years": lambda a, b: [np.int64(a), np.int32(b)],
    "text years": lambda a, b: (str(a), str(b)),
    "START/END": lambda a, b: f"{a}/{b}",
    "START/END spaced": lambda a, b: f" {a} / {b} ",
    "months": lambda a, b: (f"{a}-01", f"{b}-12"),
    "days": lambda a, b: (f"{a}-01-01", f"{b}-12-31"),
    "days START/END": lambda a, b: f"{a}-01-01/{b}-12-31",
    "date": lambda a, b: (dt.date(a, 1, 1), dt.date(b, 12, 31)),
    # a datetime is an instant: the whole years end at the last microsecond
    "datetime": lambda a, b: (dt.datetime(a, 1, 1), dt.datetime(b, 12, 31, 23, 59, 59, 999999)),
    "Timestamp": lambda a, b: (pd.Timestamp(f"{a}-01-01"),
                               pd.Timestamp(f"{b}-12-31T23:59:59.999999")),
    "datetime64[us]": lambda a, b: np.array([f"{a}-01-01", f"{b}-12-31T23:59:59.999999"],
                                            dtype="datetime64[us]"),
    "datetime64[D]": lambda a, b: (np.datetime64(f"{a}-01-01"), np.datetime64(f"{b}-12-31")),
    "datetime64[Y] array": lambda a, b: np.array([str(a), str(b)], dtype="datetime64[Y]"),
    "slice": lambda a, b: slice(str(a), str(b)),
    "Period": lambda a, b: period(f"{a}/{b}"),
}

#: Bad periods, each with the reason its message must give.
BAD: dict[str, tuple[Any, str]] = {
    "end before start": ("2012/1983", r"start \(2012\) is after end \(1983\)"),
    "end before start, pair": ((2012, 1983), r"start \(2012\) is after end \(1983\)"),
    "one year alone": ("1983", r"'1983' is not START/END"),
    "one int year": (1983, r"1983 is not a pair"),
    "one item": (("1983",), r"is not a pair"),
    "three items": ((1983, 1990, 2012), r"is not a pair"),
    "unordered set": ({1983, 2012}, r"is not a pair"),
    "words": ("last decade", r"is not START/END"),
    "unparseable end": (("1983", "soon"), r"'soon' is not an ISO date"),
    "month 13": (("1983-13", "2012"), r"month 13, outside 1\.\.12"),
    "fractional year": ((1983.5, 2012), r"1983.5 is not a date"),
    "NaT": ((pd.NaT, "2012"), r"NaT"),
}


# --------------------------------------------------------------------------- data


def _grid() -> xr.Dataset:
    """Deterministic daily SST on 2 x 2 points of the Niño 3.4 box, 1982-2014."""
    time = pd.date_range("1982-01-01", "2014-12-31", freq="D")
    rng = np.random.default_rng(14)
    years = (time - time[0]).days.to_numpy() / 365.25
    cycle = 27 + 1.5 * np.sin(2 * np.pi * time.day_of_year.to_numpy() / 365.25)
    sst = (cycle + 0.03 * years)[:, None, None] + rng.normal(0, 0.4, (time.size, 2, 2))
    return xr.Dataset(
        {"sst": (("time", "lat", "lon"), sst.astype(np.float32),
                 {"standard_name": "sea_surface_temperature", "units": "degC"})},
        coords={"time": ("time", time, {"standard_name": "time", "axis": "T"}),
                "lat": ("lat", [-2.5, 2.5], {"standard_name": "latitude",
                                             "units": "degrees_north"}),
                "lon": ("lon", [190.0, 200.0], {"standard_name": "longitude",
                                                "units": "degrees_east"})})


@dataclass
class Data:
    grid: xr.Dataset
    grid_file: Path
    series: xr.DataArray


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    grid = _grid()
    path = tmp_path_factory.mktemp("periods") / "grid.nc"
    grid.to_netcdf(path)
    series = oceandata.open_dataset("oisst_wa")["sst"].load()
    return Data(grid, path, series)


def _estimate(d: Data, p: Any) -> Any:
    from oceandata.io.estimate import estimate

    e = estimate(d.grid, time=p)
    return e.dims, e.read_bytes, e.read_chunks


def _mhw_plot(d: Data, p: Any) -> pd.DataFrame:
    from oceandata.analysis import marine_heatwaves
    from oceandata.viz.series import mhw_plot

    events, clim = marine_heatwaves(d.series)
    overlay = mhw_plot(d.series, clim, events, period=p)
    return pd.concat([el.dframe().assign(group=el.group, label=el.label)
                      for el in overlay], ignore_index=True)


def _read_cost(d: Data, p: Any) -> int:
    from oceandata.ingest.chunks import read_cost

    return read_cost(d.grid, {"time": 365, "lat": 2, "lon": 2}, time=p)


def _read_plan(d: Data, p: Any) -> tuple[int, int]:
    from oceandata.ingest.chunks import read_plan

    return read_plan(d.grid, {"time": 365, "lat": 2, "lon": 2}, time=p)


def _catalog_search(d: Data, p: Any) -> list[str]:
    from oceandata.catalog import open_catalog

    return sorted(open_catalog().search(time=p).entries)


def _argo_search(d: Data, p: Any) -> list[str]:
    from oceandata.argo.index import search

    return list(search(time=p)["file"])


#: Every public function taking a period: how to call it with period *p* (parameter,
#: call, and the years used: wide enough to cut the data, short where the call is slow).
CALLS: dict[str, tuple[str, Callable[[Data, Any], Any], tuple[int, int]]] = {
    "oceandata.analysis.climatologies.climatology": (
        "baseline", lambda d, p: oceandata.analysis.climatology(d.grid.sst, baseline=p),
        (1983, 2012)),
    "oceandata.analysis.climatologies.anomaly": (
        "baseline", lambda d, p: oceandata.analysis.anomaly(d.grid.sst, baseline=p),
        (1983, 2012)),
    "oceandata.analysis.eof.nino34": (
        "baseline", lambda d, p: oceandata.analysis.nino34(d.grid.sst, baseline=p),
        (1983, 2012)),
    "oceandata.analysis.mhw.marine_heatwaves": (
        "climatology_period",
        lambda d, p: oceandata.analysis.marine_heatwaves(d.series, climatology_period=p)[0],
        (1983, 2012)),
    "oceandata.analysis.trends.trend": (
        "period", lambda d, p: oceandata.analysis.trend(d.grid.sst, period=p), (1993, 2012)),
    "oceandata.io.subset.subset": (
        "time", lambda d, p: oceandata.subset(d.grid, time=p), (1990, 1991)),
    "oceandata.io.open.open_dataset": (
        "time", lambda d, p: oceandata.open_dataset(d.grid_file, time=p).load(), (1990, 1991)),
    "oceandata.io.estimate.estimate": ("time", _estimate, (1990, 1991)),
    "oceandata.ingest.chunks.read_cost": ("time", _read_cost, (1990, 1991)),
    "oceandata.ingest.chunks.read_plan": ("time", _read_plan, (1990, 1991)),
    "oceandata.viz.series.mhw_plot": ("period", _mhw_plot, (2010, 2011)),
    "oceandata.catalog.core.Catalog.search": ("time", _catalog_search, (2013, 2014)),
    "oceandata.argo.index.search": ("time", _argo_search, (2017, 2018)),
}

#: Command-line commands with ``--time``, as their words after ``oceandata``.
CLI_COMMANDS = {("subset",), ("catalog", "search"), ("argo", "search")}


def _assert_same(got: Any, want: Any, what: str) -> None:
    if isinstance(want, xr.DataArray | xr.Dataset):
        xr.testing.assert_equal(got, want)
    elif isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, obj=what)
    else:
        assert got == want, what


# --------------------------------------------------------------------------- tests


def _public_functions() -> dict[str, set[str]]:
    """Public functions and methods of :data:`PACKAGES` with a period parameter."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            # the command-line modules take text, tested through the CLI below
            if any(p.startswith("_") or p == "cli" for p in info.name.split(".")):
                continue
            module = importlib.import_module(info.name)
            names = getattr(module, "__all__", None) or [
                n for n in vars(module) if not n.startswith("_")]
            for name in names:
                obj = getattr(module, name, None)
                if getattr(obj, "__module__", None) != module.__name__:
                    continue
                members = [(name, obj)] if inspect.isfunction(obj) else [
                    (f"{name}.{k}", v) for k, v in vars(obj).items()
                    if not k.startswith("_") and inspect.isfunction(v)
                ] if inspect.isclass(obj) else []
                for qualname, func in members:
                    hit = PERIOD_PARAMETERS & set(inspect.signature(func).parameters)
                    if hit:
                        found[f"{module.__name__}.{qualname}"] = hit
    return found


def _cli_commands_with_time() -> set[tuple[str, ...]]:
    import typer

    from oceandata.cli import app

    found: set[tuple[str, ...]] = set()

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (typer bundles its own click)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        elif any(p.name in PERIOD_PARAMETERS for p in command.params):
            found.add(path)

    walk(typer.main.get_command(app), ())
    return found


def test_every_period_parameter_is_listed() -> None:
    found = _public_functions()
    assert {k: v for k, v in found.items() if k not in CALLS} == {}, \
        "a public function takes a period: add it to CALLS (and read it with times.period)"
    for name, (param, _, _) in CALLS.items():
        assert param in found.get(name, set()), f"{name} has no parameter {param}"
    assert _cli_commands_with_time() == CLI_COMMANDS


@pytest.mark.parametrize("name", CALLS)
def test_every_form_gives_the_same_result(data: Data, name: str) -> None:
    param, call, (a, b) = CALLS[name]
    want = call(data, Period.checked((str(a), str(b)), what=param))
    everything = call(data, None)
    if name != "oceandata.catalog.core.Catalog.search":  # the years must select something
        with pytest.raises(AssertionError):
            _assert_same(everything, want, name)
    for form, make in FORMS.items():
        _assert_same(call(data, make(a, b)), want, f"{name} with {form}")


@pytest.mark.parametrize("name", CALLS)
def test_bad_forms_are_one_line_usage_errors(data: Data, name: str) -> None:
    param, call, _ = CALLS[name]
    for case, (value, reason) in BAD.items():
        with pytest.raises(UsageError, match=reason) as info:
            call(data, value)
        message = str(info.value)
        assert "\n" not in message, case
        assert message.startswith(f"{param} "), (case, message)
        assert f'e.g. {param}=("1983", "2012") or {param}="1983/2012"' in message, case


def test_selection_matches_direct_xarray(data: Data) -> None:
    """Independent check: the period is the whole years, as xarray's partial-date slices."""
    sst = data.grid.sst
    got = oceandata.analysis.climatology(sst, baseline=(1983, 2012))
    want = sst.sel(time=slice("1983", "2012")).groupby("time.month").mean()
    np.testing.assert_allclose(got.values, want.values, rtol=1e-6)
    cut = oceandata.subset(data.grid, time="1990-02/1990-03")
    xr.testing.assert_identical(cut, data.grid.sel(time=slice("1990-02", "1990-03")))
    # a datetime is that instant; its date is the whole day
    noon = data.grid.assign_coords(time=data.grid.time + pd.Timedelta(hours=12))
    assert oceandata.subset(noon, time=(None, dt.date(1982, 1, 2))).sizes["time"] == 2
    assert oceandata.subset(noon, time=(None, dt.datetime(1982, 1, 2))).sizes["time"] == 1


def test_cftime_360_day_calendar() -> None:
    """cftime dates and 360-day months: the same forms on a non-standard calendar."""
    time = xr.date_range("1981-01-01", periods=360 * 5, freq="D", calendar="360_day",
                         use_cftime=True)
    da = xr.DataArray(np.arange(time.size, dtype=float) % 37, coords={"time": time},
                      dims="time", name="x")
    want = oceandata.analysis.climatology(da, freq="dayofyear", baseline=("1982", "1984"))
    assert want.sizes["dayofyear"] == 360
    for form in [(1982, 1984), "1982/1984", ("1982-01-01", "1984-12-30"),
                 (cftime.Datetime360Day(1982, 1, 1), cftime.Datetime360Day(1984, 12, 30)),
                 ("1982-01", "1984-12")]:
        got = oceandata.analysis.climatology(da, freq="dayofyear", baseline=form)
        xr.testing.assert_equal(got, want)
    assert oceandata.subset(da.to_dataset(), time=("1982-02-30", "1982-02-30")).sizes == {
        "time": 1}


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str],
         monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    from oceandata.cli import main

    monkeypatch.setattr(sys, "argv", ["oceandata", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


def test_cli_time_forms(data: Data, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["1990/1991", "1990-01/1991-12", "1990-01-01/1991-12-31"]
    written = []
    for i, text in enumerate(texts):
        out = tmp_path / f"cut{i}.nc"
        code, _, err = _cli(["subset", str(data.grid_file), "--time", text, "-o", str(out)],
                            capsys, monkeypatch)
        assert code == 0, err
        with xr.open_dataset(out) as ds:
            written.append(ds.load())
    assert written[0].sizes["time"] == 730
    for other in written[1:]:
        xr.testing.assert_equal(other, written[0])
    found = []
    for text in ["2013/2014", "2013-01-01/2014-12-31"]:
        code, out, err = _cli(["catalog", "search", "--time", text, "--json"], capsys,
                              monkeypatch)
        assert code == 0, err
        found.append(sorted(e["name"] for e in json.loads(out)))
    assert found[0] == found[1] != []


@pytest.mark.parametrize("command", sorted(CLI_COMMANDS))
@pytest.mark.parametrize(("text", "reason"), [("1983", "'1983' is not START/END"),
                                              ("2012/1983", "is after end"),
                                              ("soon/later", "'soon' is not an ISO date")])
def test_cli_bad_time_is_one_line_exit_2(command: tuple[str, ...], text: str, reason: str,
                                         data: Data, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    extra = [str(data.grid_file), "-o", str(tmp_path / "x.nc")] if command == ("subset",) \
        else []
    code, _, err = _cli([*command, *extra, "--time", text], capsys, monkeypatch)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("oceandata: error: --time ") and reason in err
    assert "e.g. --time 1983/2012" in err
    assert not (tmp_path / "x.nc").exists()
