"""holoviews with its bokeh plotting registered (imported once, on first use of viz)."""

from __future__ import annotations

try:
    import holoviews as hv
    import holoviews.plotting.bokeh  # noqa: F401  (registers the bokeh backend and its options)
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "oceandata.viz needs holoviews, bokeh, datashader and cmocean: "
        "pip install 'oceandata[viz]'"
    ) from exc

from ..errors import UsageError

BACKEND = "bokeh"

#: Default plot size in screen pixels (frame, not counting axes and colour bar).
FRAME_WIDTH = 640
FRAME_HEIGHT = 360


def dims_or_fail(da, wanted: int, function: str, hint: str) -> None:
    """Raise a one-line :class:`UsageError` unless *da* has *wanted* dimensions."""
    if da.ndim != wanted:
        raise UsageError(f"{function} needs a {wanted}-D array, got {da.ndim}-D "
                         f"{tuple(map(str, da.dims))} for {da.name!r}; {hint}")


__all__ = ["BACKEND", "FRAME_HEIGHT", "FRAME_WIDTH", "dims_or_fail", "hv"]
