"""Argo floats from a local GDAC mirror: the index, the data-mode and QC rules, CF profiles.

See :mod:`oceandata.argo.reader` for the rules each user mode applies and
:mod:`oceandata.argo.index` for searching the profile index.
"""

from .index import read_index, search
from .reader import MODES, STANDARD_LEVELS, load, to_standard_levels

__all__ = ["MODES", "STANDARD_LEVELS", "load", "read_index", "search", "to_standard_levels"]
