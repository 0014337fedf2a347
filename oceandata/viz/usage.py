"""Charts of compute usage (core-hours) from the allocations service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from ..errors import UsageError
from ._backend import BACKEND, FRAME_HEIGHT, FRAME_WIDTH, hv


def usage_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Core-hours summed per allocation and user (sources added together).

    Parameters
    ----------
    rows
        Dicts with ``allocation_id``, ``user`` and ``core_hours``, as
        :func:`oceandata.alloc.core.usage_summary` returns them; its download rows
        (``source == "data"``: bytes, no core-hours) and storage rows (``source ==
        "storage"``: GB-days of a project) are left out.

    Returns
    -------
    pandas.DataFrame
        Columns ``allocation`` (text; ``"unallocated"`` for usage charged to no
        allocation), ``user``, ``core_hours``, sorted.
    """
    rows = [r for r in rows if r.get("source") not in ("data", "storage")]
    frame = pd.DataFrame(rows)
    need = {"allocation_id", "user", "core_hours"}
    if frame.empty:
        return pd.DataFrame({"allocation": [], "user": [], "core_hours": []})
    missing = sorted(need - set(frame.columns))
    if missing:
        raise UsageError(f"usage rows need {', '.join(sorted(need))}; missing "
                         f"{', '.join(missing)} (see oceandata.alloc.core.usage_summary)")
    # from the rows themselves: pandas would turn ids mixed with None into floats
    allocation = ["unallocated" if r["allocation_id"] is None else str(r["allocation_id"])
                  for r in rows]
    frame = frame.assign(allocation=allocation,
                         user=frame["user"].astype(str),
                         core_hours=frame["core_hours"].astype(float))
    return (frame.groupby(["allocation", "user"], as_index=False)["core_hours"].sum()
            .sort_values(["allocation", "user"], ignore_index=True))


def usage_chart(rows: Iterable[Mapping[str, Any]], *, stacked: bool = True,
                title: str | None = None):
    """Bar chart of core-hours per allocation, split by user.

    Parameters
    ----------
    rows
        Dicts with ``allocation_id``, ``user`` and ``core_hours`` (other keys such as
        ``source`` and ``records`` are summed over), as
        :func:`oceandata.alloc.core.usage_summary` returns them.
    stacked
        Stack the users of an allocation (True) or put their bars side by side.
    title
        Plot title.

    Returns
    -------
    holoviews.Bars
        Key dimensions ``allocation`` and ``user``, value dimension ``core_hours``.

    Raises
    ------
    UsageError
        Rows without the needed keys.
    """
    table = usage_table(rows)
    bars = hv.Bars(table, kdims=[hv.Dimension("allocation"), hv.Dimension("user")],
                   vdims=[hv.Dimension("core_hours", label="core-hours")])
    return bars.opts(stacked=stacked, frame_width=FRAME_WIDTH, frame_height=FRAME_HEIGHT,
                     tools=["hover"], title=title or "Core-hours by allocation and user",
                     legend_position="right", backend=BACKEND)
