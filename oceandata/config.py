"""Settings of oceandata, declared once with a type, a default and a sentence.

Every setting is read from an environment variable ``OCEANDATA_<NAME>`` (for example
``OCEANDATA_SAMPLE_DATA``). ``oceandata config show`` prints them with their help.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
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


AccessClass = Literal["anonymous", "registered", "partner"]
#: the open-data service's access classes, from the least to the most trusted
ACCESS_CLASSES: tuple[AccessClass, ...] = ("anonymous", "registered", "partner")


class ClassLimits(BaseModel):
    """What one access class may take.

    Sizes are bytes or sizes such as ``2GB``; rates use the ``limits`` notation
    (``"600/minute"``, ``"20/second;600/minute"``).
    """

    sync_bytes: str = Field(description="Largest answer streamed at once (its estimate); "
                                        "larger requests get 413 (or 202 with async=1).")
    rate: str = Field(description="Requests per client, e.g. '600/minute'; more get 429.")
    concurrent: int = Field(ge=1, description="Requests of one client served at once; the "
                                              "others wait up to queue_wait seconds.")
    daily_bytes: str = Field(description="Bytes one client may download per UTC day.")
    async_bytes: str = Field(description="Largest asynchronous job (its estimate); '0' "
                                         "offers none (anonymous clients).")

    def sizes(self) -> dict[str, int]:
        """``sync_bytes``, ``daily_bytes`` and ``async_bytes`` in bytes."""
        out = {}
        for name in ("sync_bytes", "daily_bytes", "async_bytes"):
            text = str(getattr(self, name)).strip()
            out[name] = 0 if text == "0" else parse_size(text, f"OCEANDATA_DATA__*__{name}")
        return out


class AnonymousLimits(ClassLimits):
    """Defaults of clients without credentials (no asynchronous jobs)."""

    sync_bytes: str = "500MB"
    rate: str = "1200/minute"
    concurrent: int = Field(default=4, ge=1)
    daily_bytes: str = "20GB"
    async_bytes: str = "0"


class RegisteredLimits(ClassLimits):
    """Defaults of hub users (jobs are charged to an allocation: a user without one is
    offered no asynchronous job)."""

    sync_bytes: str = "2GB"
    rate: str = "3000/minute"
    concurrent: int = Field(default=6, ge=1)
    daily_bytes: str = "200GB"
    async_bytes: str = "0"


class PartnerLimits(ClassLimits):
    """Defaults of partners (an allocation in force, or a partner group)."""

    sync_bytes: str = "2GB"
    rate: str = "6000/minute"
    concurrent: int = Field(default=8, ge=1)
    daily_bytes: str = "2TB"
    async_bytes: str = "500GB"


class TrafficSettings(BaseModel):
    """The open-data service's limits per access class, and how they are kept.

    Set from the environment as ``OCEANDATA_DATA__<FIELD>`` and
    ``OCEANDATA_DATA__<CLASS>__<FIELD>`` (for example
    ``OCEANDATA_DATA__ANONYMOUS__RATE=120/minute``).
    """

    anonymous: AnonymousLimits = Field(default_factory=AnonymousLimits)
    registered: RegisteredLimits = Field(default_factory=RegisteredLimits)
    partner: PartnerLimits = Field(default_factory=PartnerLimits)
    partner_groups: list[str] = Field(default=["partners"],
                                      description="Hub groups whose members are partners.")
    queue_wait: float = Field(default=10.0, gt=0, description="Seconds a request waits for "
                              "one of its client's concurrent slots before 429.")
    request_timeout: float = Field(default=600.0, gt=0, description="Wall-time limit in "
                                   "seconds of the work behind one synchronous request.")
    storage: str = Field(default="memory://", description="Where rate-limit counters live: "
                         "'memory://' (one process) or a Redis URL 'redis://host:6379/0'.")
    link_expiry: int = Field(default=86400, ge=60, description="Seconds a finished job's "
                             "download link stays valid.")
    trusted_proxies: list[str] = Field(default=["127.0.0.1", "::1"], description=(
        "Addresses whose X-Forwarded-For is believed (the hub's proxy); others are the "
        "client."))

    def for_class(self, name: AccessClass) -> ClassLimits:
        """The limits of access class *name*."""
        return getattr(self, name)


class GovernanceSettings(BaseModel):
    """Where the governance layer keeps its state (see docs/governance.md)."""

    audit_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the audit trail; default "
                                  "sqlite:///<data_dir>/audit.sqlite (PostgreSQL in production).")
    audit_retention_days: int = Field(
        default=180, ge=1, description="Days audit records are kept before `oceandata audit "
                                       "prune` may remove them (180: the legal minimum for "
                                       "network logs).")
    negative_list: Path | None = Field(
        default=None, description="The site's negative list (YAML of entry-name patterns kept "
                                  "from open release); default negative-list.yaml beside the "
                                  "root catalog, if present.")
    backup_repository: str | None = Field(
        default=None, description="The restic repository of `oceandata admin backup`; default "
                                  "<data_dir>/backup/restic.")


class Settings(BaseSettings):
    """oceandata settings (environment variables ``OCEANDATA_*``)."""

    model_config = SettingsConfigDict(env_prefix="OCEANDATA_", extra="ignore",
                                      env_nested_delimiter="__")

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

    data: TrafficSettings = Field(
        default_factory=TrafficSettings,
        description=("The open-data service's limits per access class (anonymous, "
                     "registered, partner): OCEANDATA_DATA__<CLASS>__<FIELD>, e.g. "
                     "OCEANDATA_DATA__ANONYMOUS__RATE=120/minute; see docs/dataservice.md."),
    )

    governance: GovernanceSettings = Field(
        default_factory=GovernanceSettings,
        description=("Audit trail, negative list and backups: OCEANDATA_GOVERNANCE__<FIELD>, "
                     "e.g. OCEANDATA_GOVERNANCE__AUDIT_URL=postgresql://...; see "
                     "docs/governance.md."),
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
