"""Checksums of source files and of the arrays written to a store.

Source files get a streaming sha256. Arrays get a digest that does not depend on how
they are chunked, so a store, its rechunked copy and a re-ingest of the same files all
carry the same digest: each element's raw stored bits (no CF decoding) are mixed with
its flat C-order position by the splitmix64 finaliser and the 64-bit hashes are summed
modulo 2**64. Any changed, lost or moved element changes the sum (with probability
1 - 2**-64 for one change); dtype and shape are part of the digest. Blocks are hashed in
parallel by dask, each in memory bounded by its chunk.

Because the digest is a sum over elements, it can be built while the data are written
(:class:`WriteTally`: each chunk is hashed as it goes to the store, after the same CF
encoding the store applies, so nothing is read back) and extended when time steps are
appended along the first axis (:func:`extend_digest`: the stored elements keep their flat
positions, so the new digest is the old sum plus the sum over the new elements).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

__all__ = ["WriteTally", "array_digest", "dataset_digests", "extend_digest", "file_sha256",
           "parse_digest"]

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
    """The raw bits of each element as uint64 (strings and objects via their UTF-8 hash).

    Every NaN counts as the one NaN of its dtype: zarr does not store a chunk that is all
    fill value (NaN-equal), which then reads back as the standard NaN, so a source's other
    NaN bit patterns (sign bit set, payloads) would otherwise change the digest between the
    write and the store.
    """
    values = np.ascontiguousarray(values)
    if values.dtype.kind in "fc":
        nan = np.isnan(values)
        if nan.any():
            values = np.where(nan, np.array(np.nan, dtype=values.dtype), values)
    if values.dtype.kind in "biufcmM" and values.dtype.itemsize <= 8:
        unsigned = values.view(f"u{values.dtype.itemsize}") if values.dtype.itemsize > 1 \
            else values.view("u1")
        return unsigned.astype(np.uint64)
    flat = [int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "little")
            for v in values.ravel()]
    return np.asarray(flat, dtype=np.uint64).reshape(values.shape)


#: Elements hashed at a time: the temporaries (five uint64 arrays) stay near 10 MiB per
#: thread (the sum does not depend on it).
_SLAB = 2**18


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
    label = _label(var.dtype, shape)
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


def _label(dtype: np.dtype, shape: tuple[int, ...]) -> str:
    return f"{np.dtype(dtype).str}:{'x'.join(map(str, shape)) or 'scalar'}"


def parse_digest(digest: str) -> tuple[str, tuple[int, ...], int]:
    """``dtype:shape:hex`` to (dtype string, shape, sum).

    Raises
    ------
    ValueError
        Not a digest of this module.
    """
    dtype, shape, value = digest.rsplit(":", 2)
    dims = () if shape == "scalar" else tuple(int(n) for n in shape.split("x"))
    return dtype, dims, int(value, 16)


def extend_digest(previous: str, added: int, shape: tuple[int, ...]) -> str:
    """The digest of an array grown along its first axis to *shape*.

    Parameters
    ----------
    previous
        The digest before the append.
    added
        The sum over the appended elements, hashed at their positions in the grown array
        (:meth:`WriteTally.sum`).
    shape
        The grown array's shape (only the first axis may differ).

    Raises
    ------
    ValueError
        *shape* differs from the previous shape other than along the first axis.
    """
    dtype, old_shape, total = parse_digest(previous)
    if len(old_shape) != len(shape) or not old_shape or old_shape[1:] != shape[1:]:
        raise ValueError(f"cannot extend a digest of shape {old_shape} to {shape}")
    return f"{dtype}:{'x'.join(map(str, shape))}:{(total + added) % 2**64:016x}"


class WriteTally:
    """Digests and value ranges gathered from the chunks of a write as they are written.

    :meth:`tap` wraps a dask array so that each chunk, when it is computed for the
    write, is also hashed (after the store's CF encoding, at its position in the stored
    array); :meth:`watch_range` so that each chunk's minimum and maximum are kept. The
    chunks themselves pass through unchanged, so the write reads its sources once.
    Thread-safe: dask's threads add to it concurrently.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sums: dict[Hashable, int] = {}
        self._ranges: dict[Hashable, tuple[float, float] | None] = {}

    def _add(self, key: Hashable, value: int) -> None:
        with self._lock:
            self._sums[key] = (self._sums.get(key, 0) + value) % 2**64

    def sum(self, key: Hashable) -> int:
        """The sum over every chunk of *key* hashed so far (0 if none)."""
        return self._sums.get(key, 0)

    def ranges(self) -> dict[Hashable, tuple[float, float] | None]:
        """Key -> minimum and maximum of the non-NaN values seen (None: all NaN), for
        every key :meth:`watch_range` saw at least one chunk of."""
        with self._lock:
            return dict(self._ranges)

    def tap(self, key: Hashable, var: xr.Variable, encoding: Mapping[str, Any], *,
            shape: tuple[int, ...], offset: tuple[int, ...] | None = None) -> Any:
        """A dask array with *var*'s chunks that hashes each one as it is computed.

        Parameters
        ----------
        key
            Under which name the sums are added.
        var
            The decoded variable to be written (dask-backed).
        encoding
            The encoding the store applies (as given to ``to_zarr``, or the existing
            variable's when appending).
        shape
            The shape of the stored array the chunks are part of.
        offset
            Where *var* starts in the stored array (default its origin; an append
            starts at the old length along the first axis).
        """
        from xarray.backends.zarr import encode_zarr_variable

        origin = offset or (0,) * var.ndim
        dims, attrs = var.dims, dict(var.attrs)

        def hash_chunk(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            if block_info is None or not block.size:  # dask's meta probe
                return block
            location = block_info[0]["array-location"]
            encoded = encode_zarr_variable(
                xr.Variable(dims, block, attrs, dict(encoding)), name=str(key)).values
            start = tuple(o + lo for o, (lo, _) in zip(origin, location, strict=True))
            self._add(key, _block_sum(encoded, start, shape))
            return block

        return var.data.map_blocks(hash_chunk, dtype=var.dtype, meta=var.data._meta)

    def watch_range(self, key: Hashable, data: Any) -> Any:
        """A dask array with *data*'s chunks that keeps its running minimum and maximum."""
        def see(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
            if block_info is None or not block.size:
                return block
            values = block[~np.isnan(block)] if block.dtype.kind == "f" else block
            if values.size:
                lo, hi = float(values.min()), float(values.max())
                with self._lock:
                    old = self._ranges.get(key)
                    self._ranges[key] = (lo, hi) if old is None else \
                        (min(old[0], lo), max(old[1], hi))
            else:
                with self._lock:
                    self._ranges.setdefault(key, None)
            return block

        return data.map_blocks(see, dtype=data.dtype, meta=data._meta)


def encoded_digest(var: xr.Variable, encoding: Mapping[str, Any], name: str, *,
                   shape: tuple[int, ...] | None = None,
                   offset: tuple[int, ...] | None = None) -> tuple[str, int]:
    """Label and sum of an in-memory variable as the store encodes it (no read-back).

    Returns
    -------
    (str, int)
        The ``dtype:shape`` label of the stored array and the sum of *var*'s elements at
        *offset* in an array of *shape* (defaults: *var*'s own shape, origin).
    """
    from xarray.backends.zarr import encode_zarr_variable

    encoded = encode_zarr_variable(xr.Variable(var.dims, np.asarray(var.values),
                                               dict(var.attrs), dict(encoding)),
                                   name=name).values
    full = shape or tuple(int(n) for n in encoded.shape)
    total = _block_sum(encoded, offset or (0,) * encoded.ndim, full)
    return _label(encoded.dtype, full), total


def encoded_dtype(var: xr.Variable, encoding: Mapping[str, Any], name: str) -> np.dtype:
    """The dtype the store gives *var* under *encoding* (from an empty slice, no data read)."""
    from xarray.backends.zarr import encode_zarr_variable

    empty = np.empty((0,) * var.ndim, dtype=var.dtype)
    return encode_zarr_variable(xr.Variable(var.dims, empty, dict(var.attrs),
                                            dict(encoding)), name=name).dtype


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
