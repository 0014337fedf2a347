"""Headless Chromium for the browser tests: Debian's package driven by Playwright.

Chromium is ``/usr/bin/chromium`` (never a downloaded browser); it is installed with
apt-get when missing and root. Without it the browser tests are skipped, except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from oceandata.testing import in_ci

CHROMIUM = Path("/usr/bin/chromium")
#: flags for a closed network and a root user (see the machine notes in docs/operations.md)
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: screenshots are copied here (``var/`` is git-ignored) to be kept after the run
ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "test-artifacts"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI, saying why the browser is not there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installed from Debian when missing and root; else skip/fail.

    Returns
    -------
    pathlib.Path
        The Chromium executable.
    """
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        unavailable(f"{CHROMIUM} is missing and cannot be installed here (not root or no "
                    "apt-get): apt-get install chromium")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "chromium"]
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True,
                           timeout=900)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        unavailable("apt-get install chromium timed out")
    if done.returncode != 0 or not CHROMIUM.exists():
        unavailable(f"apt-get install chromium failed:\n{done.stderr[-2000:]}")
    return CHROMIUM


@contextlib.contextmanager
def launched_browser() -> Iterator[object]:
    """A Playwright ``Browser`` on Debian's Chromium, closed afterwards."""
    executable = ensure_chromium()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            unavailable(f"Chromium ({executable}) does not start: {exc}")
        try:
            yield b
        finally:
            b.close()


def assert_not_blank(path: Path, colours: int = 20) -> None:
    """A screenshot with something drawn on it: more than *colours* colours, not one
    background."""
    from PIL import Image

    with Image.open(path) as image:
        found = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert found is None or len(found) > colours, f"{path} looks blank"


def keep_screenshot(page: object, label: str) -> Path:
    """A full-page screenshot of Playwright *page* kept in :data:`ARTIFACTS` as
    ``<label>.png``, checked not blank."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{label}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    assert_not_blank(path)
    return path
