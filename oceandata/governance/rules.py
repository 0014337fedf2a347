"""The platform's one access rule: classification, grade, release, embargo, negative list.

Every catalog entry carries a :class:`~oceandata.catalog.schema.Classification` (category,
grade, rationale, owner, release, embargo). Who may open an entry follows from it and from
the site's **negative list** by :func:`decide`, the one function the notebooks'
``open_dataset`` (:meth:`oceandata.catalog.Entry.check_access`), the open-data service
(every route, through :mod:`oceandata.dataservice.access`), STAC and the portal ask.

The rule, in order:

1. The entry's own ``release``: ``open`` (everyone, anonymous included), ``registered``
   (every signed-in user) or ``restricted`` (its grantees only). ``important`` and ``core``
   entries can never be ``open`` (the schema refuses the combination).
2. The negative list may lower the release of the entries it names (``restricted`` unless
   the list says ``registered``); it never raises one.
3. While ``embargo_until`` lies ahead (UTC), the entry is ``restricted``; on that day its
   release applies by itself, with no one editing the catalog.
4. The grantees of an entry that is not open to the caller's class are the members of its
   ``access.groups`` and the users whose approved allocation in force names it; grantees
   may always open it.
5. An entry of a project's catalog (``entry.project``, :mod:`oceandata.catalog.projects`)
   exists for the members of that project (in force today) only, whatever its release,
   groups or grants say: it is ``restricted`` to them until it is published (a copy in
   the open catalog).

The negative list is a YAML file (setting ``OCEANDATA_GOVERNANCE__NEGATIVE_LIST``, default
``negative-list.yaml`` beside the root catalog)::

    entries:
      - pattern: "argo_*"          # fnmatch pattern over entry names
        release: registered        # the most open release allowed (default: restricted)
        reason: national rule on real-time profiles near the coast
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..catalog.schema import RELEASES, EntryMetadata
from ..errors import CatalogError

__all__ = ["Decision", "NegativeList", "Subject", "decide", "effective_release",
           "load_negative_list", "negative_list_path", "today"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(min_length=1, description="fnmatch pattern over entry names.")
    release: Literal["registered", "restricted"] = "restricted"
    reason: str = Field(min_length=1)


class NegativeList(BaseModel):
    """The site's negative list: entries kept from open release, whatever they say."""

    model_config = ConfigDict(extra="forbid")

    entries: list[_Rule] = Field(default_factory=list)
    path: Path | None = Field(default=None, exclude=True)

    def match(self, name: str) -> _Rule | None:
        """The most closing rule naming entry *name* (None when no pattern matches)."""
        found = [r for r in self.entries if fnmatch.fnmatchcase(name, r.pattern)]
        if not found:
            return None
        return max(found, key=lambda r: RELEASES.index(r.release))


@dataclass(frozen=True)
class Subject:
    """Who asks: a signed-in user (with their grants) or an anonymous caller.

    Attributes
    ----------
    name
        The user name; None for an anonymous caller.
    groups
        The user's hub groups.
    datasets
        Datasets named by the user's approved allocation in force today.
    projects
        Ids of the projects in force today the user leads or belongs to.
    """

    name: str | None = None
    groups: frozenset[str] = frozenset()
    datasets: frozenset[str] = frozenset()
    projects: frozenset[int] = frozenset()

    @classmethod
    def of(cls, name: str | None, groups: Iterable[str] = (),
           datasets: Iterable[str] = (), projects: Iterable[int] = ()) -> Subject:
        """Build a subject from any iterables."""
        return cls(name or None, frozenset(groups), frozenset(datasets),
                   frozenset(int(p) for p in projects))


@dataclass(frozen=True)
class Decision:
    """The rule's answer for one entry and one subject.

    Attributes
    ----------
    allowed
        Whether the subject may see and open the entry.
    release
        The entry's effective release today (after negative list and embargo).
    reason
        Why the release is what it is (one sentence; for pages, logs and errors).
    granted
        Whether the subject is a grantee (group or allocation), whatever the release.
    """

    allowed: bool
    release: str
    reason: str
    granted: bool


_CACHE: dict[Path, tuple[float, NegativeList]] = {}


