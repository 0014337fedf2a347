"""Catalogs of ocean datasets in the intake v1 YAML format."""

from .core import Catalog, Entry, open_catalog
from .schema import EntryMetadata

__all__ = ["Catalog", "Entry", "EntryMetadata", "open_catalog"]
