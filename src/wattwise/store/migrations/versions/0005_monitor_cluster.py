"""monitor: the cluster of each unit (one Prometheus per cluster), part of the unit's key

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("monitor_units") as batch:
        batch.add_column(sa.Column("cluster", sa.String(255), nullable=False, server_default=""))
        batch.drop_constraint("uq_monitor_units_key", type_="unique")
        batch.create_unique_constraint("uq_monitor_units_key", ["cluster", "hostname", "manager", "unit_id"])
    op.create_index("ix_monitor_units_cluster", "monitor_units", ["cluster"])


def downgrade() -> None:
    op.drop_index("ix_monitor_units_cluster", "monitor_units")
    with op.batch_alter_table("monitor_units") as batch:
        batch.drop_constraint("uq_monitor_units_key", type_="unique")
        batch.create_unique_constraint("uq_monitor_units_key", ["hostname", "manager", "unit_id"])
        batch.drop_column("cluster")
