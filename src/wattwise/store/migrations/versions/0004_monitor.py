"""monitor: per-unit aggregates pulled from Prometheus, per user/project and day, pull progress

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("monitor",)
depends_on = None


def _totals() -> list[sa.Column[float]]:
    return [
        sa.Column("energy_j", sa.Float, nullable=False),
        sa.Column("emissions_g", sa.Float, nullable=False),
        sa.Column("cpu_s", sa.Float, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "monitor_units",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("hostname", sa.String(255), nullable=False),
        sa.Column("manager", sa.String(32), nullable=False),
        sa.Column("unit_id", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True)),
        sa.Column("end_at", sa.DateTime(timezone=True)),
        *_totals(),
        sa.Column("memory_sum_b", sa.Float, nullable=False),
        sa.Column("memory_samples", sa.Integer, nullable=False),
        sa.Column("last_energy_j", sa.Float),
        sa.Column("last_emissions_g", sa.Float),
        sa.Column("last_cpu_s", sa.Float),
        sa.Column("last_seen_start_s", sa.Float),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("hostname", "manager", "unit_id", name="uq_monitor_units_key"),
    )
    for column in ("unit_id", "user", "project", "start_at", "end_at"):
        op.create_index(f"ix_monitor_units_{column}", "monitor_units", [column])
    op.create_table(
        "monitor_unit_daily",
        sa.Column("unit_pk", sa.Integer, sa.ForeignKey("monitor_units.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        *_totals(),
    )
    op.create_table(
        "monitor_user_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("user", sa.String(255), primary_key=True),
        *_totals(),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_table(
        "monitor_project_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("project", sa.String(255), primary_key=True),
        *_totals(),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_table(
        "monitor_sync",
        sa.Column("source", sa.String(500), primary_key=True),
        sa.Column("pulled_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("monitor_sync", "monitor_project_daily", "monitor_user_daily", "monitor_unit_daily",
                  "monitor_units"):
        op.drop_table(table)
