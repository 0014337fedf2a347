"""The access protocols of the open-data service, as xpublish plugins.

- :class:`CatalogProvider` gives xpublish the catalog's datasets: the ids the current
  caller may see (:data:`oceandata.dataservice.access.CALLER`), each opened as the
  notebooks open it (``Entry._open``: same drivers, same CF decoding) after
  :func:`oceandata.dataservice.access.guard` has checked the path. ``name@version`` opens
  a tag or snapshot of a versioned store.
- OPeNDAP (DAP2, ``xpublish-opendap``) with the types DAP2 cannot carry cast explicitly
  (:func:`dap_compatible`), Zarr v3 over HTTP (``xpublish-zarr``), OGC API - EDR
  (``xpublish-edr``) under ``/datasets/{id}/``.
- ERDDAP-compatible griddap/tabledap (``xpublish-erddap``): the server-wide ``/erddap/``
  lists open datasets only (an ERDDAP catalogue is built once for everyone, so it never
  holds a restricted dataset); ``/datasets/{id}/erddap/`` serves one dataset, restricted
  ones included, behind the same guard as every path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import xarray as xr
from fastapi import APIRouter, Depends, HTTPException
from pydantic import ConfigDict, Field
from xpublish import Dependencies, Plugin, hookimpl
from xpublish_edr import CfEdrPlugin
from xpublish_erddap import ErddapPlugin
from xpublish_opendap import OpenDapPlugin
from xpublish_zarr import ZarrPlugin

from ..catalog.core import Catalog, Entry
from .access import ANONYMOUS, CALLER, resolve, visible_entries

#: how many opened datasets are kept (name, version) → Dataset
OPEN_CACHE_SIZE = 64


class DatasetCache:
    """Opened datasets by ``(name, version)``, least recently used dropped first."""

    def __init__(self, size: int = OPEN_CACHE_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str | None], xr.Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, entry: Entry, version: str | None) -> xr.Dataset:
        """The dataset of *entry* at *version*, opened once."""
        key = (entry.name, version)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        ds = entry._open(version=version)  # the guard has checked the caller's grants
        with self._lock:
            self._items[key] = ds
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return ds


class CatalogProvider(Plugin):
    """xpublish dataset provider over an oceandata catalog (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "oceandata-catalog"
    catalog: Any = Field(default=None, exclude=True)
    cache: Any = Field(default=None, exclude=True)

    def __hash__(self) -> int:
        return id(self)

    @hookimpl
    def get_datasets(self) -> Iterable[str]:
        """Ids of the datasets the current caller may see."""
        return list(visible_entries(self.catalog, CALLER.get()))

    @hookimpl
    def get_dataset(self, dataset_id: str) -> xr.Dataset | None:
        """The dataset *dataset_id* (``name`` or ``name@version``), None if not visible."""
        try:
            entry, version = resolve(self.catalog, dataset_id, CALLER.get())
        except HTTPException:
            return None
        return self.cache.get(entry, version)


def dap_compatible(ds: xr.Dataset) -> xr.Dataset:
    """*ds* with every variable in a type DAP2 carries.

    DAP2 has Byte (unsigned 8-bit), Int16/UInt16, Int32/UInt32, Float32/Float64 and
    String. So: ``int8`` → ``int16``, ``bool`` → ``uint8``, ``int64``/``uint64`` →
    ``float64`` (exact up to 2**53; larger counts lose precision, which is said in the
    variable's ``comment``), each noted in the attribute ``oceandata_dap_cast``.
    """
    casts = {np.dtype("int8"): np.dtype("int16"), np.dtype("bool"): np.dtype("uint8"),
             np.dtype("int64"): np.dtype("float64"), np.dtype("uint64"): np.dtype("float64")}
    out = ds.copy()
    for name, var in ds.variables.items():
        target = casts.get(var.dtype)
        if target is None:
            continue
        new = var.astype(target)
        new.attrs = {**var.attrs, "oceandata_dap_cast": f"{var.dtype} -> {target}"}
        new.encoding = {k: v for k, v in var.encoding.items() if k not in ("dtype",)}
        out[name] = new
    return out


def _dap_dataset(get: Callable[..., xr.Dataset]) -> Callable[..., xr.Dataset]:
    def dataset(ds: xr.Dataset = Depends(get)) -> xr.Dataset:
        return dap_compatible(ds)

    return dataset


class DapPlugin(OpenDapPlugin):
    """``xpublish-opendap`` serving :func:`dap_compatible` datasets."""

    @hookimpl
    def dataset_router(self, deps: Dependencies) -> APIRouter:
        """The OpenDAP router over DAP2-safe datasets."""
        return super().dataset_router(
            deps.model_copy(update={"dataset": _dap_dataset(deps.dataset)}))


class PublicErddapPlugin(ErddapPlugin):
    """``xpublish-erddap`` whose server-wide catalogue holds open datasets only."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    catalog: Any = Field(default=None, exclude=True)

    def __hash__(self) -> int:
        return id(self)

    @hookimpl
    def app_router(self, deps: Dependencies) -> APIRouter:
        """The server-wide ERDDAP router over the open datasets."""
        catalog = self.catalog

        def public_ids() -> list[str]:
            return list(visible_entries(catalog, ANONYMOUS))

        return super().app_router(deps.model_copy(update={"dataset_ids": public_ids}))


def plugins(catalog: Catalog, cache: DatasetCache) -> dict[str, Plugin]:
    """The xpublish plugins of the service, by name."""
    return {
        "oceandata-catalog": CatalogProvider(catalog=catalog, cache=cache),
        "opendap": DapPlugin(),
        "zarr": ZarrPlugin(),
        "cf_edr": CfEdrPlugin(),
        "erddap": PublicErddapPlugin(catalog=catalog),
    }
