"""oceandata: open ocean big-data analysis and compute platform.

>>> import oceandata
>>> cat = oceandata.open_catalog()                                     # doctest: +SKIP
>>> ds = oceandata.open_dataset("cobe_sst2", bbox=(120, -10, -80, 10))  # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from .analysis import accessor as _accessor  # noqa: F401  (registers da.ocean / ds.ocean)
from .catalog import open_catalog
from .errors import OceandataError
from .io import export, open_dataset, subset

try:
    __version__ = version("oceandata")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0+unknown"

__all__ = ["OceandataError", "__version__", "export", "open_catalog", "open_dataset", "subset"]
