"""Saving figures: standalone HTML (resources inline) and PNG through headless Chromium.

bokeh's own ``export_png`` drives Selenium and a webdriver; here the standalone HTML is
opened by Playwright in headless Chromium instead, the page is waited on until bokeh
reports its document idle, and the plot's bounding box is screenshotted. Files are written
under a temporary name in the target folder and renamed when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ..errors import OceandataError, UsageError
from ._backend import BACKEND, hv

#: Arguments Chromium is started with (no sandbox, GPU, network services or first run).
CHROMIUM_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")

_FORMATS = (".html", ".png")

# bokeh's export wait: true once every document is idle (all views rendered)
_IDLE = """() => {
  if (!window.Bokeh || !Bokeh.documents || Bokeh.documents.length === 0) return false;
  return Bokeh.documents.every((doc) => doc.is_idle);
}"""

# union of the boxes of what the root views draw: holoviews centres a plot in a Row
# between two Spacers as wide as the page, so a root's own box is the page width
_BOX = """() => {
  const boxes = [];
  const area = (b) => b.width > 0 && b.height > 0;
  for (const doc of Bokeh.documents) {
    for (const root of doc.roots()) {
      const view = Bokeh.index.get_one ? Bokeh.index.get_one(root) : Bokeh.index[root.id];
      if (!view || !view.el) continue;
      const kids = view.shadow_el ? [...view.shadow_el.children] : [];
      const drawn = kids.filter((el) => !el.classList.contains("bk-Spacer"))
        .map((el) => el.getBoundingClientRect()).filter(area);
      boxes.push(...(drawn.length ? drawn : [view.el.getBoundingClientRect()]));
    }
  }
  if (boxes.length === 0) return null;
  const pad = 4;
  const left = Math.max(0, Math.min(...boxes.map((b) => b.left)) - pad);
  const top = Math.max(0, Math.min(...boxes.map((b) => b.top)) - pad);
  const right = Math.max(...boxes.map((b) => b.right)) + pad;
  const bottom = Math.max(...boxes.map((b) => b.bottom)) + pad;
  return {x: left, y: top, width: right - left, height: bottom - top};
}"""

class ExportError(OceandataError):
    """A figure could not be rendered to PNG (browser missing, or the page failed)."""


def chromium_path() -> str | None:
    """The Chromium executable PNG export uses: ``OCEANDATA_CHROMIUM``, else on PATH."""
    env = os.environ.get("OCEANDATA_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _inline_resources(model: Any) -> Any:
    """BokehJS inline, with the external files of only the models *model* uses.

    bokeh adds the ``__javascript__``/``__css__`` of every model class imported in the
    process; panel (imported by holoviews) declares some as CDN or server-relative
    URLs that a page opened from disk cannot load.
    """
    from bokeh.resources import Resources

    used = sorted({type(obj) for obj in model.references()}, key=lambda c: c.__qualname__)

    class _Used(Resources):
        def clone(self, *, components: Any = None) -> Resources:
            return _Used(mode=self.mode, minified=self.minified,
                         components=components if components is not None
                         else list(self.components))

        def _collect_external_resources(self, resource_attr: Any) -> list[str]:
            found: list[str] = []
            for cls in used:
                external = getattr(cls, resource_attr, None)
                for item in [external] if isinstance(external, str) else external or []:
                    if item not in found:
                        found.append(item)
            return found

    return _Used(mode="inline")


def _write_html(fig: Any, path: Path, title: str) -> None:
    """The bokeh document of *fig* with BokehJS inline.

    Rendered to a bokeh model and written with :func:`bokeh.embed.file_html` rather than
    ``hv.save``, whose panel template links CSS, icons and MathJax from CDNs.
    """
    from bokeh.embed import file_html

    model = hv.render(fig, backend=BACKEND)
    path.write_text(file_html(model, _inline_resources(model), title), encoding="utf-8")


def render_png(html: Path, png: Path, *, timeout: float = 60.0, scale: float = 1.0) -> list[str]:
    """Screenshot the bokeh plot of a standalone HTML file with headless Chromium.

    Parameters
    ----------
    html
        A standalone HTML file (resources inline; the page is opened from disk).
    png
        Where the PNG is written.
    timeout
        Seconds to wait for the page to load and bokeh to become idle.
    scale
        Device scale factor (2 for a high-resolution image).

    Returns
    -------
    list of str
        Console errors and page errors seen while rendering (empty when clean).

    Raises
    ------
    ExportError
        No Chromium, Playwright missing, or bokeh did not render in time.
    """
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ExportError("PNG export needs playwright (pip install playwright); "
                          "save to .html instead") from exc
    browser_path = chromium_path()
    if browser_path is None:
        raise ExportError("PNG export needs Chromium: install it (apt-get install chromium) "
                          "or set OCEANDATA_CHROMIUM to its path; save to .html instead")
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=browser_path,
                                         args=list(CHROMIUM_ARGS))
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1200},
                                        device_scale_factor=scale)
                page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                        else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(html.resolve().as_uri(), wait_until="load",
                          timeout=timeout * 1000)
                page.wait_for_function(_IDLE, timeout=timeout * 1000, polling=100)
                box = page.evaluate(_BOX)
                if not box or box["width"] < 1 or box["height"] < 1:
                    raise ExportError(f"bokeh drew nothing in {html.name}: "
                                      f"{'; '.join(errors) or 'no plot found'}")
                page.screenshot(path=str(png), clip=box, type="png")
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise ExportError(f"Chromium could not render {html.name}: "
                          f"{str(exc).splitlines()[0]}") from exc
    return errors


def save(fig: Any, path: str | os.PathLike[str], *, title: str | None = None,
         scale: float = 1.0) -> Path:
    """Save a figure as standalone HTML or as PNG.

    Parameters
    ----------
    fig
        A holoviews object from :mod:`oceandata.viz` (or any holoviews object).
    path
        Target file; its extension chooses the format: ``.html`` (bokeh standalone
        page with the JavaScript and CSS inline, so it opens offline) or ``.png`` (that
        page rendered in headless Chromium through Playwright and the plot screenshotted).
    title
        HTML page title; default the file name.
    scale
        PNG only: device scale factor (2 doubles the resolution).

    Returns
    -------
    pathlib.Path
        The written file. It appears complete or not at all: it is written under a
        temporary name in the same folder and renamed.

    Raises
    ------
    UsageError
        The extension is neither ``.html`` nor ``.png``.
    ExportError
        PNG export without Chromium or Playwright, or the page failed to render.

    Examples
    --------
    >>> from oceandata.viz import save, time_series
    >>> save(time_series(sst), "sst.html")  # doctest: +SKIP
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in _FORMATS:
        raise UsageError(f"cannot save a figure as {target.name!r}: the extension must be "
                         f"one of {', '.join(_FORMATS)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.part{suffix}")
    try:
        if suffix == ".html":
            _write_html(fig, tmp, title or target.stem)
        else:
            with tempfile.TemporaryDirectory(prefix="oceandata-viz-") as folder:
                page = Path(folder) / "figure.html"
                _write_html(fig, page, title or target.stem)
                render_png(page, tmp, scale=scale)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
