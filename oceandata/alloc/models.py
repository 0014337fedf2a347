"""Tables of the allocations service: allocations (projects), their members, audit log,
usage and storage, batch jobs, uploads, publish requests and
the bytes the open-data service served.

SQLAlchemy 2 declarative models; the schema is created and upgraded by alembic
(``oceandata/alloc/migrations``), never by ``create_all`` outside tests of the models.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    """Declarative base of the allocation tables."""


def utcnow() -> dt.datetime:
    """Timezone-aware now (UTC), the time of every record."""
    return dt.datetime.now(dt.UTC)


class AllocationStatus(enum.StrEnum):
    """Life of an allocation request."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class Allocation(Base):
    """A partner's request for a share of the machine, and the decision on it."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    project_title: Mapped[str] = mapped_column(String(300))
    pi: Mapped[str] = mapped_column(String(200))
    institution: Mapped[str] = mapped_column(String(300))
    justification: Mapped[str] = mapped_column(Text)
    core_hours: Mapped[float] = mapped_column(Float)
    max_cores: Mapped[int] = mapped_column(Integer)
    memory_per_job_gb: Mapped[float] = mapped_column(Float)
    storage_gb: Mapped[float] = mapped_column(Float)
    start_date: Mapped[dt.date] = mapped_column()
    end_date: Mapped[dt.date] = mapped_column()
    datasets: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[AllocationStatus] = mapped_column(
        Enum(AllocationStatus, native_enum=False, length=16), default=AllocationStatus.PENDING)
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    usage: Mapped[list[Usage]] = relationship(back_populates="allocation")

    FIELDS = ("project_title", "pi", "institution", "justification", "core_hours",
              "max_cores", "memory_per_job_gb", "storage_gb", "start_date", "end_date",
              "datasets", "status", "decided_by", "decided_at", "reason")

    def snapshot(self) -> dict[str, Any]:
        """The audited fields as JSON-safe values."""
        out: dict[str, Any] = {}
        for name in self.FIELDS:
            value = getattr(self, name)
            if isinstance(value, dt.date | dt.datetime):
                value = value.isoformat()
            elif isinstance(value, enum.Enum):
                value = value.value
            out[name] = value
        return out

    def active_on(self, day: dt.date) -> bool:
        """Approved and *day* within its start and end dates."""
        return (self.status == AllocationStatus.APPROVED
                and self.start_date <= day <= self.end_date)


class AuditEntry(Base):
    """Who changed an allocation, when, what, before and after."""

    __tablename__ = "allocation_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    actor: Mapped[str] = mapped_column(String(255))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class Usage(Base):
    """Core-hours charged to an allocation by one cluster interval or one batch job."""

    __tablename__ = "usage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"),
                                                      nullable=True, index=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(16))  # "gateway" | "batch"
    ref: Mapped[str] = mapped_column(String(255))  # cluster name or job id
    cores: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float] = mapped_column(Float)
    core_hours: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    allocation: Mapped[Allocation | None] = relationship(back_populates="usage")


class JobState(enum.StrEnum):
    """Job states, as Slurm names them."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"

    @property
    def finished(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


class Job(Base):
    """A batch job: what was asked, where it runs, how it ended, what it cost."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(255), index=True)
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"),
                                                      nullable=True)
    backend: Mapped[str] = mapped_column(String(16))
    backend_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    script: Mapped[str] = mapped_column(Text)
    args: Mapped[list[str]] = mapped_column(JSON, default=list)
    cores: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    walltime_s: Mapped[int] = mapped_column(Integer)
    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False, length=16),
                                            default=JobState.PENDING, index=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    workdir: Mapped[str] = mapped_column(Text)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True),
                                                      server_default=func.now(),
                                                      default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                         nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class ServedBytes(Base):
    """Bytes and requests the open-data service answered one client, per UTC day, dataset
    and protocol (the ledger of :mod:`oceandata.dataservice.ledger`).

    ``client`` is ``user:<hub name>`` or ``anon:<16 hex>`` (a keyed hash of the address:
    the address itself is never stored); ``dataset`` is ``""`` for answers that name no
    catalog dataset (portal pages, STAC, unknown names). Rows are only ever added to
    (an upsert per flush), so a row holds every byte of its day once.
    """

    __tablename__ = "served_bytes"
    __table_args__ = (UniqueConstraint("day", "client", "dataset", "protocol",
                                       name="uq_served_bytes_day_client_dataset_protocol"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    client: Mapped[str] = mapped_column(String(255), index=True)
    dataset: Mapped[str] = mapped_column(String(255), default="")
    protocol: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)


class MemberRole(enum.StrEnum):
    """A person's part in a project (an approved allocation)."""

    PI = "pi"
    MEMBER = "member"


class ProjectMember(Base):
    """A hub user who shares a project's compute, storage and dataset grants.

    The allocation's owner is the project's PI and is not stored here: the table holds
    the members the PI (or an admin) added (docs/projects.md).
    """

    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("allocation_id", "user",
                                       name="uq_project_members_allocation_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserSetting(Base):
    """A hub user's platform settings: the project used when none is named, the language."""

    __tablename__ = "user_settings"

    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    default_allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"),
                                                              nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StorageUsage(Base):
    """A project workspace's size and the GB-days it was charged, per UTC day.

    Every measurement adds ``bytes / 1e9 * seconds since the previous one / 86400`` to
    the day's ``gb_days`` (the size held since the previous measurement), so the ledger
    charges what was held, however often it is measured.
    """

    __tablename__ = "storage_usage"
    __table_args__ = (UniqueConstraint("allocation_id", "day",
                                       name="uq_storage_usage_allocation_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    day: Mapped[dt.date] = mapped_column(Date, index=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    peak_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    gb_days: Mapped[float] = mapped_column(Float, default=0.0)
    measured_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UploadState(enum.StrEnum):
    """Life of an upload."""

    OPEN = "open"
    COMPLETE = "complete"
    ABORTED = "aborted"


class Upload(Base):
    """A file sent to a project's uploads, in chunks, resumable until complete."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    user: Mapped[str] = mapped_column(String(255), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[UploadState] = mapped_column(
        Enum(UploadState, native_enum=False, length=16), default=UploadState.OPEN)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PublishState(enum.StrEnum):
    """Life of a request to publish a project entry to the open catalog."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class PublishRequest(Base):
    """A project's request to publish one of its entries to the open catalog, the review
    and, once approved, the persistent identifier and the frozen version."""

    __tablename__ = "publish_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    entry: Mapped[str] = mapped_column(String(255))
    requested_by: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(300))
    licence: Mapped[str] = mapped_column(String(100))
    citation: Mapped[str] = mapped_column(Text)
    authors: Mapped[list[dict]] = mapped_column(JSON, default=list)
    profile: Mapped[str | None] = mapped_column(String(100), nullable=True)
    grade: Mapped[str | None] = mapped_column(String(32), nullable=True)
    category: Mapped[str | None] = mapped_column(String(100), nullable=True)
    compliance: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    snapshot: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status: Mapped[PublishState] = mapped_column(
        Enum(PublishState, native_enum=False, length=16), default=PublishState.PENDING,
        index=True)
    decided_by: Mapped[str | None] = mapped_column(String(255), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True),
                                                           nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    changes: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    pid: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    published_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    tag: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
