"""Gridded ocean analysis: pure functions on xarray objects (they open no file, start no
cluster, and never load a whole dataset); results keep CF attributes and record what was
computed in ``history``."""
