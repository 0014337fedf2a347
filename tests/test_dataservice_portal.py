"""The open-data portal (oceandata.dataservice.portal): pages, languages, previews, browser.

One service for the module, served by uvicorn on 127.0.0.1 (the sample catalog plus the
restricted ``secret_sst``); the browser steps drive Debian's Chromium with JavaScript on
and off.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from dataservice_helpers import RESTRICTED, make_catalog, serving

from oceandata.dataservice import i18n
from oceandata.dataservice.app import create_app

REPO = Path(__file__).resolve().parents[1]
HTML = {"Accept": "text/html"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("portal")
    app = create_app(make_catalog(folder / "catalog"), prefix="/")
    app.state.inner.state.preview_cache = folder / "previews"
    with serving(app) as base:
        yield base + "/"


def get(url: str, **headers: str) -> requests.Response:
    return requests.get(url, headers={**HTML, **headers}, timeout=60)


def names_in(page: str) -> set[str]:
    """Dataset names linked from a list page."""
    return set(re.findall(r'href="/datasets/([\w@.-]+)"', page))


def error_sentence(page: str) -> str:
    found = re.search(r'<div class="error"[^>]*>.*?<p>(.*?)</p>', page, re.S)
    assert found, page[-1500:]
    return found.group(1)


# -- messages --------------------------------------------------------------------------
def test_every_message_has_a_chinese_translation() -> None:
    with (REPO / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, "babel.cfg")
    found = {msg[2] for msg in extract_from_dir(REPO / "oceandata" / "dataservice",
                                                method_map, options_map)}
    assert len(found) > 40  # templates and modules were both read
    assert "There is no preview of this dataset: its first variable cannot be drawn." in found
    with i18n.po_path("zh").open("rb") as fh:
        po = read_po(fh, locale="zh_Hans")
    untranslated = []
    for msgid in found:
        key = msgid[0] if isinstance(msgid, tuple) else msgid
        message = po.get(key)
        strings = () if message is None else (
            message.string if isinstance(message.string, tuple) else (message.string,))
        if not strings or not all(strings) or (message and message.fuzzy):
            untranslated.append(msgid)
    assert not untranslated, f"messages without a Chinese translation: {untranslated}"
    assert i18n.gettext("zh", "Search") == "搜索"
    assert i18n.gettext("en", "Search") == "Search"


@pytest.mark.parametrize(("query", "header", "expected"), [
    (None, None, "en"), (None, "zh-CN,zh;q=0.9,en;q=0.8", "zh"), (None, "zh-Hans", "zh"),
    (None, "fr-FR, en;q=0.5, zh;q=0.4", "en"), (None, "fr, zh;q=0.3", "zh"),
    ("en", "zh", "en"), ("zh", "en", "zh"), ("klingon", "zh", "zh"), (None, "en;q=x", "en"),
])
def test_language_negotiation(query: str | None, header: str | None, expected: str) -> None:
    assert i18n.negotiate(query, header) == expected


# -- pages -----------------------------------------------------------------------------
def test_home_and_datasets_json_hide_the_restricted_entry(service: str) -> None:
    home = get(service)
    assert home.status_code == 200
    assert 'lang="en"' in home.text and "Accept-Language" in home.headers["vary"]
    listed = names_in(home.text)
    assert {"cobe_sst2", "oisst_wa", "dsg_profile"} <= listed and RESTRICTED not in listed
    assert "public" in home.text and "Search" in home.text
    rows = requests.get(service + "datasets.json", timeout=30).json()
    names = {row["name"] for row in rows}
    assert "cobe_sst2" in names and RESTRICTED not in names
    cobe = next(row for row in rows if row["name"] == "cobe_sst2")
    assert cobe["access"] == "public"
    assert cobe["links"]["opendap"] == service + "datasets/cobe_sst2/opendap"


@pytest.mark.parametrize(("query", "inside", "outside"), [
    ({"q": "cobe"}, {"cobe_sst2"}, {"oisst_wa", "dsg_point"}),
    ({"standard_name": "sea_surface_temperature"}, {"cobe_sst2", "oisst_wa"}, {"etopo60"}),
    ({"standard_name": "sea_water_*"}, {"pop_surface", "dsg_profile"}, {"cobe_sst2"}),
    ({"bbox": "170,-10,-170,10"}, {"cobe_sst2", "dsg_timeseries"},
     {"oisst_wa", "nemo_seasia_e3t"}),
    ({"time": "2015-07/2015-08"}, {"dsg_trajectory"}, {"cobe_sst2", "dsg_point"}),
    ({"q": "sst", "time": "1960/"}, {"cobe_sst2", "oisst_wa"}, {"etopo60", "dsg_point"}),
])
def test_search(service: str, query: dict[str, str], inside: set[str],
                outside: set[str]) -> None:
    page = requests.get(service + "search", params=query, headers=HTML, timeout=30)
    assert page.status_code == 200, page.text[-500:]
    found = names_in(page.text)
    assert inside <= found and not outside & found, found
    assert RESTRICTED not in found
    for value in query.values():  # the form shows the filters back
        assert f'value="{value}"' in page.text


@pytest.mark.parametrize("query", [{"bbox": "1,2,3"}, {"bbox": "0,50,10,40"},
                                   {"time": "2010/2000"}, {"time": "yesterday"}])
def test_malformed_search_is_400_with_one_sentence(service: str, query: dict[str, str]) -> None:
    page = requests.get(service + "search", params=query, headers=HTML, timeout=30)
    assert page.status_code == 400
    sentence = error_sentence(page.text)
    assert sentence and "\n" not in sentence and "Traceback" not in page.text
    assert not names_in(page.text)


def test_dataset_page(service: str) -> None:
    page = get(service + "datasets/cobe_sst2")
    assert page.status_code == 200
    text = page.text
    assert re.search(r"<h1[^>]*>COBE-SST2", text), text[:2000]
    assert "<td><code>sst</code></td>" in text and "degC" in text
    assert "sea_surface_temperature" in text
    assert "10.1175/JCLI-D-12-00837.1" in text and "Hirahara" in text
    assert 'src="/datasets/cobe_sst2/preview.png"' in text
    opendap = service + "datasets/cobe_sst2/opendap"
    for snippet in (f"xr.open_dataset(&#39;{opendap}&#39;)",
                    f"xr.open_zarr(&#39;{service}datasets/cobe_sst2/zarr&#39;",
                    "oceandata.open_dataset(&#39;cobe_sst2&#39;)",
                    f"ERDDAP(server=&#39;{service}datasets/cobe_sst2/erddap&#39;",
                    f"curl -fL -o cobe_sst2.nc &#39;{service}datasets/cobe_sst2/subset?",
                    f"ncread(&#39;{opendap}&#39;, &#39;sst&#39;)", f"ncdump -h {opendap}",
                    f"ncdf4::nc_open(&#34;{opendap}&#34;)"):
        assert snippet in text, snippet
    behind_tls = get(service + "datasets/cobe_sst2", **{"X-Forwarded-Proto": "https"})
    assert f"xr.open_dataset(&#39;{opendap.replace('http:', 'https:')}&#39;)" in behind_tls.text
    # the snippet URLs answer
    assert requests.get(opendap + ".das", timeout=60).status_code == 200
    assert requests.get(service + "datasets/cobe_sst2/zarr/zarr.json",
                        timeout=60).status_code == 200


def test_restricted_and_unknown_are_404(service: str) -> None:
    for path in (f"datasets/{RESTRICTED}", f"datasets/{RESTRICTED}/preview.png"):
        answer = get(service + path)
        assert answer.status_code == 404 and RESTRICTED in answer.text
    unknown = requests.get(service + "datasets/cobe_sst", timeout=30)
    assert unknown.status_code == 404
    assert "Did you mean cobe_sst2?" in unknown.json()["detail"]


def test_chinese_pages(service: str) -> None:
    for page in (get(service + "?lang=zh"), get(service, **{"Accept-Language": "zh-CN"}),
                 get(service + "datasets/oisst_wa", **{"Accept-Language": "zh-CN,zh"})):
        assert page.status_code == 200
        assert 'lang="zh-Hans"' in page.text and "海洋开放数据" in page.text
        assert "Search the datasets" not in page.text
    chosen = get(service + "search?q=sst&lang=zh")
    assert "搜索" in chosen.text and 'name="lang" value="zh"' in chosen.text
    assert 'href="/datasets/oisst_wa?lang=zh"' in chosen.text  # links keep the choice
    english = get(service + "?lang=en", **{"Accept-Language": "zh-CN"})
    assert 'lang="en"' in english.text and "Ocean open data" in english.text
    # the kind of grid is named, not given as the catalog's key
    assert "离散采样几何" in get(service + "datasets/oisst_wa?lang=zh").text  # a series
    assert "规则网格" in get(service + "datasets/cobe_sst2?lang=zh").text
    assert "regular grid" in get(service + "datasets/cobe_sst2?lang=en").text


# -- browser ---------------------------------------------------------------------------
def pixel_spread(png: bytes) -> float:
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(image.std())


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_browser(service: str, javascript: bool, tmp_path: Path) -> None:
    from browser_helpers import ARTIFACTS, launched_browser

    with launched_browser() as browser:
        context = browser.new_context(java_script_enabled=javascript,  # type: ignore[attr-defined]
                                      viewport={"width": 1200, "height": 900},
                                      accept_downloads=True)
        page = context.new_page()
        page.goto(service)
        assert page.locator("html").get_attribute("lang") == "en"
        page.fill("#q", "sst")
        page.fill("#time", "2000/2001")
        with page.expect_navigation():
            page.click("form.search button[type=submit]")
        assert "/search?" in page.url
        results = page.locator("ul.datasets h3 a")
        assert results.count() >= 2
        with page.expect_navigation():
            page.click('ul.datasets a[href="/datasets/cobe_sst2"]')
        assert page.url == service + "datasets/cobe_sst2"
        image = page.locator("figure.preview img")
        image.scroll_into_view_if_needed()
        # the image is loaded once the page's load event fired (goto/click waited for it)
        box = image.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
        shown = image.screenshot()
        assert pixel_spread(shown) > 10, "the preview shows a blank image"
        src = image.get_attribute("src")
        png = context.request.get(service.rstrip("/") + src)
        assert png.ok and png.headers["content-type"] == "image/png"
        assert pixel_spread(png.body()) > 10
        if javascript:
            assert image.evaluate("img => img.complete && img.naturalWidth") > 100
        page.screenshot(path=str(tmp_path / "dataset-en.png"), full_page=True)
        # the language switch is a plain link
        with page.expect_navigation():
            page.click("a.lang-switch")
        assert page.locator("html").get_attribute("lang") == "zh-Hans"
        assert "摘要" in page.inner_text("main")
        page.screenshot(path=str(tmp_path / "dataset-zh.png"), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        suffix = "js" if javascript else "nojs"
        for shot in ("dataset-en", "dataset-zh"):
            shutil.copy(tmp_path / f"{shot}.png", ARTIFACTS / f"portal-{shot}-{suffix}.png")
        link = page.locator("a.download")
        if link.count() == 0:
            pytest.skip("no subset downloads in this service (oceandata.dataservice."
                        "downloads is absent): the download step was not run")
        href = link.get_attribute("href")
        assert href and href.startswith(service + "datasets/cobe_sst2/subset?")
        with page.expect_download() as info:
            link.click()
        target = tmp_path / "subset.nc"
        info.value.save_as(target)
        head = target.read_bytes()[:8]
        assert head.startswith((b"CDF", b"\x89HDF")), head
        context.close()


def test_links_under_the_hub_prefix(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    app = create_app(make_catalog(tmp_path / "catalog"), prefix="/services/data/")
    client = TestClient(app)
    home = client.get("/services/data/?lang=zh", headers=HTML)
    assert home.status_code == 200
    assert 'href="/services/data/static/portal.css"' in home.text
    assert 'href="/services/data/datasets/cobe_sst2?lang=zh"' in home.text
    assert 'action="/services/data/search"' in home.text
    assert client.get("/services/data/static/portal.css").headers["content-type"].startswith(
        "text/css")
    page = client.get("/services/data/datasets/cobe_sst2", headers=HTML)
    assert "http://testserver/services/data/datasets/cobe_sst2/opendap" in page.text
    assert client.get("/services/data/auth/", headers=HTML).status_code == 401


@pytest.mark.parametrize(("name", "snippet"), [("cobe_sst2", "xarray"),
                                               ("cobe_sst2", "erddapy"),
                                               ("dsg_point", "erddapy")])
def test_the_python_snippets_run_as_pasted(service: str, name: str, snippet: str) -> None:
    """Copy the snippet from the page, paste it into a fresh Python: it must work."""
    import html as html_lib
    import re
    import subprocess
    import sys

    page = requests.get(f"{service}datasets/{name}", timeout=60).text
    blocks = [html_lib.unescape(b) for b in re.findall(r"<pre><code>(.*?)</code></pre>",
                                                          page, flags=re.S)]
    marker = {"xarray": "import xarray as xr", "erddapy": "from erddapy import ERDDAP"}
    (code,) = [b for b in blocks if b.startswith(marker[snippet])]
    check = ("print(type(df).__name__, len(df))" if "df = " in code
             else "print(type(ds).__name__, dict(ds.sizes))")
    # a separate process: a netCDF client and this test's server in one process would
    # contend for xarray's HDF5 lock
    done = subprocess.run([sys.executable, "-c", code + "\n" + check], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, (code, done.stderr[-2000:])
    assert done.stdout.splitlines()[-1].startswith(("Dataset", "DataFrame")), done.stdout


def test_lists_come_a_page_at_a_time(service: str) -> None:
    """A large catalog is never rendered (or sent as JSON) whole in one answer."""
    every = requests.get(f"{service}datasets.json", timeout=30)
    total = int(every.headers["X-Total-Count"])
    assert total == len(every.json()) > 3
    first = requests.get(f"{service}datasets.json", params={"limit": 2}, timeout=30)
    assert [d["name"] for d in first.json()] == [d["name"] for d in every.json()[:2]]
    nxt = first.headers["Link"].split(">")[0].lstrip("<")
    assert [d["name"] for d in requests.get(nxt, timeout=30).json()] == \
        [d["name"] for d in every.json()[2:4]]
    page = requests.get(service, params={"limit": 2, "offset": 2}, timeout=30).text
    assert f"Showing 3-4 of {total}" in page and 'rel="next"' in page and 'rel="prev"' in page
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "x"}):
        r = requests.get(f"{service}datasets.json", params=bad, timeout=30)
        assert r.status_code == 400 and r.json()["detail"].endswith("."), bad