def negative_list_path(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The negative list in force: the setting, else ``negative-list.yaml`` beside the root
    catalog when it exists, else None.

    Parameters
    ----------
    root
        The root catalog the entries were opened through (``oceandata serve --catalog``,
        ``open_catalog(path)``); default the ``OCEANDATA_CATALOG`` setting.
    """
    from ..config import get_settings

    settings = get_settings()
    if settings.governance.negative_list is not None:
        return Path(settings.governance.negative_list)
    catalog = Path(root) if root is not None else Path(settings.catalog)
    beside = (catalog if catalog.is_dir() else catalog.parent) / "negative-list.yaml"
    return beside if beside.is_file() else None


def load_negative_list(path: str | os.PathLike[str] | None = None, *,
                       root: str | os.PathLike[str] | None = None) -> NegativeList:
    """Read the negative list (cached until the file changes).

    Parameters
    ----------
    path
        The YAML file; default :func:`negative_list_path` of *root*.
    root
        The root catalog whose list applies (see :func:`negative_list_path`).

    Raises
    ------
    CatalogError
        The file named by the setting is missing, or is not a valid negative list.
    """
    target = Path(path) if path is not None else negative_list_path(root)
    if target is None:
        return NegativeList()
    try:
        mtime = target.stat().st_mtime
    except OSError:
        raise CatalogError(f"negative list {target} does not exist; create it or unset "
                           "OCEANDATA_GOVERNANCE__NEGATIVE_LIST") from None
    cached = _CACHE.get(target)
    if cached and cached[0] == mtime:
        return cached[1]
    try:
        raw = yaml.safe_load(target.read_text(encoding="utf-8")) or {}
        parsed = NegativeList.model_validate(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise CatalogError(f"{target}{line}: malformed YAML in the negative list") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise CatalogError(f"{target}: negative list {where}: {err['msg']}; expected "
                           "entries: [{pattern, release: registered|restricted, reason}]"
                           ) from None
    parsed.path = target
    _CACHE[target] = (mtime, parsed)
    return parsed


class NegativeLists:
    """The negative list of each root catalog, read once for one pass over many entries.

    :func:`load_negative_list` finds and stats the file on every call; a search or a
    listing over thousands of entries asks :meth:`of` instead, which reads each root's
    list once per pass (a new pass sees a changed file).
    """

    def __init__(self) -> None:
        self._by_root: dict[str | None, NegativeList] = {}

    def of(self, entry: Any) -> NegativeList:
        """The negative list that applies to *entry* (the one beside its root catalog)."""
        root = getattr(entry, "root", None)
        key = None if root is None else str(root)
        if key not in self._by_root:
            self._by_root[key] = load_negative_list(root=root)
        return self._by_root[key]


def today() -> dt.date:
    """Today's date in UTC (embargoes end at 00:00 UTC of their day)."""
    return dt.datetime.now(dt.UTC).date()


def _metadata(entry: Any) -> tuple[str, EntryMetadata]:
    md = getattr(entry, "metadata", entry)
    return getattr(entry, "name", ""), md


def effective_release(entry: Any, *, on: dt.date | None = None,
                      negative: NegativeList | None = None) -> tuple[str, str]:
    """An entry's release today, after the negative list and any embargo.

    Parameters
    ----------
    entry
        A catalog :class:`~oceandata.catalog.Entry` (or anything with ``name`` and
        ``metadata``).
    on
        The day to decide for (default: today, UTC).
    negative
        The negative list (default: the site's, :func:`load_negative_list`).

    Returns
    -------
    tuple of str
        The release (``open``, ``registered`` or ``restricted``) and the reason.
    """
    name, md = _metadata(entry)
    project = getattr(entry, "project", None)
    if project is not None:
        return "restricted", f"data of project {project}: its members only"
    c = md.classification
    release, reason = c.release, f"{c.grade} data released {c.release!r} by its owner"
    if negative is None:  # the list beside the root catalog the entry was opened through
        negative = load_negative_list(root=getattr(entry, "root", None))
    rule = negative.match(name)
    if rule is not None and RELEASES.index(rule.release) > RELEASES.index(release):
        release, reason = rule.release, f"on the site's negative list ({rule.reason})"
    day = on or today()
    if c.embargo_until is not None and day < c.embargo_until:
        release = "restricted"
        reason = f"under embargo until {c.embargo_until.isoformat()}"
    return release, reason


def decide(entry: Any, subject: Subject, *, on: dt.date | None = None,
           negative: NegativeList | None = None) -> Decision:
    """May *subject* see and open *entry*? The platform's one access rule.

    Parameters
    ----------
    entry
        A catalog entry (``name`` and validated ``metadata``).
    subject
        The caller: :class:`Subject` (``name`` None for anonymous callers).
    on, negative
        As in :func:`effective_release`.

    Returns
    -------
    Decision
    """
    name, md = _metadata(entry)
    release, reason = effective_release(entry, on=on, negative=negative)
    project = getattr(entry, "project", None)
    if project is not None:
        member = subject.name is not None and int(project) in subject.projects
        return Decision(allowed=member, release=release, reason=reason, granted=member)
    granted = bool(subject.groups.intersection(md.access.groups)) or name in subject.datasets
    if release == "open":
        allowed = True
    elif release == "registered":
        allowed = subject.name is not None or granted
    else:
        allowed = granted
    return Decision(allowed=allowed, release=release, reason=reason, granted=granted)
