"""Checksums of source files and of the arrays written to a store.

Source files get a streaming sha256. Arrays get a digest that does not depend on how
they are chunked, so a store, its rechunked copy and a re-ingest of the same files all
carry the same digest: each element's raw stored bits (no CF decoding) are mixed with
its flat C-order position by the splitmix64 finaliser and the 64-bit hashes are summed
modulo 2**64. Any changed, lost or moved element changes the sum (with probability
1 - 2**-64 for one change); dtype and shape are part of the digest. Blocks are hashed in
parallel by dask, each in memory bounded by its chunk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import dask
import numpy as np
import xarray as xr

__all__ = ["array_digest", "dataset_digests", "file_sha256"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def file_sha256(path: str | os.PathLike[str], *,
                on_bytes: Callable[[int], None] | None = None) -> str:
    """sha256 of a file, read in 4 MiB blocks; *on_bytes* is called with each block size."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(4 * 2**20):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return digest.hexdigest()


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def _bits(values: np.ndarray) -> np.ndarray:
    """The raw bits of each element as uint64 (strings and objects via their UTF-8 hash)."""
    values = np.ascontiguousarray(values)
    if values.dtype.kind in "biufcmM" and values.dtype.itemsize <= 8:
        unsigned = values.view(f"u{values.dtype.itemsize}") if values.dtype.itemsize > 1 \
            else values.view("u1")
        return unsigned.astype(np.uint64)
    flat = [int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "little")
            for v in values.ravel()]
    return np.asarray(flat, dtype=np.uint64).reshape(values.shape)


#: Elements hashed at a time: the temporaries (five uint64 arrays) stay near 40 MiB.
_SLAB = 2**20


def _block_sum(block: np.ndarray, offset: tuple[int, ...], shape: tuple[int, ...]) -> int:
    if block.size == 0:
        return 0
    if block.size > _SLAB and block.ndim > 0 and block.shape[0] > 1:
        step = max(1, _SLAB // max(1, block[0].size))
        return sum(_block_sum(block[i:i + step], (offset[0] + i, *offset[1:]), shape)
                   for i in range(0, block.shape[0], step)) % 2**64
    # flat C-order positions, built by broadcasting one small range per axis
    strides = np.cumprod((*shape[1:], 1)[::-1])[::-1]
    flat = np.zeros((1,) * block.ndim, dtype=np.uint64)
    for axis, (start, n) in enumerate(zip(offset, block.shape, strict=True)):
        along = np.arange(start, start + n, dtype=np.uint64) * np.uint64(strides[axis])
        flat = flat + along.reshape([n if a == axis else 1 for a in range(block.ndim)])
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.broadcast_to(flat, block.shape) * _GOLDEN ^ _bits(block))
    return int(mixed.sum(dtype=np.uint64))


def array_digest(var: xr.Variable | xr.DataArray) -> dask.delayed:
    """A delayed digest string ``dtype:shape:hex`` of one array, chunk-independent."""
    data = var.data
    shape = tuple(int(n) for n in var.shape)
    label = f"{var.dtype.str}:{'x'.join(map(str, shape)) or 'scalar'}"
    if not hasattr(data, "blocks"):  # numpy
        part = dask.delayed(_block_sum)(np.asarray(data), (0,) * len(shape), shape)
        return dask.delayed(lambda s: f"{label}:{s:016x}")(part)
    starts = [np.cumsum((0, *c[:-1])) for c in data.chunks]
    parts = [dask.delayed(_block_sum)(data.blocks[idx],
                                      tuple(int(starts[a][i]) for a, i in enumerate(idx)),
                                      shape)
             for idx in np.ndindex(*data.numblocks)]

    def combine(*sums: int) -> str:
        return f"{label}:{sum(sums) % 2**64:016x}"

    return dask.delayed(combine)(*parts)


def dataset_digests(ds: xr.Dataset) -> dict[str, str]:
    """Digest of every variable (data and coordinates) of a dataset opened without decoding.

    Open the store with ``decode_cf=False`` (or :func:`open_raw`) so the digest covers
    the stored values, not a decoded view of them.
    """
    names = sorted(map(str, ds.variables))
    values = dask.compute(*[array_digest(ds[name].variable) for name in names])
    return dict(zip(names, values, strict=True))


def open_raw(store: object) -> xr.Dataset:
    """Open a Zarr store (path or Icechunk store) as stored: no CF decoding, its chunks."""
    return xr.open_zarr(store, consolidated=False, decode_cf=False, chunks={},
                        mask_and_scale=False)


def path_size(path: str | os.PathLike[str]) -> int:
    """Size in bytes of a file or of every file below a folder (links followed)."""
    p = Path(path)
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size
