"""Tables of the allocations service: allocations, their audit log, usage, batch jobs and
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
