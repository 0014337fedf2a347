"""Data access: open, subset and export with provenance."""

from .estimate import estimate
from .export import export
from .open import open_dataset
from .subset import subset

__all__ = ["estimate", "export", "open_dataset", "subset"]
