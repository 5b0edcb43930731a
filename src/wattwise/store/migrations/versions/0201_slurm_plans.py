"""closed loop: plans executed on Slurm (segments, job ids, planned figures), so that status and reports survive

Revision ID: 0201
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0201"
down_revision = "0001"
branch_labels = ("closedloop",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slurm_plans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("checkpoint_dir", sa.String(1000), nullable=False),
        sa.Column("model", sa.JSON, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("jobs", sa.JSON, nullable=False),
        sa.Column("sbatch_args", sa.JSON, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slurm_plans")
