"""Compiled (numba) kernels of the gridded marine-heatwave detection.

Used by :func:`oceandata.analysis.mhw._block_events` on blocks of whole series; each
kernel gives the same floating-point results as the numpy code of :mod:`.mhw` bit for
bit (checked by ``tests/test_mhw.py``), and releases the GIL so that dask's threaded
scheduler runs two blocks at once.

- :func:`pool_plan`: per day of year, each climatology year's clipped pooling window,
  the pool size and numpy's ``linear`` percentile index and fraction for that size;
- :func:`exact_rows`: which rows of a gap-filled block hold float32 values for which a
  float64 sum is exact in any order (so a running sum equals numpy's mean bit for bit);
- :func:`clim_doy_sliding`: ``seas`` (mean) and ``thresh`` (percentile) per day of year
  with a sliding pool: from one day of year to the next only the values entering and
  leaving each year's window are visited;
- :func:`event_metrics`: exceedance runs, joined gaps and every event metric, reading
  ``seas``/``thresh`` through the day of year (no ``(point, time)`` temporaries); sums
  use numpy's pairwise summation so that they equal ``np.add.reduceat``.

Why the running sum is exact: float32 values of magnitude >= 2**-16 (or 0) lie on a
2**-39 grid; while every partial sum stays below 2**14 in magnitude, every partial sum
is an integer multiple of 2**-39 below 2**53 of them, exactly representable in float64,
so the float64 sum does not depend on the order of the additions.
"""

from __future__ import annotations

import numba
import numpy as np

#: Smallest nonzero magnitude and bound on any partial sum for :func:`exact_rows`.
TINY = 2.0 ** -16
SUM_BOUND = 2.0 ** 14


