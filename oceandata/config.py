"""Settings of oceandata, declared once with a type, a default and a sentence.

Every setting is read from an environment variable ``OCEANDATA_<NAME>`` (for example
``OCEANDATA_SAMPLE_DATA``). ``oceandata config show`` prints them with their help.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import UsageError

#: The source checkout this package lives in, if it is run from one (editable install).
_CHECKOUT = Path(__file__).resolve().parent.parent
_IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "catalogs").is_dir()


def _default_catalog() -> Path:
    if _IN_CHECKOUT:
        return _CHECKOUT / "catalogs" / "ocean.yaml"
    return Path.home() / ".local" / "share" / "oceandata" / "catalogs" / "ocean.yaml"


def _default_sample_cache() -> Path:
    if _IN_CHECKOUT:
        return _CHECKOUT / "data" / "sample"
    import pooch

    return Path(pooch.os_cache("oceandata"))


def _default_data_dir() -> Path:
    if _IN_CHECKOUT:
        return _CHECKOUT / "var"
    return Path.home() / ".local" / "share" / "oceandata"


class Settings(BaseSettings):
    """oceandata settings (environment variables ``OCEANDATA_*``)."""

    model_config = SettingsConfigDict(env_prefix="OCEANDATA_", extra="ignore")

    catalog: Path = Field(
        default_factory=_default_catalog,
        description="Root catalog opened by `open_catalog()` and the CLI when no path is given.",
    )
    sample_data: Path | None = Field(
        default=None,
        description=(
            "A local folder with the sample files (same layout as their registry paths), "
            "looked at before the cache and the network; CI sets it to ../shared/data."
        ),
    )
    sample_cache: Path = Field(
        default_factory=_default_sample_cache,
        description=(
            "Where sample files are kept once fetched (links to OCEANDATA_SAMPLE_DATA or "
            "downloads); the sample catalog's paths point here."
        ),
    )
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Runtime state of the platform: databases, secrets (0600), logs, stores.",
    )
    chunks: str = Field(
        default="auto",
        description=("Default dask chunking for `open_dataset` when the catalog entry sets "
                     "none: 'auto', or JSON such as '{}' (the files' own chunks) or "
                     "'{\"time\": 12}'."),
    )

    max_output: str = Field(
        default="2GB",
        description=("Largest output `oceandata subset` and `oceandata.io.export` write without "
                     "--force / force=True, by its estimated size: bytes or a size such as "
                     "'2GB', '500MB', '1.5GiB'. Larger requests are refused with the estimate "
                     "and a suggested split."),
    )

    max_download: str = Field(
        default="2GB",
        description=("Largest subset the open-data service writes for one request, by its "
                     "estimated size: bytes or a size such as '2GB', '500MB'. Larger requests "
                     "are answered 413 with the estimate and a suggested split."),
    )

    def max_output_bytes(self) -> int:
        """The ``max_output`` setting in bytes.

        Raises
        ------
        UsageError
            When it is not a size such as ``2GB``, ``500MB`` or ``1000000``.
        """
        return parse_size(self.max_output, "OCEANDATA_MAX_OUTPUT")

    def max_download_bytes(self) -> int:
        """The ``max_download`` setting in bytes.

        Raises
        ------
        UsageError
            When it is not a size such as ``2GB``, ``500MB`` or ``1000000``.
        """
        return parse_size(self.max_download, "OCEANDATA_MAX_DOWNLOAD")

    def dask_chunks(self) -> Any:
        """The ``chunks`` setting as dask takes it: ``"auto"`` or a dict.

        Raises
        ------
        UsageError
            When it is neither ``auto`` nor a JSON object of dimension sizes.
        """
        text = self.chunks.strip()
        if text == "auto":
            return "auto"
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if not isinstance(value, dict) or not all(
                isinstance(v, int) or v in (None, "auto") for v in value.values()):
            raise UsageError(f"OCEANDATA_CHUNKS={self.chunks!r} is not 'auto' or a JSON object "
                             'of dimension sizes, e.g. {} or {"time": 12}')
        return value


@lru_cache(maxsize=1)
def _cached() -> Settings:
    return Settings()


def parse_size(text: str, name: str) -> int:
    """A size setting (``2GB``, ``500MB``, ``1000000``) in bytes; UsageError otherwise."""
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(text.strip()))
    except (ValueError, TypeError, AttributeError):
        value = -1
    if value <= 0:
        raise UsageError(f"{name}={text!r} is not a positive size: give bytes or a size such "
                         "as 2GB, 500MB or 1.5GiB")
    return value


def get_settings(*, reload: bool = False) -> Settings:
    """Return the process-wide settings, read once from the environment.

    Parameters
    ----------
    reload
        Read the environment again (tests that change ``OCEANDATA_*`` use this).
    """
    if reload:
        _cached.cache_clear()
    return _cached()
