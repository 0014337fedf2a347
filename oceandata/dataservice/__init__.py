"""The public open-data service: portal, STAC, OPeNDAP, Zarr, subsets, ERDDAP and EDR.

Anyone finds, previews and downloads open data over HTTP; restricted entries exist only
for those granted them (:mod:`.access`). It reads the same catalog and stores as
:func:`oceandata.open_dataset` and cuts with the same :func:`oceandata.subset`. Started by
``oceandata hub up`` as the hub service ``data`` (``/services/data/``) and standalone by
``oceandata serve``; see docs/dataservice.md.
"""

from .app import create_app
from .sizing import estimate

__all__ = ["create_app", "estimate"]
