"""Webhook deliveries: one row per run or batch event, the queue the worker side sends from."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_webhook_deliveries"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("event", sa.String(32), nullable=True),
        sa.Column("payload", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=True),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_state_next", "webhook_deliveries", ["state", "next_at"])
    op.create_index("ix_webhook_deliveries_run", "webhook_deliveries", ["run_id"])
    op.create_index("ix_webhook_deliveries_batch", "webhook_deliveries", ["batch_id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
