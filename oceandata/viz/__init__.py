"""Figures of ocean data: holoviews objects drawn with bokeh (the ``viz`` extra).

Every function returns a holoviews object that shows itself in a notebook and can be
combined (``*`` overlays, ``+`` layouts); :func:`save` writes it as standalone HTML or PNG.

- :mod:`.maps`: ``field_map`` (regular and curvilinear grids, datashader for large grids)
- :mod:`.coastlines`: coastlines traced offline from the ETOPO sample
- :mod:`.series`: ``time_series``, ``hovmoller``, ``mhw_plot``
- :mod:`.vertical`: ``section``, ``profile``, ``ts_diagram``
- :mod:`.floats`: ``float_tracks``
- :mod:`.usage`: ``usage_chart``
- :mod:`.styles`: cmocean colormap chosen from CF metadata
- :mod:`.export`: ``save``
"""

from .export import save
from .floats import float_tracks
from .maps import field_map
from .series import hovmoller, mhw_plot, time_series
from .styles import colormap_for
from .usage import usage_chart
from .vertical import profile, section, ts_diagram

__all__ = ["colormap_for", "field_map", "float_tracks", "hovmoller", "mhw_plot", "profile",
           "save", "section", "time_series", "ts_diagram", "usage_chart"]
