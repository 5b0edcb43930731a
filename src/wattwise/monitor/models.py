"""Tables of the monitoring aggregates (migrations 0004_monitor and 0005_monitor_cluster, branch `monitor`).

* ``monitor_units``: one row per compute unit seen in Prometheus: who, when, totals, and the counter
  values of the last pull (to turn cumulative exporter counters into increments);
* ``monitor_unit_daily``: the increments of each unit per UTC day;
* ``monitor_user_daily`` / ``monitor_project_daily``: the same summed per user and per project and day,
  with the number of units that were active that day;
* ``monitor_sync``: up to when each Prometheus has been pulled.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from wattwise.store.models import Base, utcnow


class MonitorUnit(Base):
    __tablename__ = "monitor_units"
    __table_args__ = (UniqueConstraint("cluster", "hostname", "manager", "unit_id", name="uq_monitor_units_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(255), index=True, default="", server_default="")  # 0005
    hostname: Mapped[str] = mapped_column(String(255))
    manager: Mapped[str] = mapped_column(String(32))
    unit_id: Mapped[str] = mapped_column(String(255), index=True)
    user: Mapped[str] = mapped_column(String(255), index=True, default="")
    project: Mapped[str] = mapped_column(String(255), index=True, default="")
    start_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    emissions_g: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    memory_sum_b: Mapped[float] = mapped_column(Float, default=0.0)  # sum of the sampled memory values
    memory_samples: Mapped[int] = mapped_column(Integer, default=0)
    last_energy_j: Mapped[float | None] = mapped_column(Float)
    last_emissions_g: Mapped[float | None] = mapped_column(Float)
    last_cpu_s: Mapped[float | None] = mapped_column(Float)
    last_seen_start_s: Mapped[float | None] = mapped_column(Float)  # the exporter's first-seen time
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def duration_s(self) -> float | None:
        if self.start_at is None or self.end_at is None:
            return None
        return max(0.0, (self.end_at - self.start_at).total_seconds())

    @property
    def mean_cpus(self) -> float | None:
        """Mean CPUs used: CPU seconds over the unit's duration."""
        duration = self.duration_s
        return self.cpu_s / duration if duration else None

    @property
    def mean_memory_b(self) -> float | None:
        return self.memory_sum_b / self.memory_samples if self.memory_samples else None


class MonitorUnitDay(Base):
    __tablename__ = "monitor_unit_daily"

    unit_pk: Mapped[int] = mapped_column(ForeignKey("monitor_units.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    emissions_g: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)


class MonitorUserDay(Base):
    __tablename__ = "monitor_user_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user: Mapped[str] = mapped_column(String(255), primary_key=True)
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    emissions_g: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    units: Mapped[int] = mapped_column(Integer, default=0)


class MonitorProjectDay(Base):
    __tablename__ = "monitor_project_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    project: Mapped[str] = mapped_column(String(255), primary_key=True)
    energy_j: Mapped[float] = mapped_column(Float, default=0.0)
    emissions_g: Mapped[float] = mapped_column(Float, default=0.0)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    units: Mapped[int] = mapped_column(Integer, default=0)


class MonitorSync(Base):
    __tablename__ = "monitor_sync"

    source: Mapped[str] = mapped_column(String(500), primary_key=True)  # the Prometheus URL
    pulled_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
