"""Compiled (numba) kernels of the grouped time reductions: climatologies and anomalies.

Every kernel works on a 2-D ``(time, point)`` block, C-contiguous, float32 or float64;
callers move the time axis first and flatten the other axes. The kernels release the
GIL (``nogil=True``), so dask's threaded scheduler runs them in parallel.

- :func:`group_sums`: NaN-aware sums (float64) and counts (int32) per group, for the
  groups present in the block only (a 30-day chunk holds one or two months, so its
  partial result is one or two fields, not twelve);
- :func:`add_rows`: adds partial sums and counts into an accumulator, row by row, for
  the combine steps of a tree reduction;
- :func:`mean_from_sums`: the mean of each group (NaN where the count is 0), cast to the
  data's dtype;
- :func:`subtract_groups`: ``out[t, i] = block[t, i] - table[codes[t], i]`` in one pass,
  with no ``np.take`` temporary of the expanded table.

Accumulating float32 data in float64 keeps the means within float32 rounding of the
exact value whatever the length of the series (a float32 running sum drifts: 3.8e-5 degC
after 12 years of daily values); CDO's ``ymonmean`` accumulates in double too.

``cache=True`` keeps the compiled code next to this file when the package folder is
writable; otherwise numba compiles on first use (about a second per kernel and dtype).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def present_groups(codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Sorted group ids (``0 <= code < ngroups``) that occur in *codes*."""
    seen = np.zeros(ngroups, np.bool_)
    for t in range(codes.size):
        if 0 <= codes[t] < ngroups:  # a step of no group (a missing time) is left out
            seen[codes[t]] = True
    return np.flatnonzero(seen)


@numba.njit(nogil=True, cache=True)
def group_sums(block: np.ndarray, codes: np.ndarray, ngroups: int):
    """NaN-aware sums and counts of each group present in a ``(time, point)`` block.

    Parameters
    ----------
    block
        ``(nt, n)`` float32 or float64 values, C-contiguous.
    codes
        ``(nt,)`` integer group of each time step, ``0 <= code < ngroups``; a step
        with any other code (-1: a missing time) belongs to no group and is skipped.
    ngroups
        Number of groups in all.

    Returns
    -------
    ids, sums, counts
        The sorted ids of the groups present (``(k,)`` int64), their float64 sums
        ``(k, n)`` and int32 counts ``(k, n)`` of the non-NaN values.
    """
    nt, n = block.shape
    ids = present_groups(codes, ngroups)
    slot = np.full(ngroups, -1, np.int64)
    for k in range(ids.size):
        slot[ids[k]] = k
    sums = np.zeros((ids.size, n), np.float64)
    counts = np.zeros((ids.size, n), np.int32)
    for t in range(nt):
        if not 0 <= codes[t] < ngroups:
            continue
        k = slot[codes[t]]
        s = sums[k]
        c = counts[k]
        row = block[t]
        for i in range(n):
            v = row[i]
            if v == v:  # not NaN
                s[i] += v
                c[i] += 1
    return ids, sums, counts


@numba.njit(nogil=True, cache=True)
def add_rows(sums: np.ndarray, counts: np.ndarray, rows: np.ndarray,
             part_sums: np.ndarray, part_counts: np.ndarray) -> None:
    """``sums[rows[k]] += part_sums[k]`` and the same for counts, in place."""
    n = sums.shape[1]
    for k in range(rows.size):
        s = sums[rows[k]]
        c = counts[rows[k]]
        ps = part_sums[k]
        pc = part_counts[k]
        for i in range(n):
            s[i] += ps[i]
            c[i] += pc[i]


@numba.njit(nogil=True, cache=True)
def mean_from_sums(sums: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """``out = sums / counts`` (NaN where the count is 0), computed in float64."""
    g, n = sums.shape
    for k in range(g):
        for i in range(n):
            c = counts[k, i]
            out[k, i] = sums[k, i] / c if c > 0 else np.nan


@numba.njit(nogil=True, cache=True)
def subtract_groups(block: np.ndarray, codes: np.ndarray, table: np.ndarray,
                    out: np.ndarray) -> None:
    """``out[t, i] = block[t, i] - table[codes[t], i]`` for a ``(time, point)`` block."""
    nt, n = block.shape
    for t in range(nt):
        row = block[t]
        dst = out[t]
        if not 0 <= codes[t] < table.shape[0]:  # a step of no group: no anomaly
            for i in range(n):
                dst[i] = np.nan
            continue
        ref = table[codes[t]]
        for i in range(n):
            dst[i] = row[i] - ref[i]
