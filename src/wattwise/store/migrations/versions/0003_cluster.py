"""cluster: machines, job queue, client status history, e-mail queue, control-workload runs

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("cluster",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_machines",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("accepts_jobs", sa.Boolean, nullable=False),
        sa.Column("paused_reason", sa.Text),
        sa.Column("base_temperature_c", sa.Float),
        sa.Column("current_temperature_c", sa.Float),
        sa.Column("last_heartbeat_at", sa.DateTime(timezone=True)),
        sa.Column("last_control_workload_at", sa.DateTime(timezone=True)),
        sa.Column("sleep_time_s", sa.Float),
        sa.Column("client_id", sa.String(120)),
        sa.Column("hostname", sa.String(200)),
        sa.Column("mac_address", sa.String(17)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "cluster_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("source_type", sa.String(10), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("branch", sa.String(200)),
        sa.Column("filename", sa.String(500)),
        sa.Column("command", sa.JSON),
        sa.Column("variables", sa.JSON),
        sa.Column("machine_id", sa.String(100), sa.ForeignKey("cluster_machines.id")),
        sa.Column("email", sa.String(320)),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("error", sa.Text),
        sa.Column("running_machine_id", sa.String(100)),
        sa.Column("lease_owner", sa.String(120)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
    )
    op.create_index("ix_cluster_jobs_queue", "cluster_jobs", ["state", "machine_id", "id"])
    op.create_index("ix_cluster_jobs_lease", "cluster_jobs", ["state", "lease_expires_at"])
    op.create_index(
        "ix_cluster_jobs_waiting",
        "cluster_jobs",
        ["id"],
        postgresql_where=sa.text("state = 'WAITING'"),
        sqlite_where=sa.text("state = 'WAITING'"),
    )
    op.create_index(
        "ux_cluster_jobs_running_machine",
        "cluster_jobs",
        ["running_machine_id"],
        unique=True,
        postgresql_where=sa.text("state = 'RUNNING'"),
        sqlite_where=sa.text("state = 'RUNNING'"),
    )
    op.create_table(
        "cluster_client_status",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("machine_id", sa.String(100), nullable=False),
        sa.Column("client_id", sa.String(120)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("run_id", sa.Integer),
        sa.Column("temperature_c", sa.Float),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cluster_client_status_machine_id", "cluster_client_status", ["machine_id"])
    op.create_index("ix_cluster_client_status_created_at", "cluster_client_status", ["created_at"])
    op.create_table(
        "cluster_emails",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("job_id", sa.Integer),
        sa.Column("machine_id", sa.String(100)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_cluster_emails_pending", "cluster_emails", ["sent_at", "id"])
    op.create_table(
        "cluster_control_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("machine_id", sa.String(100), nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("phase", sa.String(200), nullable=False),
        sa.Column("values", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cluster_control_runs_machine_id", "cluster_control_runs", ["machine_id"])


def downgrade() -> None:
    op.drop_index("ix_cluster_control_runs_machine_id", table_name="cluster_control_runs")
    op.drop_table("cluster_control_runs")
    op.drop_index("ix_cluster_emails_pending", table_name="cluster_emails")
    op.drop_table("cluster_emails")
    op.drop_index("ix_cluster_client_status_created_at", table_name="cluster_client_status")
    op.drop_index("ix_cluster_client_status_machine_id", table_name="cluster_client_status")
    op.drop_table("cluster_client_status")
    op.drop_index("ux_cluster_jobs_running_machine", table_name="cluster_jobs")
    op.drop_index("ix_cluster_jobs_waiting", table_name="cluster_jobs")
    op.drop_index("ix_cluster_jobs_lease", table_name="cluster_jobs")
    op.drop_index("ix_cluster_jobs_queue", table_name="cluster_jobs")
    op.drop_table("cluster_jobs")
    op.drop_table("cluster_machines")
