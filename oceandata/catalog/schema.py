"""The schema every catalog entry's ``metadata`` follows (pydantic).

A catalog file is YAML in the intake v1 format::

    metadata:
      version: 1
      title: ...
    sources:
      cobe_sst2:
        driver: netcdf       # netcdf | zarr | opendap | csv | a YAMLFileCatalog
        description: ...
        args: {urlpath: "{{ CATALOG_DIR }}/../data/sample/gridded/cobe-sst2/year*.nc"}
        metadata: {...}           # EntryMetadata below

intake itself ignores what it does not know in ``metadata``; oceandata validates it
with the models here so that search, access control and ``catalog validate`` can
rely on it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GridKind = Literal["regular", "curvilinear", "dsg", "unstructured"]
FeatureType = Literal["point", "timeSeries", "trajectory", "profile", "timeSeriesProfile",
                      "trajectoryProfile"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variable(_Strict):
    """A data variable the entry provides."""

    name: str = Field(description="Variable name in the opened dataset.")
    standard_name: str | None = Field(default=None, description="CF standard name.")
    units: str | None = Field(default=None, description="Units as stored (UDUNITS string).")
    long_name: str | None = Field(default=None, description="Human-readable name.")


class BBox(_Strict):
    """Spatial extent in degrees; ``west > east`` means the box crosses the antimeridian."""

    west: float = Field(ge=-180, le=360)
    south: float = Field(ge=-90, le=90)
    east: float = Field(ge=-180, le=360)
    north: float = Field(ge=-90, le=90)

    @model_validator(mode="after")
    def _south_le_north(self) -> BBox:
        if self.south > self.north:
            raise ValueError(f"south ({self.south}) is greater than north ({self.north})")
        return self

    def as_tuple(self) -> tuple[float, float, float, float]:
        """Return ``(west, south, east, north)``."""
        return (self.west, self.south, self.east, self.north)

    @classmethod
    def parse(cls, values: Any) -> BBox:
        """Build a box from ``(west, south, east, north)`` or raise a one-line UsageError."""
        from ..errors import UsageError

        try:
            west, south, east, north = (float(v) for v in values)
        except (TypeError, ValueError):
            raise UsageError(f"bbox {values!r} is not four numbers: give W,S,E,N in degrees, "
                             "e.g. 120,-10,280,10") from None
        if not -90 <= south <= 90 or not -90 <= north <= 90:
            raise UsageError(f"bbox latitudes {south}, {north} are outside -90..90")
        if not -180 <= west <= 360 or not -180 <= east <= 360:
            raise UsageError(f"bbox longitudes {west}, {east} are outside -180..360")
        if south > north:
            raise UsageError(f"bbox south ({south}) is greater than north ({north}): give "
                             "W,S,E,N with S <= N")
        return cls(west=west, south=south, east=east, north=north)


class TimeRange(_Strict):
    """Temporal extent (ISO 8601 dates, either end may be open).

    Climatologies with no calendar year leave both ends empty and say so in
    ``metadata.tags`` (``climatology``).
    """

    start: str | None = None
    end: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, dt.date | dt.datetime):
            return value.isoformat()
        from ..errors import UsageError
        from ..times import time_parts

        try:
            time_parts(str(value), "date")
        except UsageError as exc:  # pydantic reports ValueErrors with the field and line
            raise ValueError(str(exc)) from None
        return str(value)

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        from ..errors import UsageError
        from ..times import Period

        try:
            Period.checked((self.start, self.end), what="time_range")
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return self


class DepthRange(_Strict):
    """Vertical extent in metres, positive down (negative values are heights above sea level)."""

    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> DepthRange:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


#: categories of data (GB/T 43697-2024 classifies by sector first; within the ocean sector
#: the centre's catalogue divides data by how they were made)
Category = Literal["observation", "survey", "model", "reanalysis", "scientific", "derived"]
#: grades of GB/T 43697-2024, from the least to the most sensitive
Grade = Literal["general", "important", "core"]
#: who an entry is released to: everyone, every registered (logged-in) user, or only grantees
Release = Literal["open", "registered", "restricted"]
GRADES: tuple[str, ...] = ("general", "important", "core")
RELEASES: tuple[str, ...] = ("open", "registered", "restricted")


def _(message: str) -> str:
    """Mark *message* for the message catalogs; a page translates it where it shows it."""
    return message


#: what the pages call each category and grade (English, translated through the catalogs)
CATEGORY_LABELS = {"observation": _("observation"), "survey": _("survey"),
                   "model": _("model output"), "reanalysis": _("reanalysis"),
                   "scientific": _("research product"), "derived": _("derived")}
GRADE_LABELS = {"general": _("general data"), "important": _("important data"),
                "core": _("core data")}
#: what the pages call each kind of grid
GRID_LABELS = {"regular": _("regular grid"), "curvilinear": _("curvilinear grid"),
               "dsg": _("discrete sampling geometry"), "unstructured": _("unstructured mesh")}


class DerivedFrom(_Strict):
    """Where a desensitised copy comes from (``oceandata publish``)."""

    entry: str = Field(description="The source entry.")
    version: str = Field(description="The source's version: snapshot id or content digest.")
    profile: str = Field(description="The desensitisation profile applied.")


class Classification(_Strict):
    """Classification and grading of an entry (docs/governance.md).

    ``important`` and ``core`` data are never released openly; ``embargo_until`` keeps an
    entry closed to everyone but its grantees until that day (UTC), after which its
    ``release`` applies by itself.
    """

    category: Category
    grade: Grade
    rationale: str = Field(min_length=1, description="Why this grade.")
    owner: str = Field(min_length=1, description="The person or unit answerable for the data.")
    release: Release
    embargo_until: dt.date | None = Field(
        default=None, description="Closed to all but grantees until this day (UTC).")
    profile: str | None = Field(
        default=None, description="Desensitisation profile of the entry's public copy.")
    derived_from: DerivedFrom | None = None

    @model_validator(mode="after")
    def _never_open_above_general(self) -> Classification:
        if self.grade != "general" and self.release == "open":
            raise ValueError(f"a {self.grade!r} entry can never be released 'open': give "
                             "release 'registered' or 'restricted', or publish a desensitised "
                             "copy (oceandata publish)")
        return self


class Access(_Strict):
    """Who is granted an entry that is not open to all (see :class:`Classification`)."""

    groups: list[str] = Field(
        default_factory=list, description="Hub groups granted the entry when it is not open."
    )


class EntryMetadata(_Strict):
    """What a catalog entry says about its data; checked by ``oceandata catalog validate``."""

    title: str
    description: str | None = None
    variables: list[Variable] = Field(min_length=1)
    bbox: BBox | None = Field(default=None, description="None for data with no position.")
    time_range: TimeRange | None = None
    depth_range: DepthRange | None = None
    grid: GridKind
    feature_type: FeatureType | None = Field(
        default=None, description="CF featureType, for discrete sampling geometries."
    )
    provider: str
    license: str
    citation: str | None = None
    doi: str | None = None
    classification: Classification = Field(
        description="Category, grade, owner and release (required: data are graded before "
                    "they are opened).")
    access: Access = Field(default_factory=Access)
    tags: list[str] = Field(default_factory=list)
    sample: list[str] | None = Field(
        default=None,
        description=(
            "Sample-data registry names (or glob patterns over them) that back this entry; "
            "they are fetched before the entry is opened."
        ),
    )
    fix_attrs: dict[str, dict[str, Any]] | None = Field(
        default=None,
        description=(
            "Attributes to set on variables before CF decoding, for files whose metadata "
            "are incomplete (e.g. a calendar stated only in a global attribute)."
        ),
    )

    table: dict[str, Any] | None = Field(
        default=None,
        description=(
            "For csv entries: how rows become a Dataset (datetime_columns, datetime_format, "
            "index_name, rename, attrs). Kept in metadata so intake's csv driver ignores it."
        ),
    )

    @field_validator("sample", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _restricted_has_grantees(self) -> EntryMetadata:
        if self.classification.release == "restricted" and not self.access.groups:
            raise ValueError("a restricted entry must name the groups granted it "
                             "(access.groups); allocations may grant it too")
        return self

    @model_validator(mode="after")
    def _dsg_has_feature_type(self) -> EntryMetadata:
        if self.grid == "dsg" and self.feature_type is None:
            raise ValueError("grid 'dsg' needs a feature_type (point, timeSeries, ...)")
        return self

    @property
    def variable_names(self) -> list[str]:
        """Names of the declared variables."""
        return [v.name for v in self.variables]


DATA_DRIVERS = ("netcdf", "zarr", "opendap", "csv", "icechunk")
CATALOG_DRIVERS = ("intake.catalog.local.YAMLFileCatalog", "yaml_file_cat")


class Source(BaseModel):
    """One ``sources:`` item: a data entry or a reference to a sub-catalog."""

    model_config = ConfigDict(extra="allow")

    driver: str
    description: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value not in DATA_DRIVERS + CATALOG_DRIVERS:
            valid = ", ".join(DATA_DRIVERS + CATALOG_DRIVERS[:1])
            raise ValueError(f"unknown driver {value!r}; valid drivers: {valid}")
        return value

    @property
    def is_catalog(self) -> bool:
        """Whether this item references a nested catalog."""
        return self.driver in CATALOG_DRIVERS


class CatalogFile(BaseModel):
    """A whole catalog YAML file."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] = Field(default_factory=dict)
    sources: dict[str, Source]
    name: str | None = None
    description: str | None = None
