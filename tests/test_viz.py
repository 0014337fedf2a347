"""Figures of :mod:`oceandata.viz` on the real sample files, and their export.

Every figure kind is built from a sample dataset and checked against direct xarray
selections of the same data (values, bounds), then rendered by bokeh. ``save`` is checked
for HTML (resources inline) and PNG (headless Chromium through Playwright, not blank); an
exported map is opened in Chromium and must log no console or page error. Chromium is the
Debian package (``/usr/bin/chromium``); without it the browser tests are skipped, except in
CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("holoviews")
pytest.importorskip("datashader")
pytest.importorskip("cmocean")

import holoviews as hv

import oceandata
from oceandata import viz
from oceandata.errors import UsageError
from oceandata.viz import coastlines, export, maps, styles
from tests.pg_helpers import in_ci

CHROMIUM_ARGS = list(export.CHROMIUM_ARGS)


def _chromium() -> str:
    path = export.chromium_path()
    if path is None:
        if in_ci():
            pytest.fail("Chromium is missing (CI=true: the browser tests must run)")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return path


def render(fig):
    """The bokeh model of a figure (fails if bokeh cannot draw it)."""
    return hv.render(fig, backend="bokeh")


def opts_of(element) -> dict:
    return element.opts.get(backend="bokeh").kwargs


# --- small named sample datasets -----------------------------------------------------
@pytest.fixture(scope="session")
def cobe_2000(sample) -> xr.DataArray:
    """COBE-SST2 monthly SST of the year 2000 (regular 1°, lat descending)."""
    return oceandata.open_dataset(sample("cobe_sst2_2000")).sst.load()


@pytest.fixture(scope="session")
def tos_bipolar(sample) -> xr.DataArray:
    """CMIP SST on a curvilinear bipolar grid 220 × 256 (2-D lat/lon), one month."""
    sample("tos_bipolar")
    return oceandata.open_dataset("tos_bipolar").tos.load()


@pytest.fixture(scope="session")
def etopo20(sample) -> xr.DataArray:
    """ETOPO20 relief, 540 × 1081 (a grid above the rasterisation threshold)."""
    sample("etopo20")
    return oceandata.open_dataset("etopo20").ROSE.load()


@pytest.fixture(scope="session")
def etopo60(sample) -> xr.DataArray:
    """ETOPO60 relief, 1°: the source of the default coastline."""
    sample("etopo60")
    return oceandata.open_dataset("etopo60").ROSE.load()


@pytest.fixture(scope="session")
def phc2_global(sample) -> xr.Dataset:
    """PHC2 zonal-mean potential temperature and salinity of the global ocean (basin 0)."""
    sample("phc2_ts_zonal")
    return oceandata.open_dataset("phc2_ts_zonal").isel(time=0, basins=0).load()


@pytest.fixture(scope="session")
def oisst_wa(sample) -> xr.DataArray:
    """Daily OISST at one cell off Western Australia, 1982-2022."""
    sample("oisst_wa_nc")
    return oceandata.open_dataset("oisst_wa").sst.load()


# --- colormaps -----------------------------------------------------------------------
def test_colormap_follows_the_metadata(cobe_2000, tos_bipolar, etopo60, phc2_global,
                                       sample) -> None:
    sample("sst_ndjfm_anom")
    anomalies = oceandata.open_dataset("sst_ndjfm_anom").sst
    assert styles.colormap_for(cobe_2000) == "thermal"      # long_name and degC
    assert styles.colormap_for(tos_bipolar) == "thermal"    # standard_name
    assert styles.colormap_for(anomalies) == "balance"      # "anomalies" beats temperature
    assert styles.colormap_for(phc2_global.SALT) == "haline"
    assert styles.colormap_for(etopo60) == "deep_r"         # elevation: deep is low
    depth = xr.DataArray([10.0], name="h", attrs={"standard_name": "sea_floor_depth_below_sea_level"})
    assert styles.colormap_for(depth) == "deep"
    assert styles.colormap_for(xr.DataArray([1.0], name="q")) == "viridis"
    import cmocean
    from matplotlib.colors import to_hex

    assert styles.palette("thermal")[0] == to_hex(cmocean.cm.thermal(0.0))
    assert styles.palette("deep_r")[0] == to_hex(cmocean.cm.deep(1.0))
    # the figure carries the chosen palette; anomalies get symmetric limits
    fig = viz.field_map(anomalies.isel(time=0), coastline=False)
    assert opts_of(fig)["cmap"] == list(styles.palette("balance"))
    lo, hi = opts_of(fig)["clim"]
    assert lo == -hi == -float(np.abs(anomalies.isel(time=0)).max())


# --- maps ----------------------------------------------------------------------------
def test_field_map_regular_grid_matches_the_data(cobe_2000) -> None:
    jan = cobe_2000.isel(time=0)
    fig = viz.field_map(cobe_2000.sel(time="2000-01"))  # a length-one time is dropped
    assert isinstance(fig, hv.Overlay)
    image = fig.Image.I
    assert isinstance(image, hv.Image) and not isinstance(image, hv.QuadMesh)
    # holoviews holds ascending latitudes: the file's are descending
    expected = jan.sortby("lat").values
    np.testing.assert_array_equal(image.dimension_values(2, flat=False), expected)
    left, bottom, right, top = image.bounds.lbrt()
    assert (left, right) == (0.0, 360.0) and (bottom, top) == (-90.0, 90.0)
    assert opts_of(image)["cmap"] == list(styles.palette("thermal"))
    assert opts_of(image)["clim"] == (float(jan.min()), float(jan.max()))
    # coastline: lines in 0..360, inside the field's extent
    lines = fig.Coastline.I.split()
    assert len(lines) > 20
    pts = np.concatenate([p.array() for p in lines])
    assert pts[:, 0].min() >= 0.5 and pts[:, 0].max() <= 359.5
    assert pts[:, 1].min() >= -89.5 and pts[:, 1].max() <= 89.5
    render(fig)


def test_field_map_curvilinear_grid(tos_bipolar) -> None:
    field = tos_bipolar.isel(time=0)
    assert field.size > maps.RASTERIZE_ABOVE["curvilinear"]
    mesh = viz.field_map(tos_bipolar, coastline=False, rasterize=False)
    assert isinstance(mesh, hv.QuadMesh)
    np.testing.assert_array_equal(mesh.dimension_values(0, flat=False), field.lon.values)
    np.testing.assert_array_equal(mesh.dimension_values(1, flat=False), field.lat.values)
    values = mesh.dimension_values(2, flat=False)
    # the cells next to the 0/360 seam are hidden (a quad across it would span the globe),
    # every other cell is the file's value
    hidden = np.isnan(values) & np.isfinite(field.values)
    assert 0 < hidden.sum() < 0.03 * field.size
    lon = field.lon.values.astype(float)
    padded = np.pad(lon, 1, mode="edge")
    for i, j in zip(*np.nonzero(hidden), strict=True):
        assert np.abs(padded[i:i + 3, j:j + 3] - lon[i, j]).max() > 180.0
    keep = ~np.isnan(values)
    np.testing.assert_array_equal(values[keep], field.values[keep])
    # above the threshold, rasterize=None aggregates to the plot's pixels with datashader
    fig = viz.field_map(tos_bipolar)
    image = fig.Image.I
    assert isinstance(image, hv.Image)
    np.testing.assert_allclose(image.bounds.lbrt(), (lon.min(), float(field.lat.min()),
                                                     lon.max(), float(field.lat.max())))
    grid = image.dimension_values(2, flat=False)
    assert grid.shape == (maps.FRAME_HEIGHT, maps.FRAME_WIDTH)
    finite = grid[np.isfinite(grid)]
    assert finite.size > 0.3 * grid.size
    assert float(field.min()) - 1e-3 <= finite.min() and finite.max() <= float(field.max()) + 1e-3
    assert opts_of(image)["cmap"] == list(styles.palette("thermal"))
    render(fig)


def test_field_map_rasterizes_large_grids_only(etopo20, cobe_2000) -> None:
    assert etopo20.size > maps.RASTERIZE_ABOVE["regular"] > cobe_2000.isel(time=0).size
    big = viz.field_map(etopo20, coastline=False)
    shape = big.dimension_values(2, flat=False).shape
    assert shape == (maps.FRAME_HEIGHT, maps.FRAME_WIDTH)
    full = viz.field_map(etopo20, coastline=False, rasterize=False)
    assert full.dimension_values(2, flat=False).shape == etopo20.shape
    small = viz.field_map(cobe_2000.isel(time=0), coastline=False)
    assert small.dimension_values(2, flat=False).shape == (180, 360)
    # the mean aggregate stays within the data's range
    agg = big.dimension_values(2)
    assert float(etopo20.min()) <= np.nanmin(agg) and np.nanmax(agg) <= float(etopo20.max())
    assert opts_of(big)["cmap"] == list(styles.palette("deep_r"))


def test_field_map_refuses_3d(cobe_2000) -> None:
    with pytest.raises(UsageError, match=r"select one step first, e\.g\. da\.isel\(time=0\)"):
        viz.field_map(cobe_2000)


# --- coastlines ----------------------------------------------------------------------
def test_coastline_is_the_zero_contour_of_etopo(etopo60) -> None:
    from scipy.interpolate import RegularGridInterpolator

    coastlines.coastline_lines.cache_clear()
    lines = coastlines.coastline_lines("etopo60")
    assert coastlines.cache_path("etopo60").is_file()  # cached under the sample cache
    assert len(lines) > 20
    pts = np.concatenate(lines)
    lon, lat = etopo60.ETOPO60X.values, etopo60.ETOPO60Y.values
    assert lat.min() <= pts[:, 1].min() and pts[:, 1].max() <= lat.max()
    assert lon.min() <= pts[:, 0].min() and pts[:, 0].max() <= lon.max() + 1.0
    # every vertex lies where the linear interpolation of ROSE is 0 m
    ext_lon = np.append(lon, lon[0] + 360.0)
    ext = np.concatenate([etopo60.values, etopo60.values[:, :1]], axis=1)
    elev = RegularGridInterpolator((lat, ext_lon), ext)(pts[:, ::-1])
    assert np.abs(elev).max() < 1e-3
    # the cached copy is what a fresh trace gives
    fresh = coastlines._trace("etopo60")
    assert len(fresh) == len(lines)
    np.testing.assert_array_equal(np.concatenate(fresh), pts)


def test_coastline_in_a_box_and_convention() -> None:
    box = (-10.0, 30.0, 40.0, 60.0)  # Europe and the Mediterranean, -180..180
    lines = coastlines.coastline(box, lon_start=-180.0)
    assert lines
    pts = np.concatenate(lines)
    assert (pts[:, 0] >= -10).all() and (pts[:, 0] <= 40).all()
    assert (pts[:, 1] >= 30).all() and (pts[:, 1] <= 60).all()
    # no segment jumps across the seam
    world = coastlines.coastline(lon_start=-180.0)
    assert max(np.abs(np.diff(line[:, 0])).max() for line in world) < 180
    assert min(line[:, 0].min() for line in world) >= -180
    assert max(line[:, 0].max() for line in world) < 180
    with pytest.raises(UsageError, match="etopo60, etopo20"):
        coastlines.coastline(source="gebco")


# --- series --------------------------------------------------------------------------
def test_time_series(oisst_wa) -> None:
    curve = viz.time_series(oisst_wa)
    assert isinstance(curve, hv.Curve)
    np.testing.assert_array_equal(curve.dimension_values(1), oisst_wa.values)
    assert curve.range("time") == (np.datetime64("1982-01-01"), np.datetime64("2022-12-31"))
    assert "degree_Celsius" in curve.vdims[0].label
    render(curve)
    with pytest.raises(UsageError, match="needs a 1-D array"):
        viz.time_series(xr.DataArray(np.zeros((2, 2)), dims=("time", "x"), name="z"))


def test_hovmoller_equatorial_band(cobe_2000) -> None:
    band = cobe_2000.sel(lat=slice(5, -5)).mean("lat")
    mesh = viz.hovmoller(band, dim="lon")
    assert isinstance(mesh, hv.QuadMesh)
    np.testing.assert_allclose(mesh.dimension_values(2, flat=False), band.values)
    np.testing.assert_array_equal(mesh.dimension_values("lon", expanded=False), band.lon.values)
    assert mesh.range("lon") == (0.0, 360.0)  # cell edges
    times = mesh.dimension_values("time", expanded=False)
    np.testing.assert_array_equal(times, cobe_2000.time.values)
    render(mesh)
    with pytest.raises(UsageError, match=r"\.mean\('lat'\)"):
        viz.hovmoller(cobe_2000, dim="lon")


def test_mhw_plot_shades_events_by_category(oisst_wa) -> None:
    from oceandata.analysis import marine_heatwaves

    events, clim = marine_heatwaves(oisst_wa, (1983, 2012))
    period = ("2010-06-01", "2011-06-30")  # the 2011 Western Australia heatwave
    fig = viz.mhw_plot(oisst_wa, clim, events, period=period)
    sst = oisst_wa.sel(time=slice(*period))
    np.testing.assert_array_equal(fig.SST.I.dimension_values(1), sst.values)
    np.testing.assert_array_equal(fig.Threshold.I.dimension_values(1),
                                  clim.thresh.sel(time=slice(*period)).values)
    np.testing.assert_array_equal(fig.Climatology.I.dimension_values(1),
                                  clim.seas.sel(time=slice(*period)).values)
    inside = events[(events.date_end >= period[0]) & (events.date_start <= period[1])]
    areas = [el for el in fig if isinstance(el, hv.Area)]
    assert len(areas) == len(inside) > 0
    assert "Extreme" in set(inside.category)
    for area, (_, event) in zip(areas, inside.sort_values("date_start").iterrows(), strict=True):
        assert area.label == event.category
        assert opts_of(area)["color"] == styles.CATEGORY_COLOURS[event.category]
        t = pd.DatetimeIndex(area.dimension_values(0))
        days = (t >= event.date_start) & (t <= event.date_end)
        sel = sst.sel(time=t[days])
        np.testing.assert_array_equal(area.dimension_values(2)[days],
                                      np.maximum(sel.values, clim.thresh.sel(time=t[days]).values))
        assert (area.dimension_values(2) >= area.dimension_values(1)).all()
    render(fig)


# --- vertical ------------------------------------------------------------------------
def test_section_depth_downwards(phc2_global) -> None:
    temp = phc2_global.TEMP
    mesh = viz.section(temp, x="lat_t", z="z_t")
    assert isinstance(mesh, hv.QuadMesh)
    np.testing.assert_allclose(mesh.dimension_values("depth", expanded=False),
                               phc2_global.z_t.values / 100.0)  # centimetres to metres
    np.testing.assert_array_equal(mesh.dimension_values(2, flat=False), temp.values)
    plot = render(mesh)
    assert plot.y_range.start > plot.y_range.end  # the surface on top
    assert opts_of(mesh)["cmap"] == list(styles.palette("thermal"))


def test_profile_depth_downwards(phc2_global) -> None:
    column = phc2_global.TEMP.sel(lat_t=0.0, method="nearest")
    curve = viz.profile(column, z="z_t")
    assert isinstance(curve, hv.Curve)
    np.testing.assert_allclose(curve.dimension_values("depth"), phc2_global.z_t.values / 100.0)
    np.testing.assert_array_equal(curve.dimension_values(1), column.values)
    plot = render(curve)
    assert plot.y_range.start > plot.y_range.end
    assert plot.yaxis[0].axis_label == "depth [m]"


def test_ts_diagram_sigma0_contours(phc2_global) -> None:
    import gsw

    from oceandata.analysis import ocean

    sp = phc2_global.SALT.assign_attrs(units="1")  # PHC2 SALT is Practical Salinity
    sa = ocean.absolute_salinity(sp, lon=-30.0)
    ct = ocean.conservative_temperature(sa, phc2_global.TEMP, potential=True)
    fig = viz.ts_diagram(ct, sa, sigma0_levels=[24, 25, 26, 27, 27.5, 28])
    scatter = fig.Scatter.I
    ok = np.isfinite(ct.values) & np.isfinite(sa.values)
    assert len(scatter) == ok.sum() > 1000
    np.testing.assert_array_equal(scatter.dimension_values(0), sa.values[ok])
    np.testing.assert_array_equal(scatter.dimension_values(1), ct.values[ok])
    contours = fig.Sigma0.I
    levels = set()
    for path in contours.split():
        level = path.dimension_values("sigma0")[0]
        levels.add(level)
        sig = gsw.sigma0(path.dimension_values(0), path.dimension_values(1))
        np.testing.assert_allclose(sig, level, atol=5e-3)
    assert levels == {24, 25, 26, 27, 27.5, 28}
    # default levels: round values inside the plotted range
    auto = viz.ts_diagram(ct, sa)
    auto_levels = {p.dimension_values("sigma0")[0] for p in auto.Sigma0.I.split()}
    assert 3 <= len(auto_levels) <= 13
    render(auto)
    with pytest.raises(UsageError, match="same shape"):
        viz.ts_diagram(ct.values[:3], sa.values[:4])


# --- Argo and usage ------------------------------------------------------------------
def test_float_tracks(sample) -> None:
    from oceandata import argo

    for wmo, dac in ((2902696, "csio"), (2901746, "kma")):
        sample(f"argo/gdac/dac/{dac}/{wmo}/{wmo}_prof.nc")
    ds = argo.load([2902696, 2901746])
    fig = viz.float_tracks(ds)
    tracks = [el for el in fig if el.group == "Track"]
    points = [el for el in fig if el.group == "Profiles"]
    assert [t.label for t in tracks] == ["2902696", "2901746"]
    for element in points:
        mine = ds.where(ds.platform_number == int(element.label), drop=True)
        mine = mine.sortby("time")
        assert len(element) == mine.sizes["profile"]
        np.testing.assert_array_equal(element.dimension_values("lon"), mine.longitude.values)
        np.testing.assert_array_equal(element.dimension_values("lat"), mine.latitude.values)
    coast = fig.Coastline.I
    pts = np.concatenate([p.array() for p in coast.split()])
    assert len(pts) > 10
    assert pts[:, 1].min() >= float(ds.latitude.min()) - 2.0
    assert pts[:, 1].max() <= float(ds.latitude.max()) + 2.0
    render(fig)


def test_usage_chart_from_the_allocations_database(tmp_path: Path) -> None:
    from oceandata.alloc import core, db

    url = f"sqlite:///{tmp_path / 'alloc.sqlite'}"
    db.upgrade(url)
    today = dt.date.today()
    request = {"project_title": "Marine heatwaves", "pi": "Dr. A. Ocean",
               "institution": "National Marine Data Centre",
               "justification": "Detect heatwaves in 40 years of daily SST.",
               "core_hours": 1000, "max_cores": 8, "memory_per_job_gb": 16, "storage_gb": 100,
               "start_date": (today - dt.timedelta(days=30)).isoformat(),
               "end_date": (today + dt.timedelta(days=335)).isoformat(), "datasets": "oisst_wa"}
    with db.session_scope(url) as session:
        a = core.request_allocation(session, "alice", request).id
        core.decide(session, a, "admin", True, approve=True)
        core.charge(session, user="alice", allocation_id=a, source="gateway", ref="c1",
                    cores=4, seconds=1800)
        core.charge(session, user="alice", allocation_id=a, source="batch", ref="j1",
                    cores=1, seconds=7200)
        core.charge(session, user="bob", allocation_id=None, source="batch", ref="j2",
                    cores=3, seconds=3600)
        # a project's storage (GB-days) is no core-hours: left out of this chart
        from oceandata.alloc import workspaces

        now = dt.datetime.now(dt.UTC)
        workspaces.record_storage(session, a, 10**9, at=now - dt.timedelta(hours=1))
        workspaces.record_storage(session, a, 10**9, at=now)
        rows = core.usage_summary(session)
        assert any(r["source"] == "storage" for r in rows)
    bars = viz.usage_chart(rows)
    assert isinstance(bars, hv.Bars)
    got = {(a_, u): h for a_, u, h in zip(bars.dimension_values("allocation"),
                                          bars.dimension_values("user"),
                                          bars.dimension_values("core_hours"), strict=True)}
    assert got == pytest.approx({(str(a), "alice"): 4.0, ("unallocated", "bob"): 3.0})
    render(bars)
    with pytest.raises(UsageError, match="missing core_hours"):
        viz.usage_chart([{"allocation_id": 1, "user": "x"}])


# --- save ----------------------------------------------------------------------------
def test_save_html_is_standalone(tmp_path: Path, cobe_2000) -> None:
    out = viz.save(viz.field_map(cobe_2000.isel(time=0)), tmp_path / "maps" / "sst.html")
    assert out == tmp_path / "maps" / "sst.html"
    text = out.read_text(encoding="utf-8")
    assert "Bokeh" in text and "<script" in text
    assert not re.search(r"<script[^>]+src=", text)  # JavaScript inline, nothing fetched
    assert "cdn.bokeh.org" not in text
    assert sorted(p.name for p in out.parent.iterdir()) == ["sst.html"]  # no .part left


def test_save_refuses_other_extensions(tmp_path: Path, oisst_wa) -> None:
    with pytest.raises(UsageError) as err:
        viz.save(viz.time_series(oisst_wa), tmp_path / "sst.pdf")
    assert "\n" not in str(err.value) and ".html, .png" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def _variance(png: Path) -> float:
    from PIL import Image

    with Image.open(png) as img:
        return float(np.asarray(img.convert("L"), dtype=float).var())


@pytest.mark.slow
def test_save_png_is_not_blank(tmp_path: Path, oisst_wa) -> None:
    _chromium()
    out = viz.save(viz.time_series(oisst_wa.sel(time="2011")), tmp_path / "sst.png")
    from PIL import Image

    with Image.open(out) as img:
        assert img.format == "PNG"
        width, height = img.size
    assert width >= maps.FRAME_WIDTH and height >= maps.FRAME_HEIGHT
    assert width < 1200  # the plot, not the whole page
    assert _variance(out) > 100.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sst.png"]


@pytest.mark.slow
def test_exported_map_opens_in_chromium_without_errors(tmp_path: Path, tos_bipolar) -> None:
    """The standalone HTML of a rasterised curvilinear map, in a real browser."""
    from playwright.sync_api import sync_playwright

    chromium = _chromium()
    html = viz.save(viz.field_map(tos_bipolar), tmp_path / "tos.html")
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda m: errors.append(f"console: {m.text}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html.as_uri(), wait_until="load", timeout=60_000)
            page.wait_for_function(export._IDLE, timeout=60_000)
            box = page.evaluate(export._BOX)
            shot = tmp_path / "tos.png"
            page.screenshot(path=str(shot), clip=box)
            if errors:
                print(page.content()[:5000])
        finally:
            browser.close()
    assert errors == []
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []
    assert box["width"] > maps.FRAME_WIDTH and box["height"] > maps.FRAME_HEIGHT
    assert _variance(shot) > 100.0
