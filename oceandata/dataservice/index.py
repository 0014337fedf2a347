"""The catalog, indexed once for search: text, standard name, bounding box and time.

The portal, STAC search and ``datasets.json`` all search through :class:`SearchIndex`, so
a search at 10,000 entries is a scan of precomputed lower-case text and numbers, never a
re-read of the catalog. The matching rules are the catalog's own
(:meth:`oceandata.catalog.Catalog.search`): every word of the text in the name, title,
description, provider, tags or variables; ``*`` wildcards in standard names; bounding
boxes in any longitude convention, across the antimeridian; periods in any form of
:func:`oceandata.times.period`, partial dates covering their whole period.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..catalog.core import Catalog, Entry
from ..catalog.schema import BBox
from ..governance.rules import NegativeLists
from ..times import Period, period
from .access import Caller


@dataclass(frozen=True)
class _Row:
    entry: Entry
    text: str
    standard_names: tuple[str, ...]
    period: Period | None  # the time range, parsed once (None: no time range)


class SearchIndex:
    """Search over a catalog's entries, built once.

    Parameters
    ----------
    catalog
        The catalog (its entries, flattened across sub-catalogs).
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._source = catalog.entries
        self._rows = [self._row(entry) for entry in catalog.entries.values()]

    def _current(self) -> list[_Row]:
        """The rows of the catalog's entries now: project catalogs merged for their
        members (:class:`oceandata.catalog.projects.ProjectCatalogs`) replace the
        catalog's mapping; rows of unchanged entries are kept."""
        entries = self.catalog.entries
        if entries is self._source:
            return self._rows
        known = {id(row.entry): row for row in self._rows}
        rows = []
        for entry in entries.values():
            row = known.get(id(entry))
            rows.append(row if row is not None and row.entry is entry else self._row(entry))
        self._rows, self._source = rows, entries
        return rows

    @staticmethod
    def _row(entry: Entry) -> _Row:
        md = entry.metadata
        words = [entry.name, md.title, md.description or "", entry.description or "",
                 md.provider, " ".join(md.tags)]
        words += [" ".join(filter(None, [v.name, v.standard_name, v.long_name]))
                  for v in md.variables]
        names = tuple(v.standard_name for v in md.variables if v.standard_name)
        tr = md.time_range
        span = None
        if tr is not None and (tr.start is not None or tr.end is not None):
            span = Period.checked((tr.start, tr.end), what=f"{entry.where}: time_range")
        return _Row(entry, " ".join(words).lower(), names, span)

    def __len__(self) -> int:
        return len(self._current())

    def search(self, caller: Caller, *, text: str | None = None,
               standard_name: str | None = None, bbox: Sequence[float] | str | None = None,
               time: Any = None, names: Sequence[str] | None = None) -> list[Entry]:
        """Entries visible to *caller* that match every given criterion, in catalog order.

        Parameters
        ----------
        caller
            Who asks: restricted entries not granted to them are never returned.
        text
            Words that must all appear (case-insensitive).
        standard_name
            A CF standard name, ``*`` wildcards allowed.
        bbox
            ``(west, south, east, north)`` or ``"W,S,E,N"``; west > east crosses the
            antimeridian.
        time
            A period (any form of :func:`oceandata.times.period`); either end may be open.
        names
            Only these entry names (STAC ``collections``).

        Raises
        ------
        oceandata.errors.UsageError
            For a malformed bounding box or period (one line saying what is valid).
        """
        box = None
        if bbox is not None:
            if isinstance(bbox, str):
                from ..io.subset import parse_bbox

                bbox = parse_bbox(bbox, option="bbox")
            box = BBox.parse(bbox).as_tuple()
        wanted = None if time is None else period(time, what="time")
        words = text.lower().split() if text else []
        only = set(names) if names is not None else None
        found = []
        lists = NegativeLists()  # each root's negative list read once for this search
        for row in self._current():
            entry = row.entry
            if only is not None and entry.name not in only:
                continue
            if words and not all(w in row.text for w in words):
                continue
            if standard_name and not any(fnmatch.fnmatch(n, standard_name)
                                         for n in row.standard_names):
                continue
            if box is not None and not entry.intersects_bbox(box):
                continue
            if wanted is not None and (row.period is None or not wanted.overlaps(
                    row.period.start_key, row.period.end_key)):
                continue
            # the access rule last: the cheap criteria above leave few entries to decide
            if not caller.may_see(entry, negative=lists.of(entry)):
                continue
            found.append(entry)
        return found
