"""Named exceptions that say whose fault a failure is and what to do next.

Every error a user can meet derives from :class:`OceandataError`. The command line
maps them to one line on stderr and exit code 2 (usage and data errors), never a
traceback. Messages name the thing, the valid alternatives and, where there is
one, the next command to run.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class OceandataError(Exception):
    """Base class of every error raised on purpose by oceandata."""

    #: Process exit code the CLI uses for this error.
    exit_code: int = 2


class UsageError(OceandataError, ValueError):
    """The request itself is malformed (user's fault): a bad bbox, range or option."""


class CatalogError(OceandataError):
    """A catalog file is malformed or an entry does not exist (catalog author's fault)."""


class DatasetNotFound(CatalogError, KeyError):
    """A dataset name is not in the catalog."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class DataError(OceandataError):
    """The data do not match what was asked or declared, or a file is corrupt (data's fault)."""


class SampleDataError(DataError):
    """A sample file is missing, unreachable or fails its checksum."""


class NotAuthorized(OceandataError):
    """The caller is not allowed to open this dataset or touch this resource."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return a ``" Did you mean: a, b?"`` hint for *name* among *choices*, or ``""``.

    Parameters
    ----------
    name
        What the user typed.
    choices
        The valid names.
    n
        At most this many suggestions.
    """
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        lowered = name.lower()
        close = [c for c in choices if lowered in c.lower()][:n]
    return f" Did you mean: {', '.join(close)}?" if close else ""


class Interrupted(BaseException):
    """A write was stopped by a signal (``SIGINT``, ``SIGTERM``); its temporary output is gone.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that code catching ``Exception``
    does not swallow it, and not a ``KeyboardInterrupt`` so that the command-line
    framework does not turn ``SIGTERM`` into exit 130. The command line exits with
    :attr:`exit_code`, ``128 + signal`` (130, 143).
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


class OutputTooLarge(UsageError):
    """A write would exceed ``OCEANDATA_MAX_OUTPUT`` or the free space at the target."""


class VersionNotFound(UsageError):
    """A versioned store has no such tag or snapshot; ``tags`` lists the tags it has."""

    def __init__(self, message: str, tags: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.tags = tags
