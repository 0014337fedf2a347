"""User names: one strict format for the hub, the services and the Unix accounts.

A user name is what a person types at sign-up, what JupyterHub stores, what the
allocations service and the gateway record, and the suffix of the Unix account
``oceandata-<name>``. One pattern serves all of them::

    ^[a-z][a-z0-9_-]{0,21}$

1 to 22 characters, lower-case ASCII letters, digits, ``-`` and ``_``, starting with a
letter. 22 is what fits: ``oceandata-`` is 10 characters and Linux account names end
at 32.

Decisions
---------
**Refuse, never rewrite.** A submitted name is checked exactly as typed. If Unicode
normalisation (NFKC, then case folding) would change it, it is refused, and when the
normalised form would be valid the reason proposes it ("did you mean 'alice'?"). The
person then signs up with the name they will see everywhere; nothing is silently
changed on the way to the database.

**Look-alikes of existing names are refused.** Two names that are different strings but
read the same (``admin`` and ``adm1n``, ``admin`` and ``admln``, ``rn`` and ``m``,
``a-b`` and ``a_b``) would let one person pass for another on the approval page and in
the services' logs. :func:`skeleton` maps every name to a reading form and
:func:`check_username` refuses a new name whose skeleton equals an existing one's:

- NFKC, case folding, and a table of non-Latin letters that look Latin (Cyrillic
  ``а``, ``е``, ``о``, ``р``, ``с``, ``х``, ``у``, ``і``…, Greek ``ο``, ``α``…);
- ``0`` reads as ``o``; ``1``, ``i`` and ``|`` read as ``l``;
- ``rn`` reads as ``m``, ``vv`` as ``w``;
- ``-`` and ``_`` read the same.

Non-ASCII names are refused by the pattern anyway; the table is there so that the
reason names the look-alike ("Cyrillic 'а', which looks like 'a'") and so that the
skeleton stays right if the pattern is ever widened.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from ..i18n import gettext

#: The format of every user name (hub, services, ``oceandata-<name>`` Unix accounts).
USERNAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,21}$")
#: The longest valid name: ``oceandata-`` + 22 characters = 32, Linux's limit.
MAX_LENGTH = 22
#: The rule, as said to a person whose name was refused.
VALID_NAMES = ("A user name is 1 to 22 characters: lower-case letters a-z, digits, '-' "
               "and '_', starting with a letter.")

#: Non-Latin letters that look like Latin ones (after NFKC and case folding).
LOOKALIKES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
    "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
    "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w",
    # Latin letters outside a-z
    "ı": "i", "ȷ": "j", "ℓ": "l",
}
#: Characters of valid names that read alike (applied after :data:`LOOKALIKES`).
_READ_ALIKE = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "-": "_"})
#: Letter pairs that read as one letter.
_PAIRS = (("rn", "m"), ("vv", "w"))
#: Unicode categories of characters that are invisible or not characters at all.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"}
#: At most this many characters of a refused name are quoted back.
_QUOTE = 24


def _show(text: str) -> str:
    """*text* quoted for a one-line message: escapes, and cut when long."""
    shown = text if len(text) <= _QUOTE else text[:_QUOTE] + "..."
    return ascii(shown) if not shown.isascii() or not shown.isprintable() else repr(shown)


def _describe(char: str, lang: str = "en") -> str:
    """``'а' (U+0430 CYRILLIC SMALL LETTER A)`` for one character (Unicode's names of
    characters are English in every language)."""
    name = unicodedata.name(char, "") or gettext(lang, "a control character")
    shown = f"'{char}'" if char.isprintable() else ascii(char)
    return f"{shown} (U+{ord(char):04X} {name})"


def valid_names(lang: str = "en") -> str:
    """:data:`VALID_NAMES` in *lang*."""
    return gettext(lang, "A user name is 1 to 22 characters: lower-case letters a-z, "
                         "digits, '-' and '_', starting with a letter.")


def is_valid_username(name: str) -> bool:
    """Whether *name* has the platform's user name format (:data:`USERNAME_PATTERN`).

    Parameters
    ----------
    name : str
        A user name, exactly as stored.

    Returns
    -------
    bool
        True when *name* matches ``^[a-z][a-z0-9_-]{0,21}$`` (no trailing newline).

    Examples
    --------
    >>> is_valid_username("alice"), is_valid_username("Alice"), is_valid_username("1a")
    (True, False, False)
    """
    return isinstance(name, str) and USERNAME_PATTERN.fullmatch(name) is not None


def skeleton(name: str) -> str:
    """The reading form of *name*: two names with one skeleton look the same.

    Parameters
    ----------
    name : str
        Any text.

    Returns
    -------
    str
        *name* after NFKC, case folding, :data:`LOOKALIKES`, ``0``→``o``,
        ``1``/``i``/``|``→``l``, ``-``→``_``, ``rn``→``m`` and ``vv``→``w``.

    Examples
    --------
    >>> skeleton("adm1n") == skeleton("admin") == skeleton("аdmin")  # Cyrillic а
    True
    >>> skeleton("ocean-data") == skeleton("ocean_data")
    True
    """
    text = unicodedata.normalize("NFKC", name).casefold()
    text = "".join(LOOKALIKES.get(c, c) for c in text).translate(_READ_ALIKE)
    for pair, letter in _PAIRS:
        text = text.replace(pair, letter)
    return text


def format_problem(name: str, lang: str = "en") -> str | None:
    """What is wrong with the format of *name*, in one clause; None if nothing is.

    Parameters
    ----------
    name : str
        The name exactly as submitted.
    lang : str
        The language of the clause (``"en"``, ``"zh"``).

    Returns
    -------
    str or None
        A clause such as ``"contains '.', which is not allowed"`` or None when *name*
        matches :data:`USERNAME_PATTERN`.
    """
    if name == "":
        return gettext(lang, "is empty")
    if len(name) > MAX_LENGTH:
        return gettext(lang, "is %(length)s characters long (at most %(max)s)",
                       length=len(name), max=MAX_LENGTH)
    for char in name:
        if unicodedata.category(char) in _INVISIBLE:
            return gettext(lang, "contains the invisible character %(char)s",
                           char=_describe(char, lang))
    canonical = unicodedata.normalize("NFKC", name).casefold()
    if canonical != name and is_valid_username(canonical):
        return gettext(lang, "is not in canonical form (did you mean '%(canonical)s'?)",
                       canonical=canonical)
    for char in name:
        if not char.isascii():
            looks = LOOKALIKES.get(unicodedata.normalize("NFKC", char).casefold())
            if looks:
                return gettext(lang, "contains %(char)s, which looks like '%(looks)s'; only "
                                     "ASCII is allowed", char=_describe(char, lang),
                               looks=looks)
            return gettext(lang, "contains %(char)s; only ASCII is allowed",
                           char=_describe(char, lang))
    if not name[0].isalpha():
        return gettext(lang, "starts with %(char)s, not a letter", char=repr(name[0]))
    for char in name:
        if "A" <= char <= "Z":
            return gettext(lang, "contains the upper-case letter %(char)s", char=repr(char))
        if not (char.isalnum() or char in "-_"):
            return gettext(lang, "contains %(char)s, which is not allowed", char=repr(char))
    return None  # pragma: no cover - every way to miss the pattern is named above


def check_username(name: str, existing: Iterable[str] = (), lang: str = "en") -> str | None:
    """Check a name submitted at sign-up; say in one line why it is refused.

    Parameters
    ----------
    name : str
        The name exactly as submitted (not normalised: see the module's decisions).
    existing : iterable of str
        The names already known to the hub (signed up, approved or not, and JupyterHub
        users). A name equal to one of them, or with the same :func:`skeleton`, is
        refused.
    lang : str
        The language of the line (``"en"``, ``"zh"``; :mod:`oceandata.i18n`).

    Returns
    -------
    str or None
        None when *name* may be used; otherwise one line (no newline) saying what was
        wrong and what is valid.

    Examples
    --------
    >>> check_username("alice") is None
    True
    >>> check_username("adm1n", ["admin"])[:54]
    "User name 'adm1n' looks like the existing name 'admin'"
    """
    problem = format_problem(name, lang)
    if problem is not None:
        return gettext(lang, "User name %(name)s %(problem)s. %(rule)s", name=_show(name),
                       problem=problem, rule=valid_names(lang))
    mark = skeleton(name)
    for other in existing:
        if other == name:
            return gettext(lang, "User name %(name)s is already taken; choose another.",
                           name=_show(name))
        if skeleton(other) == mark:
            return gettext(lang, "User name %(name)s looks like the existing name %(other)s "
                                 "(0/o, 1/l/i, rn/m, vv/w and -/_ read the same); choose "
                                 "another.", name=_show(name), other=_show(other))
    return None
