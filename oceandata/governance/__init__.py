"""Data governance: classification and grading, the access rule, desensitised public
copies, the tamper-evident audit trail, backups with restore drills, and store locks.

Modules
-------
rules
    Classification and grading of catalog entries and the one access rule
    (:func:`oceandata.governance.rules.decide`) that the notebooks, the open-data
    service, STAC and the portal all use.
audit
    The append-only, hash-chained audit log every service writes to.
desensitise
    Profiles and ``oceandata publish``: open copies derived from restricted entries.
backup
    restic backups, restores and drills (``oceandata admin ...``).
locks
    One writer per store: the exclusive store lock.
"""
