"""QARTOD quality control of in-situ profiles and time series, run by ioos_qc.

The tests are ioos_qc's own (:mod:`ioos_qc.qartod`): ``gross_range``, ``spike``,
``rate_of_change`` and ``flat_line``. This module only decides what each test sees:

- Contiguous ragged arrays (a count variable such as ``row_size`` with the attribute
  ``sample_dimension``, e.g. Argo profiles on ``profile``/``obs``): the tests that look at
  neighbours (spike, rate of change, flat line) run on each profile separately, ordered by
  pressure, so the jump from the bottom of one profile to the top of the next is never a
  spike.
- Padded 2-D arrays, e.g. ``(N_PROF, N_LEVELS)``: each row separately, along the last
  dimension.
- Plain 1-D series: one series, ordered by its ``along`` coordinate (``time``).

Rate of change and flat line need the coordinate the data are ordered along. For a time
series it is time, and the thresholds are ioos_qc's: units per second, and seconds. For a
profile it is pressure, and the thresholds are per dbar and in dbar (ioos_qc is given the
pressure as if it were time, 1 dbar as 1000 s, so pressures are resolved to 0.001 dbar).

Thresholds are configured per variable in YAML; :func:`load_qc_config` documents the layout
and ``qc_default.yaml`` (shipped with the package) gives defaults for Argo PRES, TEMP, PSAL
and sea level ``water_level``, with the source of each number.

Flags are QARTOD's: 1 pass, 2 not evaluated, 3 suspect, 4 fail, 9 missing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml
from ioos_qc import __version__ as ioos_qc_version
from ioos_qc import qartod

from ..errors import DataError, UsageError, suggest

__all__ = [
    "FLAG_MEANINGS",
    "FLAG_VALUES",
    "TESTS",
    "apply_qartod",
    "default_config_path",
    "load_qc_config",
]

#: QARTOD flag values and their meanings, in the order of the CF flag attributes.
FLAG_VALUES = np.array([1, 2, 3, 4, 9], dtype=np.uint8)
FLAG_MEANINGS = "pass not_evaluated suspect fail missing"
_NOT_EVALUATED, _MISSING = np.uint8(2), np.uint8(9)

#: Seconds of ioos_qc "time" per unit of a numeric ``along`` coordinate (e.g. dbar).
_SCALE = 1000.0

_ENTRY_KEYS = ("qartod", "aliases", "axis", "along")
_AXES = ("Z", "T")
_METHODS = ("average", "differential")
_PRESSURE_NAMES = ("PRES", "pressure", "pres", "PRESSURE")
_PRESSURE_STANDARD_NAMES = ("sea_water_pressure", "sea_water_pressure_due_to_sea_water")
_DEPTH_STANDARD_NAMES = ("depth", "depth_below_geoid", "altitude")


@dataclass(frozen=True)
class _Test:
    """How one QARTOD test of ioos_qc is configured and called."""

    function: Any
    required: tuple[str, ...]
    optional: tuple[str, ...]
    needs_order: bool
    needs_along: bool


#: The QARTOD tests this module runs, by configuration name.
TESTS: dict[str, _Test] = {
    "gross_range": _Test(qartod.gross_range_test, ("fail_span",), ("suspect_span",),
                         needs_order=False, needs_along=False),
    "spike": _Test(qartod.spike_test, (), ("suspect_threshold", "fail_threshold", "method"),
                   needs_order=True, needs_along=False),
    "rate_of_change": _Test(qartod.rate_of_change_test, ("threshold",), ("fail_threshold",),
                            needs_order=True, needs_along=True),
    "flat_line": _Test(qartod.flat_line_test, ("tolerance", "suspect_threshold",
                                               "fail_threshold"), (),
                       needs_order=True, needs_along=True),
}


# --------------------------------------------------------------------------- configuration


def default_config_path() -> Path:
    """Path of the packaged default configuration, ``qc_default.yaml``.

    Returns
    -------
    pathlib.Path
        The file inside the installed ``oceandata.insitu`` package.
    """
    return Path(str(resources.files("oceandata.insitu").joinpath("qc_default.yaml")))


def load_qc_config(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Read and validate a QARTOD configuration file (YAML).

    The file maps variable names to entries::

        TEMP:
          aliases: [TEMP_ADJUSTED]     # optional: more variable names for this entry
          axis: Z                      # optional: Z (profiles) or T (time series)
          along: PRES                  # optional: variable to order by (default: detected)
          qartod:
            gross_range: {fail_span: [-2.5, 40], suspect_span: [-2, 35]}
            spike: {suspect_threshold: 2, fail_threshold: 6, method: differential}
            rate_of_change: {threshold: 3, fail_threshold: 10}
            flat_line: {tolerance: 0.0005, suspect_threshold: 200, fail_threshold: 500}

    Test names may also be written as ioos_qc's function names (``spike_test``). The
    keyword arguments are those of the :mod:`ioos_qc.qartod` functions; along pressure
    (``axis: Z``) rate-of-change thresholds are per dbar and flat-line thresholds in dbar,
    along time (``axis: T``) per second and in seconds.

    Parameters
    ----------
    path
        The YAML file; default the packaged ``qc_default.yaml``.

    Returns
    -------
    dict
        The validated configuration, normalised: every entry has ``qartod`` (short test
        names, floats), ``aliases`` (a list) and, when given, ``axis`` and ``along``.

    Raises
    ------
    UsageError
        The file is missing or not YAML, or a key or value is invalid; the message names
        the file and the key.
    """
    path = default_config_path() if path is None else Path(path)
    if not path.is_file():
        raise UsageError(f"QC configuration {path} does not exist; pass the path of a YAML "
                         f"file such as {default_config_path()}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{path}: not valid YAML{where}: "
                         f"{getattr(exc, 'problem', None) or exc}") from None
    return _validate(raw, str(path))


