"""A Chinese-speaking user's whole path, in Chinese (issue 21's "done when", docs/i18n.md).

In headless Chromium with ``Accept-Language: zh-CN`` on the shared running platform
(:func:`tests.conftest.projects_hub`): the user signs up (the form, a refused name, the
sign-up), is approved, signs in, requests an allocation on the allocations service (the
form, a refused value, the request's page), saves Chinese as their language, starts
JupyterLab (the hub's home and waiting pages; JupyterLab's own menus in Chinese from the
zh-CN language pack), runs a Chinese example notebook (``examples/zh/``) to the end, and
downloads a subset from the open-data portal (the home and dataset pages), which opens
with xarray equal to the same selection read directly. Every page of ours on the way is
checked with :func:`tests.i18n_helpers.assert_chinese` (Chinese, none of the catalogs'
English messages, no raw placeholder; the data's own words, marked ``translate="no"``,
are left out) and its screenshot kept (``var/test-artifacts/
i18n-e2e-*.png``) and checked not blank.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from pathlib import Path

import pytest

from tests.browser_helpers import keep_screenshot, launched_browser
from tests.hub_helpers import PASSWORD, Hub, HubClient
from tests.i18n_helpers import assert_chinese, ui_text

pytestmark = pytest.mark.slow

SPAWN_MS = 240_000
RUN_MS = 300_000
PAGE_MS = 60_000
ALLOC = "/services/allocations"
DATA = "/services/data"
#: the example the user runs: the shortest of the Chinese set
NOTEBOOK = "examples/zh/01_catalog_and_subsetting.ipynb"


def _chinese(page, label: str) -> None:
    """The page is in Chinese (:func:`assert_chinese`) and its screenshot is kept."""
    page.wait_for_load_state("load")
    assert_chinese(ui_text(page), label)
    assert page.locator("#lang-switch").count() >= 1, f"{label}: no language switch"
    keep_screenshot(page, f"i18n-e2e-{label}")


def _run_all(page, code_cells: int) -> None:
    """Run every cell of the open notebook from JupyterLab's Chinese menus and wait until
    the last code cell has run: its execution count is the notebook's number of code
    cells (a fresh kernel counts from 1; Run All stops at a failing cell). JupyterLab
    renders only the cells in view, so the notebook is scrolled to its end while waiting."""
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=SPAWN_MS)
    # the kernel is up (its status in the status bar, in Chinese) before cells are queued
    page.locator(".jp-StatusBar-Widget", has_text="空闲").first.wait_for(timeout=SPAWN_MS)
    page.get_by_role("menuitem", name="运行", exact=True).click()
    page.get_by_role("menuitem", name="运行所有单元格", exact=True).click()
    last = r"""(wanted) => {
      const outer = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
      if (outer) outer.scrollTop = outer.scrollHeight;
      if ([...document.querySelectorAll('.jp-OutputArea-output')]
          .some((e) => e.textContent.includes('Traceback'))) return -1;
      const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
      const found = p.length ? /\[(\d+)\]/.exec(p[p.length - 1].textContent) : null;
      return found && Number(found[1]) >= wanted ? Number(found[1]) : false;
    }"""
    count = page.wait_for_function(last, arg=code_cells, timeout=RUN_MS,
                                   polling=500).json_value()
    failed = page.locator(".jp-OutputArea-output", has_text="Traceback")
    assert count == code_cells and failed.count() == 0, (count, failed.all_inner_texts())


def test_a_chinese_speaking_user_goes_the_whole_way_in_chinese(
        projects_hub: Hub, projects_admin: HubClient, tmp_path: Path) -> None:
    hub, admin = projects_hub, projects_admin
    name = f"zhe2e{uuid.uuid4().hex[:6]}"
    with launched_browser() as browser:
        context = browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 900},
                                      extra_http_headers={"Accept-Language": "zh-CN,zh;q=0.9"},
                                      accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(PAGE_MS)
        try:
            # --- sign up: a refused name first, then the real one
            page.goto(f"{hub.url}/hub/signup")
            _chinese(page, "signup")
            page.fill("#username_input", "Bad Name!")
            page.fill("#password_input", PASSWORD)
            page.fill("#password_confirmation_input", PASSWORD)
            page.click("#signup_submit")
            _chinese(page, "signup-refused")
            page.fill("#username_input", name)
            page.fill("#password_input", PASSWORD)
            page.fill("#password_confirmation_input", PASSWORD)
            page.click("#signup_submit")
            _chinese(page, "signup-done")
            assert admin.approve(name).status_code == 200

            # --- sign in, straight to the allocation request form
            page.goto(f"{hub.url}/hub/login?next={ALLOC}/request")
            _chinese(page, "login")
            page.fill("#username_input", name)
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(re.compile(rf"{ALLOC}/request"), timeout=PAGE_MS)
            _chinese(page, "request-form")

            # --- request an allocation: a refused value, then a valid request
            today = dt.date.today()
            values = {"project_title": "西太平洋海温变化", "pi": "张老师",
                      "institution": "海洋研究所", "justification": "研究海表温度的年际变化",
                      "core_hours": "20", "max_cores": "1", "memory_per_job_gb": "1",
                      "storage_gb": "1", "start_date": today.isoformat(),
                      "end_date": (today + dt.timedelta(days=30)).isoformat()}
            for field, value in {**values, "core_hours": "-5"}.items():
                page.fill(f"#{field}", value)
            page.click("#submit-request")
            _chinese(page, "request-refused")
            page.fill("#core_hours", values["core_hours"])
            page.click("#submit-request")
            page.wait_for_url(re.compile(r"message=filed&id=\d+"), timeout=PAGE_MS)
            _chinese(page, "request-filed")  # my allocations, with the request filed
            alloc_id = int(re.search(r"id=(\d+)", page.url).group(1))
            page.goto(f"{hub.url}{ALLOC}/allocations/{alloc_id}")
            _chinese(page, "request-detail")
            r = admin.api("POST", f"{ALLOC}/api/allocations/{alloc_id}/approve",
                          allow_redirects=False)
            assert r.status_code == 200, r.text
            page.reload()
            _chinese(page, "request-approved")

            # --- Chinese saved as the user's language (JupyterLab follows it)
            page.goto(f"{hub.url}{ALLOC}/settings")
            _chinese(page, "settings")
            page.select_option("#language", "zh")
            page.click("#save-settings")
            _chinese(page, "settings-saved")
            page.goto(f"{hub.url}{ALLOC}/usage")
            _chinese(page, "usage")

            # --- JupyterLab: the hub's home, then the server (the waiting page if it shows)
            page.goto(f"{hub.url}/hub/home")
            _chinese(page, "home")
            page.goto(f"{hub.url}/hub/spawn")
            deadline = time.monotonic() + SPAWN_MS / 1000
            while "/lab" not in page.url and time.monotonic() < deadline:
                if "/spawn-pending/" in page.url:
                    try:
                        _chinese(page, "spawn-pending")
                    except Exception:  # redirected to JupyterLab meanwhile
                        if "/spawn-pending/" in page.url:
                            raise
                page.wait_for_url(re.compile(r"/lab|/spawn-pending/"),
                                  timeout=SPAWN_MS)
                if "/lab" not in page.url:
                    page.wait_for_url(re.compile(r"/lab"), timeout=SPAWN_MS)
            page.wait_for_selector("#jp-main-dock-panel", state="visible", timeout=SPAWN_MS)
            menus = page.locator("#jp-menu-panel, .lm-MenuBar").first.inner_text()
            assert "文件" in menus and "File" not in menus, menus

            # --- a Chinese example notebook, run to the end
            stored = page.request.get(f"{hub.url}/user/{name}/api/contents/{NOTEBOOK}")
            assert stored.ok, stored.text()[:300]
            cells = stored.json()["content"]["cells"]
            code_cells = sum(c["cell_type"] == "code" for c in cells)
            page.goto(f"{hub.url}/user/{name}/lab/tree/{NOTEBOOK}?reset")
            # the narrative renders in Chinese (markdown cells render after the notebook)
            page.wait_for_function(
                r"""() => ([...document.querySelectorAll('.jp-RenderedMarkdown')]
                    .map((e) => e.innerText).join(' ').match(/[\u4e00-\u9fff]/g) || [])
                    .length > 50""", timeout=SPAWN_MS)
            _run_all(page, code_cells)
            page.evaluate("document.querySelector('.jp-NotebookPanel "
                          ".jp-WindowedPanel-outer').scrollTop = 0")
            page.locator(".jp-RenderedMarkdown").first.wait_for()
            keep_screenshot(page, "i18n-e2e-notebook")  # its first cells, run

            # --- the open-data portal, and a subset downloaded from a dataset's page
            page.goto(f"{hub.url}{DATA}/")
            _chinese(page, "portal")
            page.goto(f"{hub.url}{DATA}/datasets/cobe_sst2")
            _chinese(page, "dataset")
            link = page.locator("a.download").first
            with page.expect_download(timeout=RUN_MS) as event:
                link.click()
            target = tmp_path / "subset.nc"
            event.value.save_as(target)
            href = link.get_attribute("href")
        finally:
            context.close()

    import xarray as xr

    with xr.open_dataset(target) as got:
        assert got.sizes and "sst" in got, got
        source = _direct("cobe_sst2")
        expected = source["sst"].sel(time=got["time"].values, lat=got["lat"].values,
                                     lon=got["lon"].values)
        xr.testing.assert_allclose(got["sst"].load(), expected.load())
    assert href and "subset" in href


def _direct(name: str):
    """The catalog entry *name* read directly (xarray on the sample files)."""
    import oceandata

    return oceandata.open_dataset(name)
