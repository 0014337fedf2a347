"""The platform's one audit trail (STUB: the contract; the body is being written).

Contract used by every other module::

    from oceandata.governance import audit
    audit.record("hub.login", actor="alice", target="user:alice", outcome="ok",
                 source="127.0.0.1", detail={"authenticator": "native"})

``record`` never raises into its caller's request path for a storage failure (it logs one
error line); it raises ``UsageError`` only for a malformed call (programming error).
"""

from __future__ import annotations

from typing import Any


def record(action: str, *, actor: str | None, target: str, outcome: str = "ok",
           source: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Append one record to the audit trail.

    Parameters
    ----------
    action
        Dotted name of what happened, e.g. ``hub.login``, ``alloc.approve``,
        ``data.access``, ``store.commit``, ``store.tag``, ``store.publish``.
    actor
        Who did it (hub user name, ``system``, a Unix user for CLI runs); None when unknown
        (a failed login's claimed name goes in *detail*).
    target
        The object acted on, ``kind:id`` (``user:bob``, ``allocation:3``,
        ``dataset:argo_restricted``, ``store:/path``).
    outcome
        ``ok``, ``denied``, ``failed`` or ``error``.
    source
        Where from: a client address, or ``cli@host``.
    detail
        JSON-safe extra fields (never secrets or tokens).
    """
    return None


def read(*, since: Any = None, action: str | None = None) -> list[dict[str, Any]]:
    """Records of the audit trail, oldest first (for tests, exports and pages).

    Parameters
    ----------
    since
        A ``datetime`` (UTC) or None for every record.
    action
        Only records of this action (exact name, or a prefix ending in ``.``).
    """
    return []