def _validate(raw: Any, source: str) -> dict[str, dict[str, Any]]:
    """Check a configuration mapping and return it normalised (see :func:`load_qc_config`)."""
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError(f"{source}: a QC configuration maps variable names to entries "
                         "with a 'qartod' mapping of tests; got "
                         f"{type(raw).__name__ if raw else 'nothing'}")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        where = f"{source}: key {name!r}"
        if not isinstance(name, str):
            raise UsageError(f"{where}: variable names must be strings")
        if not isinstance(entry, Mapping):
            raise UsageError(f"{where}: expected a mapping with keys {', '.join(_ENTRY_KEYS)}")
        for key in entry:
            if key not in _ENTRY_KEYS:
                raise UsageError(f"{source}: key '{name}.{key}' is unknown; valid keys: "
                                 f"{', '.join(_ENTRY_KEYS)}.{suggest(str(key), _ENTRY_KEYS)}")
        norm: dict[str, Any] = {}
        aliases = entry.get("aliases", [])
        if isinstance(aliases, str):
            aliases = [aliases]
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise UsageError(f"{source}: key '{name}.aliases' must be a list of variable "
                             f"names, got {aliases!r}")
        norm["aliases"] = list(aliases)
        if "axis" in entry:
            axis = entry["axis"]
            if axis not in _AXES:
                raise UsageError(f"{source}: key '{name}.axis' is {axis!r}; valid: Z (along "
                                 "pressure, profiles) or T (along time, time series)")
            norm["axis"] = axis
        if "along" in entry:
            if not isinstance(entry["along"], str) or not entry["along"]:
                raise UsageError(f"{source}: key '{name}.along' must be a variable name, "
                                 f"got {entry['along']!r}")
            norm["along"] = entry["along"]
        tests = entry.get("qartod")
        if not isinstance(tests, Mapping) or not tests:
            raise UsageError(f"{source}: key '{name}.qartod' must map test names "
                             f"({', '.join(TESTS)}) to their parameters")
        norm["qartod"] = {}
        for test, params in tests.items():
            short = test[:-5] if isinstance(test, str) and test.endswith("_test") else test
            if short not in TESTS:
                raise UsageError(f"{source}: key '{name}.qartod.{test}' is not a QARTOD test; "
                                 f"valid: {', '.join(TESTS)}.{suggest(str(test), TESTS)}")
            if short in norm["qartod"]:
                raise UsageError(f"{source}: key '{name}.qartod.{test}' repeats test {short}")
            norm["qartod"][short] = _validate_params(short, params,
                                                     f"{name}.qartod.{test}", source)
        out[name] = norm
    names: dict[str, str] = {}
    for name, norm in out.items():
        for var in [name, *norm["aliases"]]:
            if var in names and names[var] != name:
                raise UsageError(f"{source}: key '{name}.aliases': variable {var!r} is "
                                 f"already configured by entry {names[var]!r}")
            names[var] = name
    return out


