"""Figures in a user's JupyterLab on the hub render with no network but the hub's.

A user logs in through the hub in headless Chromium, opens a notebook in JupyterLab,
runs every cell and waits for the kernel to finish. Then each figure's output must hold a
drawn canvas whose screenshot has non-background pixels, the page must have made no
request outside 127.0.0.1 (every request is recorded; requests elsewhere are refused, as
on the supercomputer's network) and JupyterLab's news prompt must not have appeared (nor
its news and update-check calls). Two notebooks: the real example
``examples/03_marine_heatwaves.ipynb``, and one written here with every figure kind of
:mod:`oceandata.viz` plus plain hvplot and holoviews calls in a kernel that never imports
oceandata. Screenshots are kept under ``var/test-artifacts/``. The configuration under
test is the spawner's (docs/viz.md, "Offline figures in the hub").
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser_helpers import ARTIFACTS, launched_browser
from tests.hub_helpers import PASSWORD, Hub, HubClient, admin_client, new_user, running_hub

pytestmark = pytest.mark.slow

#: milliseconds: spawning a server and loading JupyterLab on a small shared machine
SPAWN_MS = 240_000
#: milliseconds: running a notebook's cells (03 takes about 20 s here)
RUN_MS = 240_000
PAGE_MS = 60_000
#: what JupyterLab's announcements plugin asks every new user, and the calls it makes
NEWS_PROMPT = "notified about official Jupyter news"
NEWS_CALLS = ("/lab/api/news", "/lab/api/update")

FIGURES_NOTEBOOK = [
    # every figure kind of oceandata.viz, after the usual hv.extension("bokeh")
    """import holoviews as hv
import oceandata
from oceandata import viz
from oceandata.analysis import ocean
hv.extension("bokeh")""",
    """cobe = oceandata.open_dataset("cobe_sst2", time=("2000-01", "2000-12")).sst.load()
viz.field_map(cobe.isel(time=0))""",
    'viz.hovmoller(cobe.sel(lat=slice(5, -5)).mean("lat"), dim="lon")',
    'viz.time_series(cobe.sel(lat=0.5, lon=180.5, method="nearest"))',
    """phc = oceandata.open_dataset("phc2_ts_zonal").isel(time=0, basins=0).load()
viz.section(phc.TEMP, x="lat_t", z="z_t")""",
    'viz.profile(phc.TEMP.sel(lat_t=0.0, method="nearest"), z="z_t")',
    """sa = ocean.absolute_salinity(phc.SALT.assign_attrs(units="1"), lon=-30.0)
viz.ts_diagram(ocean.conservative_temperature(sa, phc.TEMP, potential=True), sa)""",
    """viz.usage_chart([{"allocation_id": 1, "user": "alice", "core_hours": 2.0},
                 {"allocation_id": 1, "user": "bob", "core_hours": 3.5}])""",
]
#: plain hvplot and holoviews, as a user writes them (hvplot loads the extension itself)
PLAIN_NOTEBOOK = [
    """import numpy as np
import pandas as pd
import xarray as xr
import hvplot.xarray  # noqa: F401
t = pd.date_range("2000-01-01", periods=365)
da = xr.DataArray(20 + 3 * np.sin(np.arange(365) / 58.0), dims="time", coords={"time": t},
                  name="sst")
da.hvplot()""",
    """import holoviews as hv
