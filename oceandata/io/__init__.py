"""Data access: open, subset and export with provenance."""

from .export import export
from .open import open_dataset
from .subset import subset

__all__ = ["export", "open_dataset", "subset"]