def _number(value: Any, key: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise UsageError(f"{source}: key '{key}' must be a finite number, got {value!r}")
    return float(value)


def _span(value: Any, key: str, source: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise UsageError(f"{source}: key '{key}' must be [min, max], got {value!r}")
    lo, hi = (_number(v, key, source) for v in value)
    if not lo < hi:
        raise UsageError(f"{source}: key '{key}' must be [min, max] with min < max, "
                         f"got {value!r}")
    return [lo, hi]


def _positive(value: Any, key: str, source: str) -> float:
    number = _number(value, key, source)
    if number <= 0:
        raise UsageError(f"{source}: key '{key}' must be greater than 0, got {value!r}")
    return number


def _validate_params(test: str, params: Any, key: str, source: str) -> dict[str, Any]:
    spec = TESTS[test]
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise UsageError(f"{source}: key '{key}' must map parameter names to values, "
                         f"got {params!r}")
    allowed = spec.required + spec.optional
    for p in params:
        if p not in allowed:
            raise UsageError(f"{source}: key '{key}.{p}' is not a parameter of {test}; "
                             f"valid: {', '.join(allowed)}.{suggest(str(p), allowed)}")
    for p in spec.required:
        if p not in params:
            raise UsageError(f"{source}: key '{key}.{p}' is missing; {test} needs "
                             f"{', '.join(spec.required)}")
    out: dict[str, Any] = {}
    if test == "gross_range":
        out["fail_span"] = _span(params["fail_span"], f"{key}.fail_span", source)
        if params.get("suspect_span") is not None:
            suspect = _span(params["suspect_span"], f"{key}.suspect_span", source)
            if suspect[0] < out["fail_span"][0] or suspect[1] > out["fail_span"][1]:
                raise UsageError(f"{source}: key '{key}.suspect_span' {suspect} must lie "
                                 f"within fail_span {out['fail_span']}")
            out["suspect_span"] = suspect
        return out
    if test == "spike":
        method = params.get("method", "average")
        if method not in _METHODS:
            raise UsageError(f"{source}: key '{key}.method' is {method!r}; valid: "
                             f"{', '.join(_METHODS)}")
        for p in ("suspect_threshold", "fail_threshold"):
            if params.get(p) is not None:
                out[p] = _positive(params[p], f"{key}.{p}", source)
        if not out:
            raise UsageError(f"{source}: key '{key}' needs suspect_threshold and/or "
                             "fail_threshold")
        out["method"] = method
        low, high = "suspect_threshold", "fail_threshold"
    elif test == "rate_of_change":
        out["threshold"] = _positive(params["threshold"], f"{key}.threshold", source)
        if params.get("fail_threshold") is not None:
            out["fail_threshold"] = _positive(params["fail_threshold"],
                                              f"{key}.fail_threshold", source)
        low, high = "threshold", "fail_threshold"
    else:  # flat_line
        for p in spec.required:
            out[p] = _positive(params[p], f"{key}.{p}", source)
        low, high = "suspect_threshold", "fail_threshold"
    if low in out and high in out and out[high] < out[low]:
        raise UsageError(f"{source}: key '{key}.{high}' ({out[high]:g}) must not be below "
                         f"{low} ({out[low]:g})")
    return out


def _resolve_config(config: Mapping[str, Any] | str | Path | None) -> dict[str, dict]:
    if config is None or isinstance(config, str | Path):
        return load_qc_config(config)
    if isinstance(config, Mapping):
        return _validate(config, "QC configuration")
    raise UsageError(f"config must be a mapping, a YAML path or None, got "
                     f"{type(config).__name__}")


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Ragged:
    """A CF contiguous ragged array: ``count`` on ``instance_dim`` counts ``sample_dim``."""

    count: Hashable
    instance_dim: Hashable
    sample_dim: Hashable

    def bounds(self, ds: xr.Dataset) -> np.ndarray:
        """Start of each instance in the sample dimension, and the total at the end.

        Raises
        ------
        DataError
            The counts are missing, negative or do not add up to the sample dimension.
        """
        sizes = np.asarray(ds[self.count].values, dtype=np.float64)
        total = ds.sizes[self.sample_dim]
        if (not np.all(np.isfinite(sizes)) or np.any(sizes < 0)
                or np.any(sizes != np.round(sizes)) or sizes.sum() != total):
            raise DataError(f"ragged array {self.count!r}: the row sizes are missing, negative "
                            f"or do not add up to the {total} elements of "
                            f"{self.sample_dim!r}; valid row sizes are counts summing to it")
        return np.concatenate([[0], np.cumsum(sizes.astype(np.intp))])


def ragged_of(ds: xr.Dataset, dim: Hashable) -> Ragged | None:
    """The contiguous ragged array whose sample dimension is *dim*, if any.

    Parameters
    ----------
    ds
        The dataset.
    dim
        A dimension name.

    Returns
    -------
    Ragged or None
        The count variable (attribute ``sample_dimension`` equal to *dim*) and its
        dimensions, or None when *dim* is not a ragged sample dimension.
    """
    for name, var in ds.variables.items():
        if var.ndim == 1 and var.attrs.get("sample_dimension") == dim:
            return Ragged(name, var.dims[0], dim)
    return None


def _segments(ds: xr.Dataset, var: xr.DataArray) -> list[np.ndarray]:
    """Indices (into the C-order flattened *var*) of each profile or series."""
    if var.ndim == 1:
        ragged = ragged_of(ds, var.dims[0])
        if ragged is None:
            return [np.arange(var.size)]
        bounds = ragged.bounds(ds)
        return [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
    if var.ndim == 2:
        rows, cols = var.shape
        return [np.arange(r * cols, (r + 1) * cols) for r in range(rows)]
    raise DataError(f"variable {var.name!r} has dimensions {var.dims}; QC needs 1-D data (a "
                    "time series or a ragged array) or 2-D (profile, level) data")


def _is_time(var: xr.DataArray) -> bool:
    return var.dtype.kind == "M" or var.attrs.get("standard_name") == "time" or (
        var.attrs.get("axis") == "T")


def _is_vertical(var: xr.DataArray) -> bool:
    return (var.name in _PRESSURE_NAMES
            or var.attrs.get("standard_name") in _PRESSURE_STANDARD_NAMES + _DEPTH_STANDARD_NAMES
            or var.attrs.get("axis") == "Z" or "positive" in var.attrs)


def _detect_along(ds: xr.Dataset, name: Hashable) -> Hashable | None:
    """The variable *name* is ordered along: pressure for profiles, time for series."""
    var = ds[name]
    dims = set(var.dims)
    candidates = [k for k, v in ds.variables.items()
                  if v.ndim and set(v.dims) <= dims and (v.dims[-1] == var.dims[-1])
                  and v.dtype.kind in "fiuM"]
    if isinstance(name, str) and name.endswith("_ADJUSTED") and "PRES_ADJUSTED" in candidates:
        return "PRES_ADJUSTED"
    vertical = [k for k in candidates if _is_vertical(ds[k])]
    times = [k for k in candidates if _is_time(ds[k])]
    profile_like = var.ndim == 2 or ragged_of(ds, var.dims[0]) is not None
    order = (vertical, times) if profile_like else (times, vertical)
    for found in order:
        if found:
            preferred = [k for k in found if k in _PRESSURE_NAMES]
            return (preferred or found)[0]
    return None


def _along_values(ds: xr.Dataset, along: Hashable, var: xr.DataArray) -> np.ndarray:
    coord = ds[along]
    if not set(coord.dims) <= set(var.dims):
        raise UsageError(f"along={along!r} has dimensions {coord.dims}, not a subset of "
                         f"{var.name!r}'s {var.dims}; pass a variable on the same dimensions")
    if var.ndim == 2 and var.dims[-1] not in coord.dims:
        raise UsageError(f"{var.name!r} is tested row by row along its last dimension "
                         f"{var.dims[-1]!r}, but along={along!r} does not vary along it; "
                         f"transpose the data so that {along!r} varies along the last dimension")
    if coord.dtype.kind not in "fiuM":
        raise UsageError(f"along={along!r} is of type {coord.dtype}; it must be numeric "
                         "(pressure, depth) or datetime (time)")
    values = coord.broadcast_like(var).transpose(*var.dims).values
    return np.asarray(values).reshape(-1)


# --------------------------------------------------------------------------- running


def _tinp(along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ioos_qc's time input and the finite mask: datetimes as is, numbers scaled."""
    if along.dtype.kind == "M":
        return along.astype("datetime64[ns]"), ~np.isnat(along)
    finite = np.isfinite(along)
    scaled = np.where(finite, np.round(along.astype(np.float64) * _SCALE), 0)
    return scaled.astype(np.int64).astype("datetime64[s]").astype("datetime64[ns]"), finite


def _kwargs(test: str, params: Mapping[str, Any], numeric_along: bool) -> dict[str, Any]:
    """The keyword arguments given to ioos_qc, thresholds converted for a numeric along."""
    kw = dict(params)
    if test in ("gross_range",):
        kw = {k: tuple(v) for k, v in kw.items()}
    if numeric_along and test == "rate_of_change":
        kw = {k: v / _SCALE for k, v in kw.items()}
    if numeric_along and test == "flat_line":
        kw["suspect_threshold"] *= _SCALE
        kw["fail_threshold"] *= _SCALE
    return kw


def _flat_line(values: np.ndarray, tinp: np.ndarray, kw: dict[str, Any]) -> np.ndarray:
    """ioos_qc's flat-line test, with windows never shorter than one sample interval.

    ioos_qc turns each threshold into a number of samples, ``int(threshold / median
    interval)``; a threshold shorter than the median interval gives 0 samples and then
    flags every value. Such thresholds are raised to one interval (two equal values).
    """
    if values.size >= 3:
        step = float(np.median(np.diff(tinp)).astype("timedelta64[s]").astype(float))
        if not step > 0:  # repeated positions: no sampling interval to count windows by
            return np.where(np.isfinite(values), _NOT_EVALUATED, _MISSING).astype(np.uint8)
        kw = {**kw, "suspect_threshold": max(kw["suspect_threshold"], step),
              "fail_threshold": max(kw["fail_threshold"], step)}
    return np.asarray(qartod.flat_line_test(values, tinp, **kw), dtype=np.uint8)


def _run_test(test: str, kw: dict[str, Any], values: np.ndarray, tinp: np.ndarray | None,
              placed: np.ndarray | None, segments: list[np.ndarray]) -> np.ndarray:
    """Flags of one test over all *segments*, each run alone in *tinp* order.

    Values whose along coordinate is missing (``placed`` false) are not evaluated by the
    tests that look at neighbours. Without *tinp* the storage order is used.
    """
    spec = TESTS[test]
    present = np.isfinite(values)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if not spec.needs_order:
            return np.asarray(spec.function(values, **kw), dtype=np.uint8)
        flags = np.where(present, _NOT_EVALUATED, _MISSING).astype(np.uint8)
        for seg in segments:
            if tinp is not None and placed is not None:
                seg = seg[placed[seg]]
                seg = seg[np.argsort(tinp[seg], kind="stable")]
            if seg.size == 0:
                continue
            if test == "spike":
                result = spec.function(values[seg], **kw)
            elif test == "flat_line":
                result = _flat_line(values[seg], tinp[seg], kw)
            else:
                result = spec.function(values[seg], tinp[seg], **kw)
            flags[seg] = np.where(present[seg], np.asarray(result, dtype=np.uint8), _MISSING)
    return flags


def _merge_ancillary(attrs: Mapping[str, Any], names: list[str]) -> str:
    existing = str(attrs.get("ancillary_variables", "")).split()
    return " ".join([*existing, *(n for n in names if n not in existing)])


def _flag_attrs(**extra: Any) -> dict[str, Any]:
    return {"flag_values": FLAG_VALUES.copy(), "flag_meanings": FLAG_MEANINGS,
            "valid_min": np.uint8(1), "valid_max": np.uint8(9), **extra}


def apply_qartod(ds: xr.Dataset, config: Mapping[str, Any] | str | Path | None = None, *,
                 along: str | None = None) -> xr.Dataset:
    """Run ioos_qc's QARTOD tests on the configured variables and add the flags.

    For each configured variable present in *ds* (by name or alias) this adds

    - ``<var>_qartod_<test>`` for each configured test: that test's flags, with the
      standard name ioos_qc gives the test (e.g. ``spike_test_quality_flag``);
    - ``<var>_qartod``: the aggregate flag, the worst of the tests (ioos_qc's
      ``qartod_compare``: fail > suspect > pass > not evaluated > missing), with standard
      name ``<standard_name> status_flag`` when the variable has a standard name (else
      ``aggregate_quality_flag``);

    all ``uint8`` with ``flag_values`` 1, 2, 3, 4, 9 and ``flag_meanings`` "pass
    not_evaluated suspect fail missing", and lists them in the variable's
    ``ancillary_variables``. Spike, rate of change and flat line run on each profile of
    a ragged array (``row_size``) or each row of a 2-D array on its own, in the order of
    *along*; a 1-D series without ``row_size`` is one series.

    Only the flagged variables, their *along* coordinates and the row sizes are read
    (computed if dask-backed); other variables stay lazy.

    Parameters
    ----------
    ds
        Profiles (ragged or padded) or a time series.
    config
        A configuration mapping (the layout of :func:`load_qc_config`), the path of a YAML
        file, or None for the packaged defaults.
    along
        Name of the variable to order by (pressure for profiles, time for series) for
        every configured variable; default the entry's ``along``, else detected: the
        variable's ``PRES``/``PRES_ADJUSTED`` (or standard name ``sea_water_pressure``,
        axis ``Z``) for profiles, its datetime coordinate for series.

    Returns
    -------
    xarray.Dataset
        A copy of *ds* with the flag variables, the attribute ``qartod_config`` (JSON: the
        entry run for each variable, with its ``along``, merged with an earlier
        ``qartod_config``) and a ``history`` line (newest first).

    Raises
    ------
    UsageError
        The configuration is invalid, *along* is not a suitable variable, rate of change
        or flat line are configured but no coordinate to run along is found, or the
        entry's ``axis`` does not match the data.
    DataError
        No configured variable is in *ds*, a variable is not 1-D or 2-D, or the row sizes
        of a ragged array do not add up.

    Examples
    --------
    >>> flagged = apply_qartod(argo)                      # doctest: +SKIP
    >>> flagged["TEMP_qartod"].to_series().value_counts()  # doctest: +SKIP
    """
    cfg = _resolve_config(config)
    if along is not None and along not in ds.variables:
        names = list(map(str, ds.variables))
        raise UsageError(f"along={along!r} is not a variable of the dataset; valid: "
                         f"{', '.join(names)}.{suggest(along, names)}")
    targets = [(var_name, key) for key, entry in cfg.items()
               for var_name in [key, *entry["aliases"]] if var_name in ds.data_vars]
    if not targets:
        configured = sorted({n for k, e in cfg.items() for n in [k, *e["aliases"]]})
        raise DataError(f"none of the configured variables ({', '.join(configured)}) is in the "
                        f"dataset (data variables: {', '.join(map(str, ds.data_vars)) or 'none'}); "
                        "pass a config naming them")

    out = ds.copy()
    record: dict[str, Any] = {}
    try:
        previous = json.loads(str(ds.attrs.get("qartod_config", "{}")))
        record.update(previous if isinstance(previous, dict) else {})
    except json.JSONDecodeError:
        pass
    summary = []
    for var_name, key in targets:
        entry = cfg[key]
        var = ds[var_name]
        tests = entry["qartod"]
        segments = _segments(ds, var)
        along_name = along or entry.get("along") or _detect_along(ds, var_name)
        needs_order = any(TESTS[t].needs_order for t in tests)
        needs_along = [t for t in tests if TESTS[t].needs_along]
        if along_name is not None and along_name not in ds.variables:
            raise UsageError(f"{key}.along={along_name!r} is not a variable of the dataset; "
                             f"valid: {', '.join(map(str, ds.variables))}")
        if needs_along and along_name is None:
            raise UsageError(f"{var_name}: {', '.join(needs_along)} need a coordinate to run "
                             "along (pressure or time) and none was found; pass along=<name> "
                             "or remove these tests from the configuration")
        values = np.asarray(var.values, dtype=np.float64).reshape(-1)
        tinp = placed = None
        numeric = False
        if along_name is not None and needs_order:
            raw = _along_values(ds, along_name, var)
            numeric = raw.dtype.kind != "M"
            axis = entry.get("axis")
            if needs_along and axis is not None and axis != ("Z" if numeric else "T"):
                kind = "pressure/depth" if numeric else "time"
                raise UsageError(f"{var_name}: entry {key!r} has axis {axis} but the data run "
                                 f"along {along_name!r} ({kind}); use a configuration whose "
                                 f"axis is {'Z' if numeric else 'T'} for these data")
            tinp, placed = _tinp(raw)
        flags: dict[str, np.ndarray] = {}
        kwargs: dict[str, dict[str, Any]] = {}
        for test, params in tests.items():
            kwargs[test] = _kwargs(test, params, numeric)
            flags[test] = _run_test(test, kwargs[test], values, tinp, placed, segments)
        aggregate = np.asarray(qartod.qartod_compare(list(flags.values())), dtype=np.uint8)

        standard_name = var.attrs.get("standard_name")
        label = var.attrs.get("long_name", var_name)
        names = []
        agg_name = f"{var_name}_qartod"
        out[agg_name] = (var.dims, aggregate.reshape(var.shape), _flag_attrs(
            standard_name=f"{standard_name} status_flag" if standard_name
            else "aggregate_quality_flag",
            long_name=f"QARTOD aggregate quality flag of {label}",
            ioos_qc_module="qartod", ioos_qc_test="qartod_compare",
            ioos_qc_target=str(var_name)))
        names.append(agg_name)
        for test, result in flags.items():
            fn = TESTS[test].function
            flag_name = f"{var_name}_qartod_{test}"
            out[flag_name] = (var.dims, result.reshape(var.shape), _flag_attrs(
                standard_name=getattr(fn, "standard_name", "quality_flag"),
                long_name=f"{getattr(fn, 'long_name', 'Quality Flag')} of {label}",
                ioos_qc_module="qartod", ioos_qc_test=fn.__name__,
                ioos_qc_target=str(var_name),
                ioos_qc_config=json.dumps(tests[test]),
                **({"ioos_qc_along": str(along_name)} if TESTS[test].needs_order
                   and along_name is not None else {})))
            names.append(flag_name)
        out[var_name].attrs = {**var.attrs,
                               "ancillary_variables": _merge_ancillary(var.attrs, names)}
        done = {"qartod": tests, "aliases": [], **({"axis": entry["axis"]}
                                                   if "axis" in entry else {})}
        if along_name is not None and needs_order:
            done["along"] = str(along_name)
        record[str(var_name)] = done
        summary.append(f"{var_name}[{','.join(tests)}"
                       + (f" along {along_name}" if along_name is not None and needs_order
                          else "") + "]")

    from .. import __version__  # late: the package may import this module

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = "default" if config is None else (str(config) if isinstance(config, str | Path)
                                                  else "mapping")
    line = (f"{stamp}: oceandata {__version__}: oceandata.insitu.qc.apply_qartod "
            f"(ioos_qc {ioos_qc_version} QARTOD, config {source}): {' '.join(summary)}")
    history = str(ds.attrs.get("history", "")).strip()
    out.attrs = {**ds.attrs, "history": f"{line}\n{history}" if history else line,
                 "qartod_config": json.dumps(record, sort_keys=True)}
    return out