def pool_plan(
    doy: np.ndarray, in_clim: np.ndarray, pctile: float, window_half_width: int, nt: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pooling windows and percentile position per day of year (index 0..365).

    Returns
    -------
    a, b : numpy.ndarray
        ``(366, years)`` clipped window ``[a, b)`` of each climatology year (empty
        windows ``a == b`` for the years a day of year does not occur in).
    n : numpy.ndarray
        ``(366,)`` pool size (0 for doy 60 and days of year absent from the period).
    lo, gamma : numpy.ndarray
        ``(366,)`` numpy's ``floor((n - 1) * pctile / 100)`` and its fraction, computed
        with numpy's own expressions, as in ``mhw._percentile_linear``.
    """
    idx_clim = np.flatnonzero(in_clim)
    centre = np.arange(idx_clim[0], idx_clim[-1] + 1)
    day = np.asarray(doy)[centre] - 1
    order = np.argsort(day, kind="stable")  # each day of year's centres in time order
    day, centre = day[order], centre[order]
    counts = np.bincount(day, minlength=366)
    rank = np.arange(day.size) - (np.cumsum(counts) - counts)[day]
    a = np.zeros((366, max(int(counts.max()), 1)), np.int64)
    b = np.zeros_like(a)
    a[day, rank] = np.clip(centre - window_half_width, 0, nt)
    b[day, rank] = np.clip(centre + window_half_width + 1, 0, nt)
    a[59] = b[59] = 0  # Feb 29: the mean of its neighbours, later
    n = (b - a).sum(axis=1)
    virtual = (n - 1) * np.true_divide(pctile, 100)  # numpy's own expressions
    lo = np.where(n > 0, np.floor(virtual), 0).astype(np.int64)
    gamma = np.where(n > 0, virtual - lo, 0.0)
    return a, b, n, lo, gamma


@numba.njit(nogil=True, cache=True)
def exact_rows(temp: np.ndarray, bound: float) -> np.ndarray:
    """Rows of a gap-filled ``(point, time)`` float64 block whose running sum is exact.

    A row qualifies when every value is a float32 of magnitude 0 or >= 2**-16 and
    ``bound * max|v| < 2**14`` (``bound``: the most values a running sum holds), or when
    it is all NaN (both paths give NaN for it).
    """
    npt, nt = temp.shape
    ok = np.zeros(npt, np.bool_)
    for p in range(npt):
        good = True
        nans = 0
        big = 0.0
        for t in range(nt):
            v = temp[p, t]
            if np.isnan(v):
                nans += 1
                continue
            if np.float64(np.float32(v)) != v:
                good = False
            av = abs(v)
            if av != 0.0 and av < TINY:
                good = False
            if av > big:
                big = av
        if nans == nt:
            ok[p] = True
        elif nans == 0 and good and big * bound < SUM_BOUND:
            ok[p] = True
    return ok


@numba.njit(nogil=True, cache=True)
def _select2(buf, n, k):
    """(k-th, (k+1)-th) smallest of ``buf[:n]`` (0-based, no NaN); ``buf`` is reordered."""
    left = 0
    right = n - 1
    while right > left:
        mid = (left + right) >> 1
        x0 = buf[left]
        x1 = buf[mid]
        x2 = buf[right]
        if x1 < x0:
            x0, x1 = x1, x0
        if x2 < x1:
            x1 = x2
            if x1 < x0:
                x1 = x0
        pivot = x1
        i = left
        j = right
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while pivot < buf[j]:
                j -= 1
            if i <= j:
                tmp = buf[i]
                buf[i] = buf[j]
                buf[j] = tmp
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            break
    a = buf[k]
    if k + 1 >= n:
        return a, a
    b = buf[k + 1]
    for m in range(k + 2, n):
        if buf[m] < b:
            b = buf[m]
    return a, b


@numba.njit(nogil=True, cache=True)
def transitions(a, b, n):
    """The days of year with a pool, in order, and what changes from one to the next.

    Returns ``days`` and two CSR lists over them: ``enter_ptr``/``enter_idx`` the time
    indices that enter the pool of ``days[j]`` coming from ``days[j - 1]`` and
    ``leave_ptr``/``leave_idx`` those that leave it (per year column, the set
    differences of two windows; nothing for ``j = 0``).
    """
    nd = 0
    for d in range(366):
        if n[d] > 0:
            nd += 1
    days = np.empty(nd, np.int64)
    j = 0
    for d in range(366):
        if n[d] > 0:
            days[j] = d
            j += 1
    ny = a.shape[1]
    enter_ptr = np.zeros(nd + 1, np.int64)
    leave_ptr = np.zeros(nd + 1, np.int64)
    for rep in range(2):
        if rep == 1:
            enter_idx = np.empty(enter_ptr[nd], np.int64)
            leave_idx = np.empty(leave_ptr[nd], np.int64)
        for j in range(1, nd):
            d = days[j]
            pv = days[j - 1]
            ce = 0
            cl = 0
            for y in range(ny):
                ap = a[pv, y]
                bp = b[pv, y]
                an = a[d, y]
                bn = b[d, y]
                for seg in range(2):
                    if seg == 0:
                        i0 = an
                        i1 = min(bn, ap)
                    else:
                        i0 = max(an, bp)
                        i1 = bn
                    for i in range(i0, i1):
                        if rep == 1:
                            enter_idx[enter_ptr[j] + ce] = i
                        ce += 1
                for seg in range(2):
                    if seg == 0:
                        i0 = ap
                        i1 = min(bp, an)
                    else:
                        i0 = max(ap, bn)
                        i1 = bp
                    for i in range(i0, i1):
                        if rep == 1:
                            leave_idx[leave_ptr[j] + cl] = i
                        cl += 1
            if rep == 0:
                enter_ptr[j + 1] = ce
                leave_ptr[j + 1] = cl
        if rep == 0:
            for j in range(nd):
                enter_ptr[j + 1] += enter_ptr[j]
                leave_ptr[j + 1] += leave_ptr[j]
    return days, enter_ptr, enter_idx, leave_ptr, leave_idx


@numba.njit(nogil=True, cache=True)
def _collect(x, a, b, d, ny, lo_v, hi_v, small):
    """One pass over the pool of day *d*: ``(below, m, s)``, the count of values below
    ``lo_v``, ``small[:m]`` the values in ``[lo_v, hi_v]`` sorted and the pool's sum."""
    below = 0
    m = 0
    s = 0.0
    for y in range(ny):
        for i in range(a[d, y], b[d, y]):  # branch-free: the bracket is a small share
            v = x[i]
            s += v
            below += v < lo_v
            small[m] = v
            m += (v >= lo_v) & (v <= hi_v)
    for i in range(1, m):  # insertion sort of the bracket
        v = small[i]
        j = i - 1
        while j >= 0 and small[j] > v:
            small[j + 1] = small[j]
            j -= 1
        small[j + 1] = v
    return below, m, s


@numba.njit(nogil=True, cache=True)
def _bracket(x, a, b, d, ny, k, k1, margin, buf):
    """The values of ranks ``k - margin`` and ``k1 + margin`` of the pool of day *d*."""
    m = 0
    for y in range(ny):
        for i in range(a[d, y], b[d, y]):
            buf[m] = x[i]
            m += 1
    r0 = max(k - margin, 0)
    r1 = min(k1 + margin, m - 1)
    lo_v, _ = _select2(buf, m, r0)
    hi_v, _ = _select2(buf, m, r1)
    return lo_v, hi_v


@numba.njit(nogil=True, cache=True)
def clim_doy_sliding(values, exact, a, b, n, lo, gamma, seas_y, thresh_y, margin, max_small):
    """``seas_y``/``thresh_y[p, d]`` (unsmoothed) of a gap-filled ``(point, time)`` block.

    The same results as ``mhw._climatology_filled`` on one row (the 1-D path) bit for
    bit. The pool of each day of year is tracked by a value bracket ``[lo_v, hi_v]``: the
    count of pool values below it and the sorted values inside it; from one day of
    year to the next only the values entering and leaving the windows are visited
    (:func:`transitions`). Ranks ``lo``, ``lo + 1`` are read in the sorted bracket (exact
    order statistics) and interpolated with numpy's ``_lerp`` in float64. When the
    bracket no longer holds both ranks (the seasonal cycle moves them) it is re-centred
    on the previous day's value with its last width (one pass over the pool), or, if
    that misses, rebuilt from the ranks ``lo - margin`` and ``lo + 1 + margin``
    (quickselect); past ``max_small`` values it is trimmed to those ranks. ``seas`` is
    the running float64 sum for the rows flagged in *exact* (see :func:`exact_rows`),
    else numpy's pairwise sum of the pool gathered in time order (windows must not
    overlap: ``2 * window_half_width + 1 <= 365``). Doy 60 (index 59) and days of year
    with an empty pool are NaN. Returns the number of passes over a whole pool.
    """
    ny = a.shape[1]
    nmax = max(n.max(), 1)
    buf = np.empty(nmax, values.dtype)
    pool = np.empty(nmax, np.float64)
    # all entering values are inserted before the leaving ones are removed: room for two
    # pools (a whole pool changes column where a mid-year period's years begin)
    small = np.empty(2 * nmax + 1, values.dtype)
    days, enter_ptr, enter_idx, leave_ptr, leave_idx = transitions(a, b, n)
    passes = 0
    for p in range(values.shape[0]):
        x = values[p]
        seas_y[p, :] = np.nan
        thresh_y[p, :] = np.nan
        if np.isnan(x[0]):
            continue
        valid = False
        lo_v = x[0]
        hi_v = x[0]
        width = 0.0
        centre = x[0]
        below = 0
        m = 0
        s = 0.0
        for jd in range(days.size):
            d = days[jd]
            nn = n[d]
            k = lo[d]
            k1 = k + 1 if k + 1 < nn else k
            if valid:
                for q in range(enter_ptr[jd], enter_ptr[jd + 1]):
                    v = x[enter_idx[q]]
                    s += v
                    if v < lo_v:
                        below += 1
                    elif v <= hi_v:
                        j = m - 1
                        while j >= 0 and small[j] > v:
                            small[j + 1] = small[j]
                            j -= 1
                        small[j + 1] = v
                        m += 1
                for q in range(leave_ptr[jd], leave_ptr[jd + 1]):
                    v = x[leave_idx[q]]
                    s -= v
                    if v < lo_v:
                        below -= 1
                    elif v <= hi_v:
                        j = 0
                        while j < m and small[j] != v:
                            j += 1
                        if j < m:  # always, by construction; never a write out of bounds
                            m -= 1
                            for i in range(j, m):
                                small[i] = small[i + 1]
                valid = below <= k and k1 < below + m
                if not valid and width > 0.0:  # re-centre on yesterday's value, ahead
                    ahead = 0.9 * width if below > k else -0.9 * width  # of the drift
                    lo_v = centre - width - ahead
                    hi_v = centre + width - ahead
                    below, m, s = _collect(x, a, b, d, ny, lo_v, hi_v, small)
                    passes += 1
                    valid = below <= k and k1 < below + m and m <= nmax
            if not valid:
                lo_v, hi_v = _bracket(x, a, b, d, ny, k, k1, margin, buf)
                width = hi_v - lo_v
                below, m, s = _collect(x, a, b, d, ny, lo_v, hi_v, small)
                passes += 2
                valid = True
            if m > max_small:  # trim to ranks k - margin .. k1 + margin (whole ties)
                i0 = max(k - margin - below, 0)
                while i0 > 0 and small[i0 - 1] == small[i0]:
                    i0 -= 1
                i1 = min(k1 + margin - below, m - 1)
                while i1 < m - 1 and small[i1 + 1] == small[i1]:
                    i1 += 1
                lo_v = small[i0]
                hi_v = small[i1]
                for i in range(i0, i1 + 1):
                    small[i - i0] = small[i]
                below += i0
                m = i1 + 1 - i0
            va = small[k - below]
            vb = small[k1 - below]
            centre = va
            fa = np.float64(va)
            fb = np.float64(vb)
            if exact[p]:
                seas_y[p, d] = s / nn
            else:
                m2 = 0
                for y in range(ny):
                    for i in range(a[d, y], b[d, y]):
                        pool[m2] = x[i]
                        m2 += 1
                seas_y[p, d] = _pairwise(pool, 0, m2) / nn
            diff = fb - fa
            g = gamma[d]
            if g >= 0.5:
                thresh_y[p, d] = fb - diff * (1 - g)
            else:
                thresh_y[p, d] = fa + diff * g
    return passes


@numba.njit(nogil=True, cache=True)
def _pairwise_leaf(a, i0, n):
    """numpy's ``pairwise_sum`` of ``a[i0:i0 + n]`` for ``n <= 128`` (8 accumulators)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[i0 + i]
        return res
    r0 = a[i0]
    r1 = a[i0 + 1]
    r2 = a[i0 + 2]
    r3 = a[i0 + 3]
    r4 = a[i0 + 4]
    r5 = a[i0 + 5]
    r6 = a[i0 + 6]
    r7 = a[i0 + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += a[i0 + i]
        r1 += a[i0 + i + 1]
        r2 += a[i0 + i + 2]
        r3 += a[i0 + i + 3]
        r4 += a[i0 + i + 4]
        r5 += a[i0 + i + 5]
        r6 += a[i0 + i + 6]
        r7 += a[i0 + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[i0 + i]
        i += 1
    return res


@numba.njit(nogil=True, cache=True)
def _pairwise(a, i0, n):
    """numpy's pairwise sum of ``a[i0:i0 + n]`` (the recursion unrolled on a stack)."""
    if n <= 128:
        return _pairwise_leaf(a, i0, n)
    st_i = np.empty(64, np.int64)
    st_n = np.empty(64, np.int64)
    st_state = np.empty(64, np.int64)
    vals = np.empty(64, np.float64)
    top = 0
    nv = 0
    st_i[0] = i0
    st_n[0] = n
    st_state[0] = 0
    while top >= 0:
        s = st_i[top]
        m = st_n[top]
        if m <= 128:
            vals[nv] = _pairwise_leaf(a, s, m)
            nv += 1
            top -= 1
            continue
        h = m // 2
        h -= h % 8
        if st_state[top] == 0:
            st_state[top] = 1
            top += 1
            st_i[top] = s
            st_n[top] = h
            st_state[top] = 0
        elif st_state[top] == 1:
            st_state[top] = 2
            top += 1
            st_i[top] = s + h
            st_n[top] = m - h
            st_state[top] = 0
        else:
            right = vals[nv - 1]
            left = vals[nv - 2]
            nv -= 2
            vals[nv] = left + right
            nv += 1
            top -= 1
    return vals[0]


@numba.njit(nogil=True, cache=True)
def reduceat_sum(a, i0, n):
    """``np.add.reduceat`` of one segment ``a[i0:i0 + n]``: first value + pairwise rest."""
    if n == 1:
        return a[i0]
    return a[i0] + _pairwise(a, i0 + 1, n - 1)


@numba.njit(nogil=True, cache=True)
def _runs(temp, thresh_y, doy0, p, min_duration, join_gaps, max_gap, first, last):
    """Events of point *p* into ``first``/``last``; returns their number."""
    nt = temp.shape[1]
    ne = 0
    t = 0
    while t < nt:
        if not temp[p, t] > thresh_y[p, doy0[t]]:
            t += 1
            continue
        f = t
        while t < nt and temp[p, t] > thresh_y[p, doy0[t]]:
            t += 1
        lst = t - 1
        if lst - f + 1 < min_duration:
            continue
        if join_gaps and ne > 0 and f - last[ne - 1] - 1 <= max_gap:
            last[ne - 1] = lst
        else:
            first[ne] = f
            last[ne] = lst
            ne += 1
    return ne


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _category(temp, seas, thresh):
    """``mhw._daily_category`` of one day."""
    norm = (temp - thresh) / (thresh - seas)
    c = np.floor(1.0 + norm)
    if np.isnan(c):
        return 0
    if c < 0.0:
        return 0
    if c > 4.0:
        return 4
    return int(c)


@numba.njit(nogil=True, cache=True, error_model="numpy")
def event_metrics(temp, seas_y, thresh_y, doy0, min_duration, join_gaps, max_gap):
    """Events and metrics of a gap-filled ``(point, time)`` float64 block.

    ``seas_y``/``thresh_y`` are the smoothed ``(point, 366)`` fields, ``doy0`` the day of
    year minus one of each time step. Same results as ``mhw._event_metrics`` on the
    fields gathered onto the time axis, bit for bit (same float expressions, sums in
    numpy's pairwise order). Returns the arrays of its output dict, in order: row,
    first, last, duration, peak, intensity_max, intensity_mean, intensity_var,
    intensity_cumulative, rate_onset, rate_decline, category, share.
    """
    npt, nt = temp.shape
    cap = nt // 2 + 2
    first = np.empty(cap, np.int64)
    last = np.empty(cap, np.int64)
    counts = np.zeros(npt, np.int64)
    for p in range(npt):
        counts[p] = _runs(temp, thresh_y, doy0, p, min_duration, join_gaps, max_gap,
                          first, last)
    total = counts.sum()
    row = np.empty(total, np.int64)
    ofirst = np.empty(total, np.int64)
    olast = np.empty(total, np.int64)
    dur = np.empty(total, np.int64)
    peak = np.empty(total, np.int64)
    imax = np.empty(total)
    imean = np.empty(total)
    ivar = np.empty(total)
    isum = np.empty(total)
    onset = np.empty(total)
    decline = np.empty(total)
    category = np.empty(total, np.int64)
    share = np.zeros((total, 4))
    vals = np.empty(nt)
    sq = np.empty(nt)
    e = 0
    for p in range(npt):
        if counts[p] == 0:
            continue
        ne = _runs(temp, thresh_y, doy0, p, min_duration, join_gaps, max_gap, first, last)
        for q in range(ne):
            f = first[q]
            lst = last[q]
            nd = lst - f + 1
            vmax = -np.inf
            pk = 0
            top = 0
            for i in range(nd):
                t = f + i
                dd = doy0[t]
                v = temp[p, t] - seas_y[p, dd]
                vals[i] = v
                if v > vmax:
                    vmax = v
                    pk = i
                c = _category(temp[p, t], seas_y[p, dd], thresh_y[p, dd])
                if c > 0:
                    share[e, c - 1] += 1.0
                if c > top:
                    top = c
            s = reduceat_sum(vals, 0, nd)
            mean = s / nd
            for i in range(nd):
                dv = vals[i] - mean
                sq[i] = dv * dv
            row[e] = p
            ofirst[e] = f
            olast[e] = lst
            dur[e] = nd
            peak[e] = pk
            imax[e] = vmax
            isum[e] = s
            imean[e] = mean
            ivar[e] = np.sqrt(reduceat_sum(sq, 0, nd) / nd)
            rel0 = vals[0]
            rel1 = vals[nd - 1]
            if f > 0:
                dp = doy0[f - 1]
                onset[e] = (vmax - 0.5 * (rel0 + temp[p, f - 1] - seas_y[p, dp])) / (pk + 0.5)
            else:
                onset[e] = (vmax - rel0) / (1.0 if pk == 0 else np.float64(pk))
            if lst < nt - 1:
                dn = doy0[lst + 1]
                decline[e] = ((vmax - 0.5 * (rel1 + temp[p, lst + 1] - seas_y[p, dn]))
                              / (lst - f - pk + 0.5))
            else:
                decline[e] = (vmax - rel1) / (1.0 if pk == nt - 1
                                              else np.float64(lst - f - pk))
            category[e] = max(top, 1)
            for k in range(4):
                share[e, k] = share[e, k] / nd
            e += 1
    return (row, ofirst, olast, dur, peak, imax, imean, ivar, isum, onset, decline,
            category, share)