hv.Curve(np.cumsum(np.ones(50)) ** 0.5)""",
]


def _notebook(cells: list[str]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}},
            "cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "outputs": [],
                       "execution_count": None, "source": src} for i, src in enumerate(cells)]}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launched_browser() as b:
        yield b


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("hub-figures") / "var") as h:
        yield h


@pytest.fixture(scope="module")
def user(hub: Hub) -> HubClient:
    return new_user(hub, admin_client(hub), f"fig{uuid.uuid4().hex[:6]}")


class Tab:
    """A logged-in browser tab of *user*, with every request it made."""

    def __init__(self, page, hub: Hub, user: HubClient) -> None:
        self.page, self.hub, self.user = page, hub, user
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        # the supercomputer's network: nothing answers outside the machine
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), lambda route: route.abort())

    def outside(self) -> list[str]:
        """Requests to anything but 127.0.0.1 (data: and blob: URLs are no network)."""
        return sorted({url for url in self.requests
                       if urlsplit(url).scheme not in ("data", "blob")
                       and urlsplit(url).hostname != "127.0.0.1"})

    def run_notebook(self, path: str) -> None:
        """Open *path* in JupyterLab, run all cells and wait until every cell has run."""
        page = self.page
        # ?reset: a workspace with this notebook only (no tab restored from an earlier run)
        page.goto(f"{self.hub.url}/user/{self.user.name}/lab/tree/{path}?reset")
        page.wait_for_selector(".jp-Notebook .jp-Cell", state="visible", timeout=SPAWN_MS)
        # every code cell numbered ([*] while queued or running), or a traceback (Run All
        # stops at the failing cell); or JupyterLab's kernel chooser, which appears when
        # the kernel list arrives after the notebook, and may do so after Run All
        state = """() => {
          if (document.querySelector('.jp-Dialog')?.textContent.includes('Select Kernel'))
            return 'chooser';
          const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
          const failed = [...document.querySelectorAll('.jp-OutputArea-output')]
            .some((e) => e.textContent.includes('Traceback'));
          if (failed || (p.length > 0 && p.every((e) => /\\[\\d+\\]/.test(e.textContent))))
            return 'done';
          return false;
        }"""
        deadline = time.monotonic() + RUN_MS / 1000
        try:
            self._run_all()
            while True:
                left = max(deadline - time.monotonic(), 0.001) * 1000
                outcome = page.wait_for_function(state, timeout=left).json_value()
                if outcome == "done":
                    break
                page.locator(".jp-Dialog .jp-mod-accept").click()
                page.locator(".jp-Dialog").wait_for(state="detached")
                self._run_all()  # the chooser swallowed the first Run All
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"hub-notebook-{Path(path).stem}.png"))
        failed = page.locator(".jp-OutputArea-output", has_text="Traceback")
        assert failed.count() == 0, f"{path}: {failed.all_inner_texts()}"

    def _run_all(self) -> None:
        # the kernel is up (status bar) before the cells are queued
        self.page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(
            timeout=SPAWN_MS)
        self.page.get_by_role("menuitem", name="Run", exact=True).click()
        self.page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    def figures(self, name: str, expected: int) -> list[tuple[Path, int]]:
        """Screenshot each bokeh figure in the notebook; its file and drawn pixels."""
        from playwright.sync_api import expect

        figures = self.page.locator(".jp-OutputArea-output .bk-Figure")
        expect(figures).to_have_count(expected, timeout=PAGE_MS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shots = []
        for i in range(figures.count()):
            figure = figures.nth(i)
            figure.scroll_into_view_if_needed()
            expect(figure.locator("canvas").first).to_be_visible(timeout=PAGE_MS)
            box = figure.bounding_box()
            assert box and box["width"] > 150 and box["height"] > 150, (name, i, box)
            shot = ARTIFACTS / f"hub-notebook-{name}-{i}.png"
            figure.screenshot(path=str(shot))
            shots.append((shot, _drawn_pixels(shot)))
        return shots


def _drawn_pixels(png: Path) -> int:
    """Pixels of *png* that differ clearly from its most common colour (the background)."""
    from PIL import Image

    with Image.open(png) as img:
        rgb = img.convert("RGB")
        background = max(rgb.getcolors(rgb.width * rgb.height))[1]
        return sum(1 for pixel in rgb.getdata()
                   if max(abs(a - b) for a, b in zip(pixel, background, strict=True)) > 40)


@pytest.fixture
def tab(browser, hub: Hub, user: HubClient) -> Iterator[Tab]:
    """A fresh browser context per test: each notebook runs in a JupyterLab of its own."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_MS)
    tab = Tab(page, hub, user)
    try:
        response = page.goto(f"{hub.url}/hub/login")
        assert response is not None and response.status == 200
        page.fill("#username_input", user.name)
        page.fill("#password_input", PASSWORD)
        page.click("#login_submit")
        page.wait_for_url(re.compile(rf"/user/{user.name}/lab"), timeout=SPAWN_MS)
        page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=SPAWN_MS)
        yield tab
    finally:
        context.close()


def _check_offline(tab: Tab) -> None:
    assert tab.outside() == [], f"requests outside 127.0.0.1: {tab.outside()}"
    news = [url for url in tab.requests if url.split("?")[0].endswith(NEWS_CALLS)]
    assert news == [], f"JupyterLab asked for news or updates: {news}"
    assert tab.page.get_by_text(NEWS_PROMPT).count() == 0, "the news prompt appeared"


def test_marine_heatwaves_example_renders_offline(tab: Tab) -> None:
    tab.run_notebook("examples/03_marine_heatwaves.ipynb")
    shots = tab.figures("03", 1)  # the Ningaloo Niño plot
    for shot, drawn in shots:
        assert drawn > 5000, f"{shot.name}: only {drawn} drawn pixels"
    _check_offline(tab)


def test_every_figure_kind_and_plain_hvplot_render_offline(tab: Tab, user: HubClient
                                                           ) -> None:
    for name, cells, expected in (("viz", FIGURES_NOTEBOOK, 7),
                                  ("plain", PLAIN_NOTEBOOK, 2)):
        path = f"offline-{name}.ipynb"
        r = user.api("PUT", f"/user/{user.name}/api/contents/{path}",
                     json={"type": "notebook", "format": "json", "content": _notebook(cells)})
        assert r.status_code in (200, 201), r.text
        tab.run_notebook(path)
        shots = tab.figures(name, expected)
        for shot, drawn in shots:
            assert drawn > 2000, f"{shot.name}: only {drawn} drawn pixels"
    _check_offline(tab)
